/**
 * Forwarded client identity: Envoy's `x-forwarded-client-cert` (XFCC) and RFC 9440's
 * `Client-Cert`/`Client-Cert-Chain`. The gateway writes them (after stripping whatever the caller
 * sent); a backend believes them only from a connection authenticated as the gateway
 * ({@link identityFromXfcc}).
 */
import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import { MutualError } from '../core/errors.ts';
import { matchIdentity } from '../core/identity.ts';
import type { PeerIdentity } from './verifier.ts';
import { peerIdentity } from './server.ts';

/** Longest XFCC header read (bytes). One element with a certificate's names is well under 2 KiB. */
export const MAX_XFCC_BYTES = 16 * 1024;
/** Most elements (proxy hops) read from one XFCC header. */
export const MAX_XFCC_ELEMENTS = 8;
/** Most key=value pairs read from one element. */
export const MAX_XFCC_PAIRS = 64;

/** Header names, lowercase. */
export const XFCC_HEADER = 'x-forwarded-client-cert';
export const CLIENT_CERT_HEADER = 'client-cert';
export const CLIENT_CERT_CHAIN_HEADER = 'client-cert-chain';

/** One XFCC element (one hop). */
export interface XfccElement {
  /** The identity of the proxy that wrote the element (its own SPIFFE ID). */
  by?: string;
  /** SHA-256 of the client certificate DER, hex. */
  hash?: string;
  subject?: string;
  /** The client's URI SAN (one; Envoy writes the first). */
  uri?: string;
  dns: string[];
}

const needsQuotes = /[,;="\s]/;
const quote = (v: string): string => (needsQuotes.test(v) ? `"${v.replace(/["\\]/g, (c) => '\\' + c)}"` : v);

/** Formats one XFCC element the way Envoy does (By, Hash, Subject, URI, DNS...). */
export function formatXfcc(e: XfccElement): string {
  const parts: string[] = [];
  if (e.by) parts.push(`By=${quote(e.by)}`);
  if (e.hash) parts.push(`Hash=${e.hash}`);
  if (e.subject !== undefined) parts.push(`Subject=${quote(e.subject)}`);
  if (e.uri) parts.push(`URI=${quote(e.uri)}`);
  for (const d of e.dns) parts.push(`DNS=${quote(d)}`);
  return parts.join(';');
}

/** The XFCC element describing a verified peer, written by the proxy `by`. */
export function xfccFor(peer: PeerIdentity, by?: string): string {
  return formatXfcc({ by, hash: peer.fingerprint, subject: peer.subject, uri: peer.spiffeId ?? peer.uris[0], dns: peer.dns });
}

/** Splits `s` at `sep` outside double quotes. */
function splitOutsideQuotes(s: string, sep: string, max: number): string[] {
  const out: string[] = [];
  let cur = '';
  let inQuotes = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && inQuotes && i + 1 < s.length) {
      cur += c + s[++i];
      continue;
    }
    if (c === '"') inQuotes = !inQuotes;
    if (c === sep && !inQuotes) {
      out.push(cur);
      cur = '';
      if (out.length >= max) throw new MutualError('REQUEST_MALFORMED', { detail: `more than ${max} parts in x-forwarded-client-cert` });
      continue;
    }
    cur += c;
  }
  if (inQuotes) throw new MutualError('REQUEST_MALFORMED', { detail: 'unterminated quote in x-forwarded-client-cert' });
  out.push(cur);
  return out;
}

const unquote = (v: string): string => (v.startsWith('"') && v.endsWith('"') && v.length >= 2 ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v);

