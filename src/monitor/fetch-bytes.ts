/**
 * A bounded GET over http(s) for CRLs: a deadline for the whole exchange and a size cap, so a
 * hung or hostile distribution point costs at most that.
 */
import http from 'node:http';
import https from 'node:https';

/** Options of {@link fetchBytes}. */
export interface FetchBytesOptions {
  timeoutMs: number;
  maxBytes: number;
  /** Trust bundle (PEM) for https. */
  ca?: string | Buffer;
}

/** GETs `url`; throws an Error with `code` ETIMEDOUT, EFBIG, EHTTP or a system code. */
export function fetchBytes(url: string, o: FetchBytesOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return reject(Object.assign(new Error(`unsupported URL scheme ${u.protocol}`), { code: 'EPROTO' }));
    const get = u.protocol === 'https:' ? https.get : http.get;
    let done = false;
    const fail = (e: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      reject(e);
    };
    const req = get(u, { ca: o.ca, headers: { 'user-agent': 'mutual-monitor' }, agent: false }, (res) => {
      if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) >= 300) {
        res.resume();
        return fail(Object.assign(new Error(`HTTP ${res.statusCode}`), { code: 'EHTTP' }));
      }
      const chunks: Buffer[] = [];
      let n = 0;
      res.on('data', (d: Buffer) => {
        n += d.length;
        if (n > o.maxBytes) return fail(Object.assign(new Error(`more than ${o.maxBytes} bytes`), { code: 'EFBIG' }));
        chunks.push(d);
      });
      res.on('end', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(Buffer.concat(chunks));
      });
      res.on('error', fail);
    });
    req.on('error', fail);
    const timer = setTimeout(() => fail(Object.assign(new Error(`no complete answer within ${o.timeoutMs} ms`), { code: 'ETIMEDOUT' })), o.timeoutMs);
  });
}
