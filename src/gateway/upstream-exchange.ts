/**
 * The HTTP/1.1 request writer of the gateway's upstream client ({@link UpstreamPool}): what may be
 * forwarded (methods, targets and fields that cannot smuggle a second request), the request head,
 * the body with its framing and limit, and the one outcome an exchange reports to its handler.
 * The connection an exchange runs on is upstream-connection.ts; choosing one is upstream.ts.
 */
import type { Readable } from 'node:stream';
import { MutualError } from '../core/errors.ts';
import type { ResponseHead } from './response-parser.ts';
import type { Connection } from './upstream-connection.ts';

/** Methods that may be sent again after a failure (RFC 9110 9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
// RFC 9110 5.1, 5.5: field names are tokens; values hold no CR, LF or NUL (and no other controls but HTAB).
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const BAD_VALUE = /[\0-\x08\x0a-\x1f\x7f]/;
// The request target is sent as is: no whitespace or controls (RFC 9112 3.2).
const BAD_TARGET = /[\0-\x20\x7f]/;

/** One request to send. */
export interface UpstreamRequest {
  method: string;
  /** The request target, an absolute path with its query. */
  path: string;
  /** `[name, value, ...]`, without hop-by-hop or framing fields (Content-Length, Transfer-Encoding); `host` is added when missing. */
  headers: string[];
  /** The body, streamed with backpressure; null for none. */
  body: Readable | null;
  /** The body's length when known (sent as Content-Length, and enforced); otherwise a body is sent chunked. With no body, 0 sends `content-length: 0`. */
  contentLength?: number;
  /** More body bytes than this fail the request with BODY_TOO_LARGE (413). */
  maxBodyBytes: number;
}

/** What a request reports, in order: onHeaders, onData*, onComplete; or onError at any point. */
export interface UpstreamHandler {
  /** The final response head (interim 1xx responses are skipped). */
  onHeaders(head: ResponseHead): void;
  /** A piece of the body (a slice of what was read; it stays valid). Return false to pause until {@link UpstreamCall.resume}. */
  onData(chunk: Buffer): boolean;
  onComplete(): void;
  /** UPSTREAM_UNAVAILABLE, UPSTREAM_TIMEOUT, BODY_TOO_LARGE or REQUEST_MALFORMED; nothing is reported after it. */
  onError(e: MutualError): void;
}

/** A request in progress. */
export interface UpstreamCall {
  /** Resumes reading after onData returned false. */
  resume(): void;
  /** Abandons the request (the client went away): its connection is closed, nothing more is reported. */
  abort(): void;
}

/** What an exchange needs of its pool: the timeout, and leaving the queue when it gives up. */
export interface ExchangeQueue {
  readonly timeoutMs: number;
  unqueue(ex: Exchange): void;
}

/** @internal UPSTREAM_UNAVAILABLE (502) with `detail`. */
export const unavailable = (detail: string) => new MutualError('UPSTREAM_UNAVAILABLE', { detail });
/** @internal UPSTREAM_TIMEOUT (504) with `detail`. */
export const timedOut = (detail: string) => new MutualError('UPSTREAM_TIMEOUT', { detail });
/** @internal UPSTREAM_UNAVAILABLE naming a socket error's code. */
export const cause = (e: Error) => unavailable(`${(e as { code?: string }).code ?? e.name}: ${e.message}`);

/** REQUEST_MALFORMED when the method, target or a field cannot be written as they are; undefined when they can. */
export function validateRequest(r: UpstreamRequest): MutualError | undefined {
  if (BAD_TARGET.test(r.path) || !TOKEN.test(r.method)) return new MutualError('REQUEST_MALFORMED', { detail: 'a method or request target that cannot be forwarded' });
  const h = r.headers;
  for (let i = 0; i < h.length; i += 2) {
    if (!TOKEN.test(h[i]) || BAD_VALUE.test(h[i + 1])) return new MutualError('REQUEST_MALFORMED', { detail: `the field "${h[i].slice(0, 64)}" cannot be forwarded` });
  }
  return undefined;
}

/** The request head, as one string written in one call; `hostHeader` is the Host sent when `r` has none. */
export function requestHead(r: UpstreamRequest, hostHeader: string): string {
  let head = `${r.method} ${r.path} HTTP/1.1\r\n`;
  let host = false;
  const h = r.headers;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i];
    if (name.length === 4 && name.toLowerCase() === 'host') host = true;
    head += `${name}: ${h[i + 1]}\r\n`;
  }
  if (!host) head += `host: ${hostHeader}\r\n`;
  if (r.contentLength !== undefined) head += `content-length: ${r.contentLength}\r\n`;
  else if (r.body) head += 'transfer-encoding: chunked\r\n';
  return head + '\r\n';
}

