/**
 * How the CA reaches the hosts whose challenges it validates (http-01, dns-01, tls-alpn-01), and
 * the limits every validation keeps to, whatever the host answers.
 */

/** Options of the challenge validators. */
export interface ValidationOptions {
  /** Port of http-01 requests: 80 in production (RFC 8555 section 8.3); another for tests. */
  httpPort: number;
  /** Port of tls-alpn-01 handshakes: 443 in production (RFC 8737 section 3); another for tests. */
  tlsAlpnPort: number;
  /**
   * Resolvers (`host`, `host:port` or `[v6]:port`) for every lookup of a validation: the names of
   * http-01 and tls-alpn-01, the TXT records of dns-01. Default: the system's (/etc/resolv.conf;
   * /etc/hosts is not read, as no public CA reads it).
   */
  dnsServers?: string[];
  /** Deadline of one whole validation (lookups, connections, redirects, the body), in ms. */
  timeoutMs: number;
  /**
   * Connect to this address instead of resolving the name (tests, or a CA that reaches hosts
   * through a proxy). The Host header and SNI stay the identifier's; redirects connect here too.
   */
  hostOverride?: string;
}

/** Longest CNAME chain followed from a queried name (Boulder follows a handful; 8 is ample for delegation). */
export const MAX_CNAME_CHAIN = 8;
/** Most http-01 redirects followed (RFC 8555 section 8.3 allows them; Boulder stops after 10). */
export const MAX_HTTP01_REDIRECTS = 10;
/** Largest http-01 body read: a key authorization is ~87 bytes, so anything near this is wrong (Boulder reads far less). */
export const MAX_HTTP01_BODY_BYTES = 8 * 1024;
/** Characters of a seen answer quoted in an error's detail. */
export const DETAIL_QUOTE_CHARS = 80;
