/**
 * Which request fields a backend gets from the gateway: what the caller sent, minus everything a
 * caller may not say for itself (its identity, its address, hop-by-hop fields, overrides of the
 * request the policy allowed), plus what the gateway vouches for (X-Forwarded-For/-Proto, XFCC,
 * RFC 9440 Client-Cert). Built once per configuration and swapped with it on reload.
 */
import {
  type PeerIdentity, xfccFor, formatClientCert, formatClientCertChain, XFCC_HEADER, CLIENT_CERT_HEADER, CLIENT_CERT_CHAIN_HEADER,
} from '../sdk/index.ts';

// Request fields never forwarded as received: hop-by-hop ones (RFC 9110 7.6.1), HTTP/2 connection-specific
// ones (RFC 9113 8.2.2), the host (set once, below), the framing (the upstream client frames the body
// itself), and Expect (the gateway has answered 100-continue to the caller already). The upstream
// client drops hop-by-hop response fields.
const NOT_FORWARDED = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host', 'http2-settings', 'content-length', 'expect']);
/** Identity headers a caller may never set (RFC 9440 and Envoy's XFCC). */
const ALWAYS_STRIPPED = [XFCC_HEADER, CLIENT_CERT_HEADER, CLIENT_CERT_CHAIN_HEADER];
/**
 * Caller fields that speak for a proxy, never forwarded: who the client is (RFC 7239 Forwarded,
 * X-Real-IP and its kin; every `x-forwarded-*`, of which X-Forwarded-For and -Proto are set anew),
 * and what the request is (X-Original-URL / X-Rewrite-URL route a request elsewhere in IIS and
 * Symfony; method overrides turn an allowed POST into a DELETE the policy did not allow).
 */
const PROXY_FIELDS = new Set([
  'forwarded', 'x-real-ip', 'true-client-ip', 'x-client-ip', 'x-cluster-client-ip', 'client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-originating-ip',
  'x-original-url', 'x-rewrite-url', 'x-original-uri', 'x-http-method-override', 'x-http-method', 'x-method-override',
]);
const PROXY_FIELD_PREFIX = 'x-forwarded-';

/** Options of {@link HeaderPolicy} (gateway.yaml's `forward`, and the gateway's identity). */
export interface HeaderPolicyOptions {
  /** More caller fields to drop: exact names or `prefix-*`, any case. */
  strip: readonly string[];
  /** Set x-forwarded-client-cert. */
  xfcc: boolean;
  /** Set RFC 9440 Client-Cert and Client-Cert-Chain. */
  clientCert: boolean;
  /** The gateway's identity, XFCC `By`. */
  by?: string;
}

/** The request as the policy reads it (node:http and node:http2 requests alike). */
export interface CallerRequest {
  rawHeaders: string[];
  headers: { connection?: string | string[] | undefined };
}

/** The fields forwarded upstream for each request. */
export class HeaderPolicy {
  readonly #stripExact: Set<string>;
  readonly #stripPrefixes: string[];
  readonly #xfcc: boolean;
  readonly #clientCert: boolean;
  readonly #by: string | undefined;
  /** XFCC values by verified peer (identities are cached per certificate by the verifier). */
  readonly #xfccOf = new WeakMap<PeerIdentity, string>();

  constructor(o: HeaderPolicyOptions) {
    const strip = [...ALWAYS_STRIPPED, ...o.strip.map((s) => s.toLowerCase())];
    this.#stripExact = new Set(strip.filter((s) => !s.endsWith('*')));
    this.#stripPrefixes = strip.filter((s) => s.endsWith('*')).map((s) => s.slice(0, -1));
    this.#xfcc = o.xfcc;
    this.#clientCert = o.clientCert;
    this.#by = o.by;
  }

  /**
   * The upstream request's fields, as a flat name/value list: the caller's fields that pass, then
   * `host` (the normalized one, when there is one), `x-forwarded-for` (the caller's address, set
   * anew), `x-forwarded-proto: https`, XFCC and Client-Cert as configured. `chain` gives the
   * intermediates for Client-Cert-Chain and is called only when that is set.
   */
  fields(req: CallerRequest, peer: PeerIdentity, remoteAddress: string, host: string | undefined, chain: () => readonly Buffer[]): string[] {
    const raw = req.rawHeaders;
    const out: string[] = [];
    const connectionTokens = req.headers.connection ? String(req.headers.connection).toLowerCase().split(',').map((t) => t.trim()) : undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toLowerCase();
      if (name.charCodeAt(0) === 58 /* ':' */ || NOT_FORWARDED.has(name) || this.#stripExact.has(name)) continue;
      if (this.#stripPrefixes.length && this.#stripPrefixes.some((p) => name.startsWith(p))) continue;
      if (connectionTokens?.includes(name)) continue;
      if (PROXY_FIELDS.has(name) || name.startsWith(PROXY_FIELD_PREFIX)) continue;
      out.push(raw[i], raw[i + 1]);
    }
    if (host) out.push('host', host);
    // Set anew, never appended to: the gateway is the edge, so what a caller wrote there is a claim
    // about its own address that no backend should believe.
    out.push('x-forwarded-for', remoteAddress, 'x-forwarded-proto', 'https');
    if (this.#xfcc) {
      let v = this.#xfccOf.get(peer);
      if (v === undefined) this.#xfccOf.set(peer, (v = xfccFor(peer, this.#by)));
      out.push(XFCC_HEADER, v);
    }
    if (this.#clientCert) {
      out.push(CLIENT_CERT_HEADER, formatClientCert(peer.der));
      const c = chain();
      if (c.length) out.push(CLIENT_CERT_CHAIN_HEADER, formatClientCertChain(c));
    }
    return out;
  }
}
