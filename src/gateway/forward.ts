/**
 * The answer half of a proxied request: one upstream exchange relayed to the caller (HTTP/1.1 or
 * HTTP/2), small answers in one write with their head, larger ones streamed with backpressure.
 */
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import { MutualError } from '../core/errors.ts';
import type { UpstreamCall, UpstreamPool, UpstreamRequest } from './upstream.ts';

/** Upstream answers up to this size are sent in one write with their headers; larger ones stream. */
export const SMALL_RESPONSE_BYTES = 64 * 1024;
/** Bodies up to this size are handed to Node as (latin1) strings, which it writes with the head in one write instead of a writev. */
const STRING_BODY_BYTES = 4096;

type Res = ServerResponse | Http2ServerResponse;

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** What {@link forward} reports back. */
export interface ForwardEvents {
  onHeaders(): void;
  onDone(status: number): void;
  onClientClosed(): void;
  onFailed(e: unknown, headersSent: boolean, status: number): void;
  closing(): boolean;
}

/**
 * One upstream exchange. Small answers (the common case) are collected and sent with the headers
 * in one write, so one TLS record and one syscall; larger ones stream with backpressure. Returns
 * what to call when the response closes: if the caller went away first, the upstream request is
 * abandoned (its connection is closed, not reused).
 */
export function forward(pool: UpstreamPool, r: UpstreamRequest, res: Res, isH2: boolean, ev: ForwardEvents): () => void {
  let status = 0;
  let out: string[] = [];
  const chunks: Buffer[] = [];
  let buffered = 0;
  let streaming = false;
  // Settled: answered, failed or abandoned; nothing more is reported.
  let settled = false;
  let hasLength = false;
  let call: UpstreamCall | undefined;
  const onClose = () => {
    if (!res.writableFinished && !settled) {
      settled = true;
      call?.abort();
      ev.onClientClosed();
    }
  };
  const writeHead = (length?: number): boolean => {
    if (length !== undefined && !isH2) out.push('content-length', String(length));
    if (ev.closing() && !isH2) out.push('connection', 'close');
    try {
      (res as ServerResponse).writeHead(status, out);
      return true;
    } catch (e) {
      settled = true;
      call?.abort();
      ev.onFailed(new MutualError('UPSTREAM_UNAVAILABLE', { detail: `bad response headers: ${errText(e)}` }), false, status);
      return false;
    }
  };
  call = pool.request(r, {
    onHeaders(head) {
      status = head.status;
      out = head.headers;
      // HEAD answers, 204 and 304 carry no body: a length of 0 would misstate the resource's.
      hasLength = head.contentLength >= 0 || r.method === 'HEAD' || status === 204 || status === 304;
      ev.onHeaders();
    },
    onData(chunk) {
      if (settled) return false;
      if (!streaming) {
        chunks.push(chunk);
        buffered += chunk.length;
        if (buffered <= SMALL_RESPONSE_BYTES) return true;
        streaming = true;
        if (!writeHead()) return false;
        res.on('drain', () => call?.resume());
        let ok = true;
        for (const c of chunks.splice(0)) ok = (res as ServerResponse).write(c);
        return ok;
      }
      return (res as ServerResponse).write(chunk);
    },
    onComplete() {
      if (settled) return;
      settled = true;
      if (!streaming) {
        const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        if (!writeHead(hasLength ? undefined : data.length)) return;
        // Node joins a string body to the head and writes the whole answer in one write, where a
        // Buffer takes a writev; latin1 keeps every byte as it is.
        if (data.length <= STRING_BODY_BYTES) (res as ServerResponse).end(data.toString('latin1'), 'latin1');
        else (res as ServerResponse).end(data);
      } else (res as ServerResponse).end();
      ev.onDone(status);
    },
    onError(e) {
      if (settled) return;
      settled = true;
      ev.onFailed(e, streaming, status);
    },
  });
  return onClose;
}
