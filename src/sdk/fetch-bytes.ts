/**
 * A bounded HTTP(S) fetch for revocation data (CRLs, OCSP) and the monitor's webhooks: one
 * request, a size limit, a timeout, the caller's trust anchors. Injectable in the verifier so tests and the gateway can swap it.
 */
import http from 'node:http';
import https from 'node:https';
import { MutualError } from '../core/errors.ts';

/** Time allowed for one CRL or OCSP fetch. */
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

/** Fetches bytes from a URL; resolves with the status and body, rejects on network errors. */
export type FetchBytes = (url: string, req: FetchBytesRequest) => Promise<{ status: number; body: Buffer }>;

/**
 * The default fetcher: `node:http`/`node:https`, trusting `ca` (PEM) for HTTPS, no connection
 * reuse (revocation fetches are rare), and one deadline for the whole exchange
 * ({@link FETCH_TIMEOUT_MS}): a distribution point that drips bytes costs no more than one that
 * hangs. Rejects with MutualError FETCH_FAILED (`fields.reason` ETIMEDOUT, EFBIG or EPROTO), or
 * the system's error (ECONNREFUSED...).
 */
export function createFetchBytes(o: { ca?: string | string[] | Buffer; timeoutMs?: number; userAgent?: string } = {}): FetchBytes {
  const timeout = o.timeoutMs ?? FETCH_TIMEOUT_MS;
  return (url, r) => new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : undefined;
    if (!lib) {
      reject(new MutualError('FETCH_FAILED', { reason: 'EPROTO', detail: `unsupported URL scheme ${u.protocol} (use http: or https:)` }));
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
      ...(u.protocol === 'https:' ? { ca: o.ca, minVersion: 'TLSv1.2' as const } : {}),
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
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) });
      });
      res.on('error', fail);
    });
    req.on('error', fail);
    const timer = setTimeout(() => fail(new MutualError('FETCH_FAILED', { reason: 'ETIMEDOUT', detail: `no complete answer within ${timeout} ms` })), timeout);
    req.end(r.body);
  });
}