/** Parses an XFCC header into its elements (first hop first). Throws REQUEST_MALFORMED. */
export function parseXfcc(header: string): XfccElement[] {
  if (header.length > MAX_XFCC_BYTES) throw new MutualError('REQUEST_MALFORMED', { detail: `x-forwarded-client-cert longer than ${MAX_XFCC_BYTES} bytes` });
  return splitOutsideQuotes(header, ',', MAX_XFCC_ELEMENTS).map((el) => {
    const e: XfccElement = { dns: [] };
    for (const pair of splitOutsideQuotes(el.trim(), ';', MAX_XFCC_PAIRS)) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new MutualError('REQUEST_MALFORMED', { detail: 'x-forwarded-client-cert pair without "="' });
      const k = pair.slice(0, eq).trim().toLowerCase();
      const v = unquote(pair.slice(eq + 1).trim());
      if (k === 'by') e.by = v;
      else if (k === 'hash') e.hash = v;
      else if (k === 'subject') e.subject = v;
      else if (k === 'uri') e.uri = v;
      else if (k === 'dns') e.dns.push(v);
    }
    return e;
  });
}

/** RFC 9440 2.2: a certificate as a Structured Field Byte Sequence (`:base64:`). */
export function formatClientCert(der: Buffer): string {
  return `:${der.toString('base64')}:`;
}

/** RFC 9440 2.3: the chain (without the leaf) as a Structured Field List of Byte Sequences. */
export function formatClientCertChain(ders: readonly Buffer[]): string {
  return ders.map(formatClientCert).join(', ');
}

/** The identity a trusted proxy forwarded. */
export interface ForwardedIdentity {
  spiffeId?: string;
  dns: string[];
  subject?: string;
  /** SHA-256 fingerprint of the caller's certificate, hex. */
  fingerprint?: string;
  /** The identity of the proxy that forwarded it (the authenticated connection's). */
  proxy: string;
}

/** Options of {@link identityFromXfcc}. */
export interface XfccTrustOptions {
  /** Identities (exact or patterns) of the proxies whose XFCC is believed. */
  trustedProxies: readonly string[];
  /**
   * The authenticated peer of the connection; default: {@link peerIdentity} of the request
   * (set by the SDK's createServer). A caller of another server passes its own.
   */
  peer?: PeerIdentity;
}

type AnyRequest = IncomingMessage | Http2ServerRequest;

/**
 * The caller's identity as forwarded by a trusted proxy (the gateway). The XFCC header is believed
 * only when the connection itself is authenticated (mTLS, verified) as one of `trustedProxies`;
 * the last element (the hop nearest to this service, written by that proxy) is used. Returns
 * undefined when the request carries no XFCC; throws XFCC_UNTRUSTED when it does but the
 * connection is not a trusted proxy, REQUEST_MALFORMED for a bad header.
 */
export function identityFromXfcc(req: AnyRequest, o: XfccTrustOptions): ForwardedIdentity | undefined {
  const raw = req.headers[XFCC_HEADER];
  if (raw === undefined) return undefined;
  const header = Array.isArray(raw) ? raw.join(',') : raw;
  const peer = o.peer ?? peerIdentity(req);
  const proxy = peer?.spiffeId;
  if (!proxy || !o.trustedProxies.some((p) => matchIdentity(p, proxy))) {
    throw new MutualError('XFCC_UNTRUSTED', { detail: `x-forwarded-client-cert from ${proxy ?? 'an unauthenticated connection'}` });
  }
  const elements = parseXfcc(header);
  const last = elements[elements.length - 1];
  if (last.by !== undefined && last.by !== proxy) {
    throw new MutualError('XFCC_UNTRUSTED', { detail: `the last x-forwarded-client-cert element was written by ${last.by}, not by the connection's ${proxy}` });
  }
  return {
    ...(last.uri?.startsWith('spiffe://') ? { spiffeId: last.uri } : {}),
    dns: last.dns,
    ...(last.subject !== undefined ? { subject: last.subject } : {}),
    ...(last.hash ? { fingerprint: last.hash } : {}),
    proxy,
  };
}

/** SHA-256 hex of a DER certificate (the XFCC Hash). */
export const certificateHash = (der: Buffer): string => crypto.hash('sha256', der, 'hex');
