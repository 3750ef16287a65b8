/**
 * The gateway's upstream client: HTTP/1.1 over a keep-alive connection pool per upstream origin
 * and TLS setting (plain TCP, TLS, or TLS presenting the gateway's own client certificate, which
 * rotates without failing a request in flight). It does only what a reverse proxy needs, so a
 * proxied request costs one write of the request head, reads straight into a strict parser
 * ({@link ResponseParser}) through the socket's `onread` (no stream buffering, no 'data' events),
 * and no promise or timer per request. On `npm run bench:gateway` (keep-alive, 32 connections)
 * the gateway went from 0.084 to 0.048 ms of CPU per proxied request with it (undici before).
 *
 * - Connections: at most `connections` per pool; past that, requests wait in FIFO order (bounded
 *   by `timeoutMs`). An idle connection is reused, most recently used first, while it is younger
 *   than {@link UPSTREAM_IDLE_MS} and than the upstream's own `Keep-Alive: timeout` minus
 *   {@link KEEP_ALIVE_MARGIN_MS}.
 * - Reuse only after a complete response when neither side said `connection: close`, the request
 *   body was sent whole, and the upstream sent nothing past the response.
 * - Retry: a request that fails on a reused connection before any response byte came back (the
 *   upstream closed it while idle) is sent once more on a new connection, if its method is
 *   idempotent (RFC 9110 9.2.2) and it has no body; every other failure is reported.
 * - Timeouts: connecting (TCP and TLS) {@link UPSTREAM_CONNECT_TIMEOUT_MS} or `timeoutMs` if
 *   shorter; the response head within `timeoutMs` of the last request byte sent; then at most
 *   `timeoutMs` between body reads (not counted while the client is not reading). Past them:
 *   UPSTREAM_TIMEOUT (504); other failures UPSTREAM_UNAVAILABLE (502). Deadlines are checked by
 *   one interval per pool ({@link MAX_SWEEP_MS}), not a timer per request.
 * - Rotation: on the identity's 'rotated', new connections use a new SecureContext (and no TLS
 *   session of the old certificate); idle old connections close; busy ones finish their request
 *   and are closed instead of being reused.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Readable } from 'node:stream';
import { MutualError } from '../core/errors.ts';
import type { IdentitySource } from '../sdk/identity-source.ts';
import { ResponseParser, type ResponseHead, type ResponseParserHandler } from './response-parser.ts';

/** Longest time to open a connection (TCP connect and TLS handshake) when `timeoutMs` is longer. */
export const UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;
/** An idle upstream connection is closed after this long. */
export const UPSTREAM_IDLE_MS = 30_000;
/** An idle connection is not reused this close to the upstream's announced keep-alive timeout (its close may be on the way). */
export const KEEP_ALIVE_MARGIN_MS = 1000;
/**
 * Most time between two checks of a pool's deadlines (response timeouts, idle connections past
 * their time); a pool checks 8 times per timeout, at least every 10 ms. A timeout fires at most one
 * check late; reuse checks an idle connection's age itself, exactly.
 */
export const MAX_SWEEP_MS = 1000;

/** Size of each connection's read buffer (bytes read per read call at most). */
export const READ_BUFFER_BYTES = 16 * 1024;
/** Body chunks at least this large are handed on in place (and the connection reads into a new buffer); smaller ones are copied. */
const LEND_ABOVE_BYTES = 2048;

/** Methods that may be sent again after a failure (RFC 9110 9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
// RFC 9110 5.1, 5.5: field names are tokens; values hold no CR, LF or NUL (and no other controls but HTAB).
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const BAD_VALUE = /[\0-\x08\x0a-\x1f\x7f]/;
// The request target is sent as is: no whitespace or controls (RFC 9112 3.2).
const BAD_TARGET = /[\0-\x20\x7f]/;

/** TLS settings of a pool for an `https:` upstream. */
export interface UpstreamTlsOptions {
  /** Trust anchors for the upstream's chain, PEM. */
  ca: string;
  /** The client certificate to present (mTLS); new connections use its current material, so a rotation applies to them. */
  identity?: IdentitySource;
  /** The TLS server name (SNI and the certificate check) when it is not the URL's host. */
  servername?: string;
  /** Extra checks of the upstream's certificate (default: Node's host name check). */
  checkServerIdentity?: (host: string, cert: tls.PeerCertificate) => Error | undefined;
}

