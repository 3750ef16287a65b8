/**
 * A bounded GET for CRLs: the SDK's fetcher (one deadline for the whole exchange, a size cap),
 * with anything but a 2xx turned into an error, so a hung or hostile distribution point costs
 * at most that.
 */
import { MutualError, isMutualError } from '../core/errors.ts';
import { createFetchBytes } from '../sdk/fetch-bytes.ts';

/** Options of {@link fetchBytes}. */
export interface FetchBytesOptions {
  timeoutMs: number;
  maxBytes: number;
  /** Trust bundle (PEM) for https. */
  ca?: string | Buffer;
}

/**
 * GETs `url`. Throws MutualError MONITOR_SOURCE_UNREADABLE (timeout, too large, unsupported
 * scheme, not 2xx: `reason` ETIMEDOUT, EFBIG, EPROTO, EHTTP), or the system's error (ECONNREFUSED...).
 */
export async function fetchBytes(url: string, o: FetchBytesOptions): Promise<Buffer> {
  // The monitor reports every source it cannot read under one code, whatever the fetcher's.
  const r = await createFetchBytes({ ca: o.ca, timeoutMs: o.timeoutMs, userAgent: 'mutual-monitor' })(url, { maxBytes: o.maxBytes }).catch((e: unknown) => {
    throw isMutualError(e, 'FETCH_FAILED') ? new MutualError('MONITOR_SOURCE_UNREADABLE', { reason: e.fields.reason, detail: e.fields.detail }, { cause: e }) : e;
  });
  if (r.status < 200 || r.status >= 300) throw new MutualError('MONITOR_SOURCE_UNREADABLE', { reason: 'EHTTP', detail: `HTTP ${r.status}` });
  return r.body;
}