/** One request and its response. */
export class Exchange implements UpstreamCall {
  readonly pool: ExchangeQueue;
  readonly handler: UpstreamHandler;
  readonly body: Readable | null;
  readonly isHead: boolean;
  readonly retryable: boolean;
  readonly #contentLength: number | undefined;
  readonly #maxBodyBytes: number;
  head = '';
  conn: Connection | undefined;
  reused = false;
  retried = false;
  responded = false;
  bodySent = false;
  done = false;
  keepAliveMs: number | undefined;
  #sent = 0;
  #queued: NodeJS.Timeout | undefined;
  #onChunk: ((c: Buffer) => void) | undefined;
  #onEnd: (() => void) | undefined;

  constructor(pool: ExchangeQueue, r: UpstreamRequest, handler: UpstreamHandler) {
    this.pool = pool;
    this.handler = handler;
    this.body = r.body;
    this.isHead = r.method === 'HEAD';
    this.retryable = !r.body && IDEMPOTENT.has(r.method);
    this.#contentLength = r.contentLength;
    this.#maxBodyBytes = r.maxBodyBytes;
  }

  queue(): void {
    this.#queued = setTimeout(() => {
      this.pool.unqueue(this);
      this.fail(timedOut(`no upstream connection free within ${this.pool.timeoutMs} ms`));
    }, this.pool.timeoutMs);
  }

  unqueued(): void {
    clearTimeout(this.#queued);
  }

  onHead(head: ResponseHead): void {
    this.responded = true;
    this.keepAliveMs = head.keepAliveMs;
    this.handler.onHeaders(head);
  }

  /** Streams the body: Content-Length or chunked framing, the byte limit, backpressure both ways. */
  sendBody(): void {
    const body = this.body!;
    const chunked = this.#contentLength === undefined;
    this.#onChunk = (c: Buffer) => {
      const conn = this.conn;
      if (!conn) return;
      this.#sent += c.length;
      if (this.#sent > this.#maxBodyBytes) return conn.fail(new MutualError('BODY_TOO_LARGE', { detail: `more than ${this.#maxBodyBytes} bytes` }));
      if (!chunked && this.#sent > this.#contentLength!) return conn.fail(new MutualError('REQUEST_MALFORMED', { detail: 'a request body longer than its Content-Length' }));
      if (c.length === 0) return;
      conn.activity();
      let ok: boolean;
      if (chunked) {
        conn.socket.cork();
        conn.socket.write(`${c.length.toString(16)}\r\n`, 'latin1');
        conn.socket.write(c);
        ok = conn.socket.write('\r\n', 'latin1');
        conn.socket.uncork();
      } else ok = conn.socket.write(c);
      if (!ok) body.pause();
    };
    this.#onEnd = () => {
      const conn = this.conn;
      this.#detachBody();
      if (!conn) return;
      if (!chunked && this.#sent !== this.#contentLength) return conn.fail(new MutualError('REQUEST_MALFORMED', { detail: 'a request body shorter than its Content-Length' }));
      if (chunked) conn.socket.write('0\r\n\r\n', 'latin1');
      conn.activity();
      this.bodySent = true;
    };
    // A caller that goes away mid-body closes the response too (which abandons this request); a
    // body stream that fails otherwise fails the request.
    // The error listener stays after the exchange (then a noop: `conn` is gone), so a late error is never thrown.
    body.on('error', (e: Error) => this.conn?.fail(unavailable(`the request body failed: ${e.message}`)));
    body.on('data', this.#onChunk);
    body.on('end', this.#onEnd);
    if (body.isPaused()) body.resume();
  }

  drained(): void {
    if (this.#onChunk && !this.bodySent) this.body!.resume();
  }

  #detachBody(): void {
    if (!this.#onChunk) return;
    this.body!.off('data', this.#onChunk);
    this.body!.off('end', this.#onEnd!);
    this.#onChunk = undefined;
    // The exchange ended before the body did (an early answer, a failure): the rest is read and
    // dropped, so the caller's connection can carry its next request (Node bounds it by requestTimeout).
    if (!this.bodySent) this.body!.resume();
  }

  resume(): void {
    this.conn?.resume();
  }

  abort(): void {
    if (this.done) return;
    this.done = true;
    this.#detachBody();
    clearTimeout(this.#queued);
    this.pool.unqueue(this);
    const c = this.conn;
    this.conn = undefined;
    if (c) {
      c.exchange = undefined;
      c.destroy();
    }
  }

  complete(): void {
    if (this.done) return;
    this.done = true;
    this.#detachBody();
    this.handler.onComplete();
  }

  fail(e: MutualError): void {
    if (this.done) return;
    this.done = true;
    this.#detachBody();
    clearTimeout(this.#queued);
    this.handler.onError(e);
  }
}