/** Options of {@link UpstreamPool}. */
export interface UpstreamPoolOptions {
  /** The upstream's origin (`http:` or `https:`; any path is ignored). */
  origin: URL;
  /** Connections at most (limits.upstreamConnections). */
  connections: number;
  /** The upstream timeout (limits.upstreamTimeoutMs). */
  timeoutMs: number;
  /** Required for `https:` origins. */
  tls?: UpstreamTlsOptions;
}

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

/** net.Socket's `onread` option: reads into a buffer of ours, handed to the callback. */
interface OnRead {
  buffer: () => Buffer;
  callback: (n: number, buf: Buffer) => boolean;
}

const unavailable = (detail: string) => new MutualError('UPSTREAM_UNAVAILABLE', { detail });
const timedOut = (detail: string) => new MutualError('UPSTREAM_TIMEOUT', { detail });
const cause = (e: Error) => unavailable(`${(e as { code?: string }).code ?? e.name}: ${e.message}`);

/**
 * The connections to one upstream origin. Safe to call while serving: {@link close} lets requests
 * in flight (and queued ones) finish, then closes every connection.
 */
export class UpstreamPool {
  readonly #o: UpstreamPoolOptions;
  readonly #host: string;
  readonly #port: number;
  readonly #hostHeader: string;
  readonly #connectTimeoutMs: number;
  readonly #all = new Set<Connection>();
  readonly #idle: Connection[] = [];
  readonly #queue: Exchange[] = [];
  #queueHead = 0;
  #count = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #onClosed: (() => void) | undefined;
  #sweep: NodeJS.Timeout | undefined;
  readonly #sweepMs: number;
  // TLS: one SecureContext per identity generation, and the last session for resumption.
  #generation = 0;
  #context: tls.SecureContext | undefined;
  #session: Buffer | undefined;
  readonly #onRotated: () => void;

  constructor(o: UpstreamPoolOptions) {
    if (o.origin.protocol !== 'http:' && o.origin.protocol !== 'https:') throw new TypeError(`an upstream is http: or https:, not ${o.origin.protocol}`);
    if (o.origin.protocol === 'https:' && !o.tls) throw new TypeError('an https: upstream needs tls options');
    if (!(o.connections >= 1) || !(o.timeoutMs > 0)) throw new TypeError('connections and timeoutMs must be positive');
    this.#o = o;
    this.#host = o.origin.hostname.startsWith('[') ? o.origin.hostname.slice(1, -1) : o.origin.hostname;
    this.#port = Number(o.origin.port) || (o.origin.protocol === 'https:' ? 443 : 80);
    this.#hostHeader = o.origin.host;
    this.#connectTimeoutMs = Math.min(UPSTREAM_CONNECT_TIMEOUT_MS, o.timeoutMs);
    this.#sweepMs = Math.max(10, Math.min(MAX_SWEEP_MS, Math.floor(o.timeoutMs / 8)));
    this.#onRotated = () => {
      // New connections present the new certificate; busy old ones finish and are then closed.
      this.#generation++;
      this.#context = undefined;
      this.#session = undefined;
      for (const c of this.#idle.splice(0)) c.destroy();
    };
    o.tls?.identity?.on('rotated', this.#onRotated);
  }

  /** The response timeout (ms). */
  get timeoutMs(): number {
    return this.#o.timeoutMs;
  }

  /** Connections open (busy, idle and connecting). */
  get connections(): number {
    return this.#count;
  }

  /** Sends a request; the outcome comes through `handler` (never synchronously thrown). */
  request(r: UpstreamRequest, handler: UpstreamHandler): UpstreamCall {
    const ex = new Exchange(this, r, handler);
    const bad = this.#validate(r);
    if (bad) {
      ex.done = true;
      handler.onError(bad);
      return ex;
    }
    ex.head = this.#head(r);
    this.dispatch(ex, false);
    return ex;
  }

  /** Stops keeping connections: idle ones close now, busy ones after their response; resolves when none is left. */
  close(): Promise<void> {
    this.#closing ??= new Promise((resolve) => {
      this.#closed = true;
      this.#o.tls?.identity?.off('rotated', this.#onRotated);
      this.#onClosed = resolve;
      for (const c of this.#idle.splice(0)) c.destroy();
      this.#checkClosed();
    });
    return this.#closing;
  }

