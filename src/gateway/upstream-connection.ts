/**
 * One connection of the gateway's upstream client ({@link UpstreamPool}): reads straight into the
 * response parser, carries one exchange at a time, enforces its deadline when the pool's sweep
 * asks, and decides after each response whether it can be reused (see upstream.ts's module doc).
 */
import type net from 'node:net';
import type { MutualError } from '../core/errors.ts';
import { ResponseParser, type ResponseHead, type ResponseParserHandler } from './response-parser.ts';
import { cause, timedOut, unavailable, type Exchange } from './upstream-exchange.ts';

/** An idle upstream connection is closed after this long. */
export const UPSTREAM_IDLE_MS = 30_000;
/** An idle connection is not reused this close to the upstream's announced keep-alive timeout (its close may be on the way). */
export const KEEP_ALIVE_MARGIN_MS = 1000;
/** Size of each connection's read buffer (bytes read per read call at most). */
export const READ_BUFFER_BYTES = 16 * 1024;
/** Body chunks at least this large are handed on in place (and the connection reads into a new buffer); smaller ones are copied. */
const LEND_ABOVE_BYTES = 2048;

/** net.Socket's `onread` option: reads into a buffer of ours, handed to the callback. */
export interface OnRead {
  buffer: () => Buffer;
  callback: (n: number, buf: Buffer) => boolean;
}

/** What a connection needs of its pool. */
export interface ConnectionOwner {
  /** The response timeout (ms). */
  readonly timeoutMs: number;
  /** Gives an exchange a connection (`fresh`: a retry, on a new one). */
  dispatch(ex: Exchange, fresh: boolean): void;
  /** The connection finished a response and may be reused. */
  release(c: Connection): void;
  /** The connection is gone. */
  removed(c: Connection): void;
}

/**
 * One upstream connection. Its socket listeners are set once; the exchange it serves changes.
 * It reports the response to the exchange and decides, at the end, whether it can be reused.
 */
export class Connection implements ResponseParserHandler {
  readonly pool: ConnectionOwner;
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

  constructor(pool: ConnectionOwner, generation: number, connectTimeoutMs: number, secure: boolean, open: (onread: OnRead) => net.Socket) {
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
