/**
 * A bounded HTTP(S) fetch for revocation data (CRLs, OCSP) and the monitor's webhooks: one
 * request, a size limit, a timeout, the caller's trust anchors. Injectable in the verifier so tests and the gateway can swap it.
 */
import http from 'node:http';
import https from 'node:https';

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
 * hangs. Errors carry `code` ETIMEDOUT, EFBIG, EPROTO or the system's.
 */
export function createFetchBytes(o: { ca?: string | string[] | Buffer; timeoutMs?: number; userAgent?: string } = {}): FetchBytes {
  const timeout = o.timeoutMs ?? FETCH_TIMEOUT_MS;
  return (url, r) => new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : undefined;
    if (!lib) {
      reject(Object.assign(new Error(`unsupported URL scheme ${u.protocol}`), { code: 'EPROTO' }));
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
        if (n > r.maxBytes) fail(Object.assign(new Error(`answer larger than ${r.maxBytes} bytes`), { code: 'EFBIG' }));
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
    const timer = setTimeout(() => fail(Object.assign(new Error(`no complete answer within ${timeout} ms`), { code: 'ETIMEDOUT' })), timeout);
    req.end(r.body);
  });
}
