/**
 * Small HTTP helpers for the CA server: bounded bodies, JSON, RFC 9457 problem responses with a
 * request id, and a token-bucket rate limiter.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import crypto from 'node:crypto';
import { ERRORS, MutualError, isMutualError, type ErrorCode } from '../core/errors.ts';

/** Largest request body the API reads (a CSR with 100 names is ~5 KB). */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * After a refused upload, how long the connection is kept reading (and discarding) what the client
 * still sends, at most, before it is closed (see {@link lingerBeforeClose}).
 */
export const LINGER_MS = 5_000;
/** ... and how many bytes at most (a 10 MB upload in flight is read to its end). */
export const LINGER_MAX_BYTES = 32 * 1024 * 1024;

/**
 * Reads a request body up to `limit` bytes; throws REQUEST_TOO_LARGE past it, and CLIENT_ABORTED
 * when the client closes the connection before the body's end (not a server failure: the caller
 * logs it quietly and writes no answer).
 */
export function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // Gone before the handler came to read (it may await a store read first): its 'error' and
    // 'close' have fired already and would never reach the listeners below.
    if (req.destroyed) {
      reject(new MutualError('CLIENT_ABORTED', { detail: 'connection closed before the body was read' }));
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new MutualError('REQUEST_TOO_LARGE', { detail: `${declared} bytes; the limit is ${limit}` }));
      req.resume();
      return;
    }
    const parts: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > limit) {
        reject(new MutualError('REQUEST_TOO_LARGE', { detail: `more than ${limit} bytes` }));
        // Drain instead of destroying, so the 413 can still be written (the connection closes after).
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      parts.push(c);
    });
    req.on('end', () => resolve(parts.length === 1 ? parts[0] : Buffer.concat(parts)));
    // Node reports a connection closed mid-body as an 'aborted' error (ECONNRESET) on the request.
    req.on('error', (e: NodeJS.ErrnoException) => reject(new MutualError('CLIENT_ABORTED', { detail: e.code ?? 'connection closed' }, { cause: e })));
    req.on('close', () => {
      if (!req.complete) reject(new MutualError('CLIENT_ABORTED', { detail: 'connection closed before the end of the body' }));
    });
  });
}

/**
 * Closes the connection after this request's answer the way RFC 9112 9.6 asks, instead of at
 * once: the answer, a half-close (FIN), then reading and discarding what the client still sends
 * until it closes its side, {@link LINGER_MAX_BYTES} have come or {@link LINGER_MS} have passed.
 * Node's server destroys a `Connection: close` socket as soon as the answer is written; with
 * unread bytes of an upload still arriving, the kernel then answers with RST, which can discard
 * the answer in the client's receive buffer before it is read: curl saw "Send failure: Broken
 * pipe" or a reset instead of its 413 (issue 13, item 11).
 */
export function lingerBeforeClose(req: IncomingMessage): void {
  const socket = req.socket as Socket & { destroySoon?: () => void };
  if (typeof socket.destroySoon !== 'function' || socket.destroyed) return;
  let read = 0;
  req.on('data', (c: Buffer) => {
    read += c.length;
    if (read > LINGER_MAX_BYTES) socket.destroy();
  });
  req.resume();
  // Node's server calls destroySoon() once the answer is written (res._last); only this socket's
  // own method is replaced.
  socket.destroySoon = () => {
    if (socket.writable) socket.end();
    // The client's FIN after our own ends the socket (autoDestroy); this bounds the wait.
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  };
}

/**
 * True when `e` means the client went away while its request was read: CLIENT_ABORTED from
 * {@link readBody}, or a reset reported by a stream on a connection that is already closed.
 */
export function isClientGone(e: unknown, req: IncomingMessage): boolean {
  if (isMutualError(e)) return e.code === 'CLIENT_ABORTED';
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return req.socket.destroyed && (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED' || code === 'ERR_STREAM_PREMATURE_CLOSE');
}

/** Reads and parses a JSON object body. */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = String(req.headers['content-type'] ?? '');
  if (type && !type.startsWith('application/json')) throw new MutualError('REQUEST_MALFORMED', { detail: `content-type ${type.slice(0, 60)}; send application/json` });
  const body = await readBody(req);
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw new MutualError('REQUEST_MALFORMED', { detail: 'the body is not valid JSON' });
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new MutualError('REQUEST_MALFORMED', { detail: 'the body must be a JSON object' });
  return v as Record<string, unknown>;
}

/** Sends JSON. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  // One Buffer: headers and body leave in one write instead of a string conversion on the way.
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': bytes.length, 'cache-control': 'no-store' });
  res.end(bytes);
}

const requestIdPrefix = crypto.randomBytes(6).toString('hex');
let requestCounter = 0;

/**
 * A new request id: a random prefix per process (replicas differ) and a counter. Unique, not
 * secret; a randomBytes call per request cost ~11 us of the issuance path.
 */
export const newRequestId = (): string => `${requestIdPrefix}-${(requestCounter++).toString(36)}`;

/**
 * Sends an RFC 9457 problem. MutualErrors carry their code, message and hint; anything else is a
 * 500 with a generic body (the cause goes to the log, never to the caller).
 */
export function sendProblem(res: ServerResponse, e: unknown, requestId: string): { status: number; code: ErrorCode | 'INTERNAL' } {
  const known = isMutualError(e);
  const status = known ? (e.status === 495 ? 403 : e.status) : 500;
  const code = known ? e.code : 'INTERNAL';
  const body = known && status < 500
    ? { type: `urn:mutual:error:${e.code}`, title: e.message, status, code: e.code, detail: e.fields.detail, hint: e.hint, requestId }
    : { type: 'urn:mutual:error:INTERNAL', title: known ? ERRORS[e.code].message : 'Internal error', status, code, hint: known ? e.hint : 'Retry later; the server log has the details under this request id.', requestId };
  const text = JSON.stringify(body);
  if (res.headersSent) {
    res.destroy();
    return { status, code };
  }
  const headers: Record<string, string | number> = { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(text), 'x-request-id': requestId };
  if (code === 'RATE_LIMITED') headers['retry-after'] = 1;
  if (code === 'REQUEST_TOO_LARGE') {
    headers.connection = 'close';
    lingerBeforeClose(res.req);
  }
  res.writeHead(status, headers);
  res.end(text);
  return { status, code };
}

/** A token bucket per key (client address). */
export class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  /** `perSecond` requests per second sustained, `burst` at once. */
  constructor(perSecond: number, burst: number) {
    if (!(perSecond > 0 && burst >= 1)) throw new TypeError('rate limit needs perSecond > 0 and burst >= 1');
    this.#rate = perSecond;
    this.#burst = burst;
  }

  /** Takes one token for `key`; false when the bucket is empty. */
  take(key: string, now = Date.now()): boolean {
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size > 100_000) this.#buckets.clear(); // bounded memory under address churn
      b = { tokens: this.#burst, at: now };
      this.#buckets.set(key, b);
    }
    b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) / 1000) * this.#rate);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