  /** Closes every connection now; requests in flight or queued fail with UPSTREAM_UNAVAILABLE. */
  destroy(): void {
    this.#closed = true;
    this.#o.tls?.identity?.off('rotated', this.#onRotated);
    for (const ex of this.#queue.splice(0).slice(this.#queueHead)) ex.fail(unavailable('the gateway is shutting down'));
    this.#queueHead = 0;
    for (const c of [...this.#all]) c.fail(unavailable('the gateway is shutting down'));
    this.#checkClosed();
  }

  #validate(r: UpstreamRequest): MutualError | undefined {
    if (BAD_TARGET.test(r.path) || !TOKEN.test(r.method)) return new MutualError('REQUEST_MALFORMED', { detail: 'a method or request target that cannot be forwarded' });
    const h = r.headers;
    for (let i = 0; i < h.length; i += 2) {
      if (!TOKEN.test(h[i]) || BAD_VALUE.test(h[i + 1])) return new MutualError('REQUEST_MALFORMED', { detail: `the field "${h[i].slice(0, 64)}" cannot be forwarded` });
    }
    return undefined;
  }

  /** The request head, as one string written in one call. */
  #head(r: UpstreamRequest): string {
    let head = `${r.method} ${r.path} HTTP/1.1\r\n`;
    let host = false;
    const h = r.headers;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i];
      if (name.length === 4 && name.toLowerCase() === 'host') host = true;
      head += `${name}: ${h[i + 1]}\r\n`;
    }
    if (!host) head += `host: ${this.#hostHeader}\r\n`;
    if (r.contentLength !== undefined) head += `content-length: ${r.contentLength}\r\n`;
    else if (r.body) head += 'transfer-encoding: chunked\r\n';
    return head + '\r\n';
  }

  /** @internal Gives the exchange a connection: an idle one, a new one, or a place in the queue. */
  dispatch(ex: Exchange, fresh: boolean): void {
    if (!fresh) {
      const now = performance.now();
      while (this.#idle.length) {
        const c = this.#idle.pop()!;
        if (now - c.idleSince < c.idleLimit) return c.assign(ex);
        c.destroy();
      }
    } else if (this.#count >= this.#o.connections && this.#idle.length) {
      // A retry: the oldest idle connection is the likeliest to be stale too; it makes room.
      this.#idle.shift()!.destroy();
    }
    if (this.#count < this.#o.connections) return this.#connect().assign(ex);
    ex.queue();
    this.#queue.push(ex);
  }

  /** @internal A connection finished a response and may be reused. */
  release(c: Connection): void {
    const next = this.#dequeue();
    if (next) return c.assign(next);
    if (this.#closed || c.generation !== this.#generation) return c.destroy();
    c.idleSince = performance.now();
    this.#idle.push(c);
  }

  /** @internal A connection is gone: a queued request may open a new one. */
  removed(c: Connection): void {
    this.#count--;
    this.#all.delete(c);
    if (!this.#all.size && this.#sweep) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
    const i = this.#idle.indexOf(c);
    if (i >= 0) this.#idle.splice(i, 1);
    const next = this.#dequeue();
    if (next) this.#connect().assign(next);
    this.#checkClosed();
  }

  /** @internal Takes a queued request out (it timed out or was abandoned). */
  unqueue(ex: Exchange): void {
    const i = this.#queue.indexOf(ex, this.#queueHead);
    if (i >= 0) this.#queue.splice(i, 1);
  }

  #dequeue(): Exchange | undefined {
    if (this.#queueHead >= this.#queue.length) return undefined;
    const ex = this.#queue[this.#queueHead];
    this.#queue[this.#queueHead++] = undefined as unknown as Exchange;
    if (this.#queueHead === this.#queue.length) {
      this.#queue.length = 0;
      this.#queueHead = 0;
    }
    ex.unqueued();
    return ex;
  }

  /** Times out stuck requests and closes idle connections past their time (one timer per pool, not one per request). */
  #sweepDeadlines(): void {
    const now = performance.now();
    for (const c of this.#all) c.check(now);
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      const c = this.#idle[i];
      if (now - c.idleSince >= c.idleLimit) c.destroy();
    }
  }

  #checkClosed(): void {
    if (!this.#closed || this.#count > 0 || this.#queueHead < this.#queue.length) return;
    if (this.#sweep) clearInterval(this.#sweep);
    this.#sweep = undefined;
    this.#onClosed?.();
    this.#onClosed = undefined;
  }

  #connect(): Connection {
    this.#count++;
    const c = new Connection(this, this.#generation, this.#connectTimeoutMs, !!this.#o.tls, (onread) => this.#open(onread));
    this.#all.add(c);
    this.#sweep ??= setInterval(() => this.#sweepDeadlines(), this.#sweepMs).unref();
    return c;
  }

  #open(onread: OnRead): net.Socket {
    const t = this.#o.tls;
    let socket: net.Socket;
    if (!t) socket = net.connect({ host: this.#host, port: this.#port, onread });
    else {
      if (!this.#context) {
        const id = t.identity?.current;
        this.#context = tls.createSecureContext({ ca: t.ca, minVersion: 'TLSv1.2', ...(id ? { cert: id.cert, key: id.key } : {}) });
      }
      const servername = t.servername ?? (net.isIP(this.#host) ? undefined : this.#host);
      socket = tls.connect({
        host: this.#host, port: this.#port, secureContext: this.#context, ...(servername ? { servername } : {}),
        ...(t.checkServerIdentity ? { checkServerIdentity: t.checkServerIdentity } : {}),
        ...(this.#session ? { session: this.#session } : {}),
        onread,
      } as tls.ConnectionOptions);
      const generation = this.#generation;
      socket.on('session', (s: Buffer) => {
        if (generation === this.#generation) this.#session = s;
      });
    }
    // Request heads and small bodies go out at once (Nagle would hold a body behind its head).
    socket.setNoDelay(true);
    return socket;
  }
}

/**
 * One upstream connection. Its socket listeners are set once; the exchange it serves changes.
 * It reports the response to the exchange and decides, at the end, whether it can be reused.
 */
class Connection implements ResponseParserHandler {
  readonly pool: UpstreamPool;
  readonly socket: net.Socket;
  readonly parser: ResponseParser;
  readonly generation: number;
  exchange: Exchange | undefined;
  /** Requests this connection has carried (a failure on a reused one may be retried). */
  uses = 0;
  idleSince = 0;
  idleLimit = UPSTREAM_IDLE_MS;
  #connecting: NodeJS.Timeout | undefined;
  /** When the request in progress times out (performance.now() ms), checked by the pool's sweep. */
  #deadline = Infinity;
  #paused = false;
  #dead = false;
  #error: Error | undefined;
  /** The read buffer, reused unless a body chunk handed on still points into it. */
  #buffer: Buffer;
  #bufferLent = false;

  constructor(pool: UpstreamPool, generation: number, connectTimeoutMs: number, secure: boolean, open: (onread: OnRead) => net.Socket) {
    this.pool = pool;
    this.generation = generation;
    this.parser = new ResponseParser(this);
    // Reads go straight to the parser through `onread` (no stream buffering, no 'data' events).
    this.#buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    const socket = (this.socket = open({
      buffer: () => this.#nextBuffer(),
      callback: (n: number, buf: Buffer) => {
        this.#onData(n === buf.length ? buf : buf.subarray(0, n));
        // Pausing is done through socket.pause() (backpressure), never by this return value.
        return true;
      },
    }));
    this.#connecting = setTimeout(() => this.fail(timedOut(`no connection to the upstream within ${connectTimeoutMs} ms`)), connectTimeoutMs);
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      clearTimeout(this.#connecting);
      this.#connecting = undefined;
      this.#arm();
    });
    socket.on('end', () => this.#onEnd());
    socket.on('error', (e: Error) => {
      this.#error ??= e;
    });
    socket.on('close', () => this.#onClose());
    socket.on('drain', () => this.exchange?.drained());
  }

  /** Starts an exchange on this connection: writes its head, then its body if it has one. */
  assign(ex: Exchange): void {
    this.exchange = ex;
    ex.conn = this;
    ex.reused = this.uses > 0;
    this.uses++;
    this.#paused = false;
    this.parser.expect(ex.isHead);
    if (!this.#connecting) this.#arm();
    this.socket.write(ex.head, 'latin1');
    if (ex.body) ex.sendBody();
    else ex.bodySent = true;
  }

  /** (Re)starts the response timeout: after the request (or the last body byte either way). */
  #arm(): void {
    this.#deadline = performance.now() + this.pool.timeoutMs;
  }

  /** Called as the request body is written: the upstream cannot answer before it has it. */
  activity(): void {
    if (!this.#connecting) this.#arm();
  }

  pause(): void {
    this.#paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#arm();
    this.socket.resume();
  }

  /** Fails the request in progress if its deadline passed (not while connecting or paused by the client). */
  check(now: number): void {
    const ex = this.exchange;
    if (!ex || this.#paused || this.#connecting || now < this.#deadline) return;
    this.fail(timedOut(ex.responded ? `no response data for ${this.pool.timeoutMs} ms` : `no response within ${this.pool.timeoutMs} ms`));
  }

  #onData(b: Buffer): void {
    const ex = this.exchange;
    if (!ex) {
      // Bytes on an idle connection: nothing asked for them, so nothing read after them can be trusted.
      this.destroy();
      return;
    }
    let extra: number;
    try {
      extra = this.parser.execute(b);
    } catch (e) {
      this.fail(e as MutualError);
      return;
    }
    if (this.exchange !== ex) return;
    if (extra < 0) {
      if (ex.responded) this.#arm();
      return;
    }
    this.#complete(ex, extra === 0);
  }

  // ResponseParserHandler
  onHead(head: ResponseHead): void {
    this.exchange!.onHead(head);
  }

  onBody(chunk: Buffer): void {
    const ex = this.exchange!;
    // The handler may keep the chunk (collected, or queued in a write): small ones are copied
    // (from Node's buffer pool), large ones are lent and the next read gets a new buffer.
    let data: Buffer;
    if (chunk.length < LEND_ABOVE_BYTES) data = Buffer.from(chunk);
    else {
      data = chunk;
      this.#bufferLent = true;
    }
    if (!ex.handler.onData(data) && this.exchange === ex) this.pause();
  }

  #nextBuffer(): Buffer {
    if (this.#bufferLent) {
      this.#bufferLent = false;
      this.#buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    }
    return this.#buffer;
  }

  #complete(ex: Exchange, clean: boolean): void {
    this.exchange = undefined;
    ex.conn = undefined;
    const reuse = clean && this.parser.keepAlive && ex.bodySent && !this.#dead;
    if (reuse) {
      const ms = ex.keepAliveMs;
      this.idleLimit = ms === undefined ? UPSTREAM_IDLE_MS : Math.min(UPSTREAM_IDLE_MS, ms - KEEP_ALIVE_MARGIN_MS);
      if (this.idleLimit > 0) this.pool.release(this);
      else this.destroy();
    } else this.destroy();
    ex.complete();
  }

  #onEnd(): void {
    const ex = this.exchange;
    if (!ex) return this.destroy();
    let ended: boolean;
    try {
      ended = this.parser.finish();
    } catch (e) {
      this.fail(e as MutualError);
      return;
    }
    if (ended) this.#complete(ex, false);
  }

  #onClose(): void {
    const ex = this.exchange;
    if (ex) this.fail(this.#error ? cause(this.#error) : unavailable(ex.responded ? 'the upstream closed the connection inside the response' : 'the upstream closed the connection before any response'));
    else this.destroy();
  }

  /** Ends the exchange in progress with `e` (or retries it, see the module doc) and closes the connection. */
  fail(e: MutualError): void {
    const ex = this.exchange;
    this.exchange = undefined;
    this.destroy();
    if (!ex) return;
    ex.conn = undefined;
    if (ex.reused && !this.parser.received && !ex.retried && ex.retryable && e.code === 'UPSTREAM_UNAVAILABLE') {
      ex.retried = true;
      this.pool.dispatch(ex, true);
      return;
    }
    ex.fail(e);
  }

  /** Closes the connection; it is never reused. */
  destroy(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.parser.stop();
    if (this.#connecting) clearTimeout(this.#connecting);
    this.socket.destroy();
    this.pool.removed(this);
    const ex = this.exchange;
    if (ex) {
      this.exchange = undefined;
      ex.conn = undefined;
      ex.fail(unavailable('the upstream connection was closed'));
    }
  }
}

/** One request and its response. */
class Exchange implements UpstreamCall {
  readonly pool: UpstreamPool;
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

  constructor(pool: UpstreamPool, r: UpstreamRequest, handler: UpstreamHandler) {
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
