/**
 * Distinguished names and general names (RFC 5280 4.1.2.4, 4.2.1.6) as mutual writes them, and
 * the IP helpers shared by policy and name constraints.
 */
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

/** An IPv4 or IPv6 address literal, to sort names people type (the policy checks it properly). */
export const ipRe = /^(\d+\.\d+\.\d+\.\d+|[0-9a-f:]+)$/i;

/** Splits names as people type them (`api.internal`, `10.0.0.7`, `spiffe://acme.internal/svc/x`) into DNS, IP and URI. */
export function splitNames(names: string[]): SubjectAltNames {
  return {
    dns: names.filter((n) => !n.includes('://') && !ipRe.test(n)),
    ip: names.filter((n) => ipRe.test(n) && !n.includes('://')),
    uri: names.filter((n) => n.includes('://')),
  };
}

const V4_OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const V4_RE = new RegExp(`^${V4_OCTET}(\\.${V4_OCTET}){3}$`);
const HEX_GROUP_RE = /^[0-9a-fA-F]{1,4}$/;

/** The 4 bytes of a dotted IPv4 address, or undefined. */
function parseIPv4(ip: string): Buffer | undefined {
  return V4_RE.test(ip) ? Buffer.from(ip.split('.').map(Number)) : undefined;
}

/** The 16 bytes of an IPv6 address (RFC 4291 2.2 text forms, no zone), or undefined. */
function parseIPv6(ip: string): Buffer | undefined {
  if (ip.length > 45 || ip.includes('%')) return undefined;
  let text = ip;
  let tailV4: Buffer | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.')) {
    tailV4 = parseIPv4(text.slice(lastColon + 1));
    if (!tailV4) return undefined;
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): string[] | undefined => {
    if (h === '') return [];
    const g = h.split(':');
    return g.every((x) => HEX_GROUP_RE.test(x)) ? g : undefined;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array(missing).fill('0'), ...tail];
  const b = Buffer.alloc(16);
  all.forEach((h, i) => b.writeUInt16BE(parseInt(h, 16), i * 2));
  if (tailV4) tailV4.copy(b, 12);
  return b;
}

/** True for a textual IPv4 or IPv6 address. */
export function isIpAddress(ip: string): boolean {
  return parseIPv4(ip) !== undefined || parseIPv6(ip) !== undefined;
}

/** Encodes an IP address (v4 or v6) to its 4 or 16 bytes. */
export function ipToBytes(ip: string): Buffer {
  const b = parseIPv4(ip) ?? parseIPv6(ip);
  if (!b) throw new TypeError(`not an IP address: ${ip}`);
  return b;
}

/** Formats 4 or 16 bytes as an IP address (IPv6 in RFC 5952 canonical form). */
export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.');
  // RFC 5952 5: IPv4-mapped addresses keep the dotted tail.
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return `::ffff:${Array.from(b.subarray(12)).join('.')}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i] << 8) | b[i + 1]);
  // RFC 5952 4.2: the longest run (first if tied) of two or more zero groups becomes '::'.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
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
