/**
 * The project's one bounded HTTP(S) fetcher: one request, a size limit, one deadline, the
 * caller's trust anchors and (for mTLS) client certificate, no redirects followed. Used by the CA
 * client (`ca-client.ts`: enrollment, renewal, the CA certificates and CRLs the agent keeps), the
 * ACME client (`acme-client.ts`), the verifier's CRL and OCSP fetches, and the monitor's CRL downloads and webhooks. Injectable in
 * the verifier so tests and the gateway can swap it. test/core/one-of-each.test.ts keeps it the
 * only one.
 */
import http from 'node:http';
import https from 'node:https';
import type { KeyObject } from 'node:crypto';
import { MutualError } from '../core/errors.ts';

/** Time allowed for one CRL or OCSP fetch (the default deadline). */
export const FETCH_TIMEOUT_MS = 10_000;

/** A request for {@link FetchBytes}. */
export interface FetchBytesRequest {
  method?: 'GET' | 'POST';
  body?: Buffer;
  contentType?: string;
  /** More request headers (a webhook's authorization, say). */
  headers?: Record<string, string>;
  /** Largest answer accepted (bytes). */
  maxBytes: number;
}

/** What {@link FetchBytes} resolves with. A 3xx is returned as it is: redirects are never followed. */
export interface FetchBytesResult {
  status: number;
  body: Buffer;
  /** The answer's content-type header, when it has one. */
  contentType?: string;
  /** Every header of the answer (ACME reads Replay-Nonce, Location, Retry-After, Link). */
  headers?: http.IncomingHttpHeaders;
}

/** Fetches bytes from a URL; resolves with the status and body, rejects on network errors. */
export type FetchBytes = (url: string, req: FetchBytesRequest) => Promise<FetchBytesResult>;

/** Options of {@link createFetchBytes}. */
export interface CreateFetchBytesOptions {
  /** Trust anchors (PEM) for HTTPS; default Node's bundled roots. */
  ca?: string | string[] | Buffer;
  /** Client certificate (PEM) presented over HTTPS, with `key`. */
  cert?: string;
  key?: string | KeyObject;
  /** Client certificate and key as a PKCS#12 bundle, instead of `cert` and `key`. */
  pfx?: Buffer;
  /** The bundle's password. */
  passphrase?: string;
  /** Accept any server certificate: only to fetch a root before it is pinned (checked by its fingerprint after). */
  insecure?: boolean;
  /** Refuse `http:` URLs (for calls that carry credentials). Default false. */
  httpsOnly?: boolean;
  /** Deadline for the whole exchange; default {@link FETCH_TIMEOUT_MS}. */
  timeoutMs?: number;
  userAgent?: string;
}

/**
 * The default fetcher: `node:http`/`node:https`, no connection reuse (these fetches are rare),
 * TLS 1.2 or later, and one deadline for the whole exchange ({@link FETCH_TIMEOUT_MS}): a
 * server that drips bytes costs no more than one that hangs. Rejects with MutualError
 * FETCH_FAILED (`fields.reason` ETIMEDOUT, EFBIG or EPROTO: a URL scheme it does not speak), or
 * the system's / TLS stack's error (ECONNREFUSED...).
 */
export function createFetchBytes(o: CreateFetchBytesOptions = {}): FetchBytes {
  const timeout = o.timeoutMs ?? FETCH_TIMEOUT_MS;
  return (url, r) => new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : u.protocol === 'http:' && !o.httpsOnly ? http : undefined;
    if (!lib) {
      reject(new MutualError('FETCH_FAILED', { reason: 'EPROTO', detail: `unsupported URL scheme ${u.protocol}${o.httpsOnly ? ' (only https: is allowed here)' : ' (use http: or https:)'}` }));
      return;
    }
    let done = false;
    const fail = (e: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      reject(e);
    };
    const req = lib.request(u, {
      method: r.method ?? 'GET',
      headers: {
        ...(r.body ? { 'content-type': r.contentType ?? 'application/octet-stream', 'content-length': String(r.body.length) } : {}),
        ...(o.userAgent ? { 'user-agent': o.userAgent } : {}),
        ...r.headers,
      },
      agent: false,
      ...(u.protocol === 'https:'
        ? { ca: o.ca, cert: o.cert, key: o.key as string | undefined, pfx: o.pfx, passphrase: o.passphrase, rejectUnauthorized: !o.insecure, minVersion: 'TLSv1.2' as const }
        : {}),
    }, (res) => {
      const parts: Buffer[] = [];
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n > r.maxBytes) fail(new MutualError('FETCH_FAILED', { reason: 'EFBIG', detail: `answer larger than ${r.maxBytes} bytes` }));
        else parts.push(c);
      });
      res.on('end', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        const type = res.headers['content-type'];
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), headers: res.headers, ...(type ? { contentType: type } : {}) });
      });
      res.on('error', fail);
    });
    req.on('error', fail);
    const timer = setTimeout(() => fail(new MutualError('FETCH_FAILED', { reason: 'ETIMEDOUT', detail: `no complete answer within ${timeout} ms` })), timeout);
    req.end(r.body);
  });
}
