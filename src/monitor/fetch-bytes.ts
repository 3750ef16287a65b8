/**
 * A bounded GET for CRLs: the SDK's fetcher (one deadline for the whole exchange, a size cap),
 * with anything but a 2xx turned into an error, so a hung or hostile distribution point costs
 * at most that.
 */
import { createFetchBytes } from '../sdk/fetch-bytes.ts';

/** Options of {@link fetchBytes}. */
export interface FetchBytesOptions {
  timeoutMs: number;
  maxBytes: number;
  /** Trust bundle (PEM) for https. */
  ca?: string | Buffer;
}

/** GETs `url`; throws an Error with `code` ETIMEDOUT, EFBIG, EHTTP, EPROTO or a system code. */
export async function fetchBytes(url: string, o: FetchBytesOptions): Promise<Buffer> {
  const r = await createFetchBytes({ ca: o.ca, timeoutMs: o.timeoutMs, userAgent: 'mutual-monitor' })(url, { maxBytes: o.maxBytes });
  if (r.status < 200 || r.status >= 300) throw Object.assign(new Error(`HTTP ${r.status}`), { code: 'EHTTP' });
  return r.body;
}
