/**
 * Distinguished names and general names (RFC 5280 4.1.2.4, 4.2.1.6) as mutual writes them, and
 * the IP helpers shared by policy and name constraints.
 */
import net from 'node:net';
import { oid, seq, set, utf8String, implicit, tlv } from './der.ts';
import { OID } from './oids.ts';

/** Longest CN accepted (RFC 5280 upper bound ub-common-name). */
export const MAX_COMMON_NAME = 64;

/** Encodes a Name with an optional O and an optional CN, each its own RDN. */
export function encodeName(parts: { commonName?: string; organization?: string }): Buffer {
  const rdns: Buffer[] = [];
  if (parts.organization) rdns.push(set(seq(oid(OID.organizationName), utf8String(parts.organization))));
  if (parts.commonName) rdns.push(set(seq(oid(OID.commonName), utf8String(parts.commonName))));
  if (rdns.length === 0) throw new TypeError('a Name needs a CN or an O');
  return seq(...rdns);
}


/** The names a certificate carries in its subjectAltName. */
export interface SubjectAltNames {
  dns: string[];
  ip: string[];
  uri: string[];
}

/** Encodes an IP address (v4 or v6) to its 4 or 16 bytes. */
export function ipToBytes(ip: string): Buffer {
  if (net.isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (net.isIPv6(ip)) {
    const sl = new net.SocketAddress({ address: ip, family: 'ipv6' });
    const parts = expandIPv6(sl.address);
    const b = Buffer.alloc(16);
    parts.forEach((h, i) => b.writeUInt16BE(h, i * 2));
    return b;
  }
  throw new TypeError(`not an IP address: ${ip}`);
}

function expandIPv6(a: string): number[] {
  let s = a;
  const v4 = s.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const b = v4[1].split('.').map(Number);
    s = s.slice(0, -v4[1].length) + ((b[0] << 8) | b[1]).toString(16) + ':' + ((b[2] << 8) | b[3]).toString(16);
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((x) => parseInt(x, 16));
}

/** Formats 4 or 16 bytes as an IP address. */
export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.');
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(((b[i] << 8) | b[i + 1]).toString(16));
  return new net.SocketAddress({ address: parts.join(':'), family: 'ipv6' }).address;
}

/** An IP range: network bytes and prefix length. */
export interface IpRange {
  network: Buffer;
  prefix: number;
  text: string;
}

/** Parses `10.0.0.0/8`, `::1/128` or a single address. */
export function parseIpRange(text: string): IpRange {
  const [addr, p] = text.split('/');
  const network = ipToBytes(addr);
  const max = network.length * 8;
  const prefix = p === undefined ? max : Number(p);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new TypeError(`bad prefix in ${text}`);
  return { network: maskBytes(network, prefix), prefix, text };
}

/** The network mask as bytes. */
export function prefixMask(len: number, prefix: number): Buffer {
  const m = Buffer.alloc(len);
  for (let i = 0; i < len; i++) m[i] = prefix >= (i + 1) * 8 ? 0xff : prefix <= i * 8 ? 0 : (0xff << (8 - (prefix - i * 8))) & 0xff;
  return m;
}

function maskBytes(b: Buffer, prefix: number): Buffer {
  const m = prefixMask(b.length, prefix);
  return Buffer.from(b.map((x, i) => x & m[i]));
}

/** True when the address lies in the range. */
export function ipInRange(ip: Buffer, range: IpRange): boolean {
  if (ip.length !== range.network.length) return false;
  return maskBytes(ip, range.prefix).equals(range.network);
}

/** True when `name` equals `suffix` or is a subdomain of it (the RFC 5280 4.2.1.10 dNSName rule). */
export function dnsUnder(name: string, suffix: string): boolean {
  const n = name.toLowerCase();
  const s = suffix.toLowerCase().replace(/^\./, '');
  return n === s || n.endsWith('.' + s);
}

/** Encodes a subjectAltName's GeneralNames (dNSName [2], uniformResourceIdentifier [6], iPAddress [7]). */
export function encodeGeneralNames(names: SubjectAltNames): Buffer {
  const parts: Buffer[] = [];
  for (const d of names.dns) parts.push(implicit(2, Buffer.from(d, 'latin1')));
  for (const u of names.uri) parts.push(implicit(6, Buffer.from(u, 'latin1')));
  for (const i of names.ip) parts.push(implicit(7, ipToBytes(i)));
  return tlv(0x30, ...parts);
}
