/**
 * A strict, bounded HTTP/1.1 response parser (RFC 9112) for the gateway's upstream client. It is
 * fed a connection's bytes as they arrive and reports the final response head and the body chunks
 * (slices of its input, never copies). Whatever a response-splitting or smuggling attempt could use
 * is refused rather than guessed at: obs-fold, a bare CR or LF, control characters, bad field
 * names, two Content-Length fields, Transfer-Encoding with Content-Length, and transfer codings
 * other than chunked (nginx refuses those too). It does no I/O; the connection owns the socket.
 */
import { MutualError } from '../core/errors.ts';

/** Largest response head (status line and fields, each interim response counted alone); Node's and undici's default. */
export const MAX_RESPONSE_HEAD_BYTES = 16 * 1024;
/** Most fields in one response head. */
export const MAX_RESPONSE_FIELDS = 128;
/** Most interim (1xx) responses before the final one (RFC 9110 15.2: 100 Continue, 102, 103 Early Hints). */
export const MAX_INTERIM_RESPONSES = 8;
/** Longest chunk-size line, extensions included (RFC 9112 7.1.1; Node bounds extensions after CVE-2024-22019). */
export const MAX_CHUNK_LINE_BYTES = 4096;
/** Most significant hex digits in a chunk size: 12 digits is 256 TiB, far inside a double's exact range. */
export const MAX_CHUNK_SIZE_DIGITS = 12;
/** Largest trailer section (RFC 9112 7.1.2); trailers are read and discarded. */
export const MAX_TRAILER_BYTES = 16 * 1024;

/** The final response head. */
export interface ResponseHead {
  status: number;
  /** Fields to pass on, `[name, value, ...]` as received (names keep their case); hop-by-hop fields and those named by Connection are left out. */
  headers: string[];
  /** The Content-Length, or -1 when there is none. */
  contentLength: number;
  /** The connection may carry another request once this response is read. */
  keepAlive: boolean;
  /** `Keep-Alive: timeout=N` in ms, when the upstream announced how long it keeps an idle connection. */
  keepAliveMs: number | undefined;
}

/** What the parser reports while it reads one response. */
export interface ResponseParserHandler {
  onHead(head: ResponseHead): void;
  onBody(chunk: Buffer): void;
}

// States. A response with a body goes HEAD -> (LENGTH | CHUNK_LINE <-> CHUNK_DATA/CHUNK_END -> TRAILERS | CLOSE) -> IDLE.
const IDLE = 0;
const HEAD = 1;
const LENGTH = 2;
const CHUNK_LINE = 3;
const CHUNK_DATA = 4;
const CHUNK_END = 5;
const TRAILERS = 6;
const CLOSE = 7;
/** Abandoned by the connection: nothing more is reported. */
const STOPPED = 8;

// RFC 9110 5.6.2: tchar, as a table (field names are checked a character at a time).
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
const DIGITS = /^\d{1,15}$/;
const CRLFCRLF = Buffer.from('\r\n\r\n');
// RFC 9112 7.1: chunk-size [ chunk-ext ] CRLF; extensions are discarded, so only their characters are checked.
const CHUNK_LINE_RE = /^([0-9A-Fa-f]+)[ \t]*(?:;[^\0-\x08\x0a-\x1f\x7f]*)?\r$/;
const TRAILER_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\0-\x08\x0a-\x1f\x7f]*\r$/;
const KEEP_ALIVE_TIMEOUT = /(?:^|[,;\s])timeout\s*=\s*(\d{1,9})/i;

const malformed = (detail: string) => new MutualError('UPSTREAM_UNAVAILABLE', { detail: `malformed upstream response: ${detail}` });

/**
 * The status code of a status line `s[0, eol)`, or -1 when it is not one (RFC 9112 4:
 * `HTTP/1.x SP 3DIGIT SP [ reason-phrase ]`; the SP before an empty reason is often left out; the
 * code's class must be 1 to 5 (RFC 9110 15); the reason holds no control character but HTAB).
 */
function statusOf(s: string, eol: number): number {
  if (eol < 12 || !s.startsWith('HTTP/1.') || s.charCodeAt(8) !== 32 || (eol > 12 && s.charCodeAt(12) !== 32)) return -1;
  const minor = s.charCodeAt(7);
  const a = s.charCodeAt(9) - 48;
  const b = s.charCodeAt(10) - 48;
  const c = s.charCodeAt(11) - 48;
  if ((minor !== 48 && minor !== 49) || a < 1 || a > 5 || b < 0 || b > 9 || c < 0 || c > 9) return -1;
  for (let k = 13; k < eol; k++) {
    const x = s.charCodeAt(k);
    if ((x < 32 && x !== 9) || x === 127) return -1;
  }
  return a * 100 + b * 10 + c;
}

/** Removes optional whitespace (SP and HTAB only: `trim()` would also eat 0xA0, a valid obs-text byte). */
function fieldValue(line: string, from: number): string {
  let a = from;
  let b = line.length;
  while (a < b && (line.charCodeAt(a) === 32 || line.charCodeAt(a) === 9)) a++;
  while (b > a && (line.charCodeAt(b - 1) === 32 || line.charCodeAt(b - 1) === 9)) b--;
  return line.slice(a, b);
}

/**
 * Reads responses off one connection, one at a time: {@link expect} before each request, then
 * {@link execute} with every chunk read, {@link finish} at end of stream. Malformed input throws a
 * MutualError UPSTREAM_UNAVAILABLE naming what was wrong; the connection must then be dropped.
 */
export class ResponseParser {
  readonly #handler: ResponseParserHandler;
  #state = IDLE;
  #isHead = false;
  #interim = 0;
  /** Head bytes split over reads, copied into one buffer (bounded, so no quadratic re-copying). */
  #pending: Buffer | undefined;
  #pendingLength = 0;
  /** A chunk-size or trailer line split over reads. */
  #line = '';
  #trailerBytes = 0;
  #remaining = 0;
  #crlf = 0;
  #keepAlive = false;
  /** Bytes of the current response seen so far (any, even an interim response). */
  received = false;

  constructor(handler: ResponseParserHandler) {
    this.#handler = handler;
  }

  /** Starts reading a response to a request just sent; `isHead` for HEAD (no body, RFC 9110 9.3.2). */
  expect(isHead: boolean): void {
    this.#state = HEAD;
    this.#isHead = isHead;
    this.#interim = 0;
    this.#pendingLength = 0;
    this.#line = '';
    this.received = false;
  }

  /** Stops reading (the exchange was abandoned): {@link execute} reports nothing more until the next {@link expect}. */
  stop(): void {
    this.#state = STOPPED;
  }

  /** True when the current response may be followed by another on this connection. */
  get keepAlive(): boolean {
    return this.#keepAlive;
  }

  /**
   * Reads bytes of the current response. Returns -1 while the response is incomplete; once it is
   * complete, the number of bytes after its end (0 unless the upstream sent more than it was asked).
   */
  execute(buf: Buffer): number {
    if (this.#state === IDLE) return buf.length;
    if (this.#state === STOPPED) return -1;
    this.received = true;
    let i = 0;
    const n = buf.length;
    while (i < n) {
      switch (this.#state) {
        case HEAD:
          i = this.#readHead(buf, i);
          break;
        case LENGTH: {
          const take = Math.min(this.#remaining, n - i);
          this.#remaining -= take;
          const chunk = i === 0 && take === n ? buf : buf.subarray(i, i + take);
          i += take;
          if (this.#remaining === 0) this.#state = IDLE;
          this.#handler.onBody(chunk);
          break;
        }
        case CHUNK_LINE:
          i = this.#readChunkLine(buf, i);
          break;
        case CHUNK_DATA: {
          const take = Math.min(this.#remaining, n - i);
          this.#remaining -= take;
          const chunk = buf.subarray(i, i + take);
          i += take;
          if (this.#remaining === 0) {
            this.#state = CHUNK_END;
            this.#crlf = 0;
          }
          this.#handler.onBody(chunk);
          break;
        }
        case CHUNK_END:
          // RFC 9112 7.1: chunk-data CRLF, exactly.
          if (buf[i] !== (this.#crlf === 0 ? 13 : 10)) throw malformed('chunk data not followed by CRLF');
          i++;
          if (++this.#crlf === 2) this.#state = CHUNK_LINE;
          break;
        case TRAILERS:
          i = this.#readTrailer(buf, i);
          break;
        case CLOSE:
          this.#handler.onBody(i === 0 ? buf : buf.subarray(i));
          return -1;
      }
      // The response ended inside this read, or a handler abandoned it.
      if (this.#state === IDLE) return n - i;
      if (this.#state === STOPPED) return -1;
    }
    return -1;
  }

  /**
   * The upstream closed the connection. Returns true when that ended the current response (a
   * close-delimited body, RFC 9112 6.3 point 8); throws UPSTREAM_UNAVAILABLE when it cut the
   * response short (or sent none).
   */
  finish(): boolean {
    if (this.#state === CLOSE) {
      this.#state = IDLE;
      return true;
    }
    if (this.#state === IDLE || this.#state === STOPPED) return false;
    const what = this.#state === HEAD ? (this.received ? 'inside the response head' : 'before any response') : 'inside the response body';
    this.#state = IDLE;
    throw new MutualError('UPSTREAM_UNAVAILABLE', { detail: `the upstream closed the connection ${what}` });
  }

  #readHead(buf: Buffer, i: number): number {
    let head: string;
    let next: number;
    if (this.#pendingLength === 0) {
      const end = buf.indexOf(CRLFCRLF, i);
      if (end < 0 || end + 4 - i > MAX_RESPONSE_HEAD_BYTES) {
        if (end >= 0 || buf.length - i >= MAX_RESPONSE_HEAD_BYTES) throw malformed(`response head larger than ${MAX_RESPONSE_HEAD_BYTES} bytes`);
        this.#pending ??= Buffer.allocUnsafe(MAX_RESPONSE_HEAD_BYTES);
        this.#pendingLength = buf.copy(this.#pending, 0, i);
        return buf.length;
      }
      head = buf.toString('latin1', i, end);
      next = end + 4;
    } else {
      const pending = this.#pending!;
      const before = this.#pendingLength;
      const copied = buf.copy(pending, before, i, Math.min(buf.length, i + MAX_RESPONSE_HEAD_BYTES - before));
      this.#pendingLength += copied;
      const end = pending.subarray(0, this.#pendingLength).indexOf(CRLFCRLF, Math.max(0, before - 3));
      if (end < 0) {
        if (this.#pendingLength >= MAX_RESPONSE_HEAD_BYTES) throw malformed(`response head larger than ${MAX_RESPONSE_HEAD_BYTES} bytes`);
        return i + copied;
      }
      head = pending.toString('latin1', 0, end);
      next = i + end + 4 - before;
      this.#pendingLength = 0;
    }
    this.#parseHead(head);
    return next;
  }

  #parseHead(s: string): void {
    // One pass over the head, char by char: lines end at CRLF; a CR or LF alone, or any other
    // control character but HTAB, is refused wherever it is (RFC 9112 2.2, 5.5).
    let eol = s.indexOf('\r\n');
    if (eol < 0) eol = s.length;
    const status = statusOf(s, eol);
    if (status < 0) throw malformed(`bad status line "${s.slice(0, Math.min(eol, 64)).replace(/[^\x20-\x7e]/g, '?')}"`);
    // HTTP/1.0 responses are not kept alive (no persistent-connection negotiation is done here).
    let keepAlive = s.charCodeAt(7) === 49;
    let keepAliveMs: number | undefined;
    let contentLength = -1;
    let transferEncoding: string | undefined;
    let connection: string | undefined;
    const headers: string[] = [];
    let fields = 0;
    for (let pos = eol + 2; pos < s.length; pos = eol + 2) {
      eol = s.indexOf('\r\n', pos);
      if (eol < 0) eol = s.length;
      if (++fields > MAX_RESPONSE_FIELDS) throw malformed(`more than ${MAX_RESPONSE_FIELDS} fields`);
      // RFC 9112 5.2: obs-fold is deprecated; refused rather than unfolded.
      const first = s.charCodeAt(pos);
      if (first === 32 || first === 9) throw malformed('obs-fold (a field line starting with whitespace)');
      // RFC 9110 5.1: field-name = token, directly followed by the colon (RFC 9112 5.1: no whitespace before it).
      let j = pos;
      while (j < eol && TCHAR[s.charCodeAt(j)] === 1) j++;
      if (j === pos || j === eol || s.charCodeAt(j) !== 58) throw malformed(`bad field line "${s.slice(pos, Math.min(eol, pos + 64)).replace(/[^\x20-\x7e]/g, '?')}"`);
      const name = s.slice(pos, j);
      // The value without leading and trailing SP/HTAB (RFC 9110 5.5), checked for controls.
      let a = j + 1;
      while (a < eol && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
      let b = a;
      for (let k = a; k < eol; k++) {
        const c = s.charCodeAt(k);
        if (c === 32 || c === 9) continue;
        if (c < 32 || c === 127) throw malformed(`a control character in the field "${name.slice(0, 64)}"`);
        b = k + 1;
      }
      const value = s.slice(a, b);
      const len = name.length;
      // Only names of these lengths can be framing or hop-by-hop fields: no lower-casing for the rest.
      if (len === 14 || len === 17 || len === 10 || len === 16 || len === 2 || len === 7) {
        switch (name.toLowerCase()) {
          case 'content-length':
            // RFC 9112 6.3 point 5: two lengths (even equal ones) are an error here, not a guess.
            if (contentLength >= 0) throw malformed('more than one Content-Length');
            if (!DIGITS.test(value)) throw malformed(`bad Content-Length "${value.slice(0, 32)}"`);
            contentLength = Number(value);
            headers.push(name, value);
            continue;
          case 'transfer-encoding':
            transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
            continue;
          case 'connection':
            connection = connection === undefined ? value : `${connection}, ${value}`;
            continue;
          case 'keep-alive': {
            const t = KEEP_ALIVE_TIMEOUT.exec(value);
            if (t) keepAliveMs = Number(t[1]) * 1000;
            continue;
          }
          case 'proxy-connection':
          case 'te':
          case 'trailer':
          case 'upgrade':
            // Hop-by-hop (RFC 9110 7.6.1): about this connection, not for the client.
            continue;
        }
      }
      headers.push(name, value);
    }
    if (status < 200) {
      // 101 would switch protocols, and no upgrade is ever asked for; other 1xx are interim.
      if (status === 101) throw malformed('101 Switching Protocols without an upgrade request');
      if (++this.#interim > MAX_INTERIM_RESPONSES) throw malformed(`more than ${MAX_INTERIM_RESPONSES} interim responses`);
      return;
    }
    if (transferEncoding !== undefined) {
      // RFC 9112 6.1, 6.3 point 3: both is a smuggling signal and is refused; only chunked is read.
      if (contentLength >= 0) throw malformed('both Transfer-Encoding and Content-Length');
      if (transferEncoding.toLowerCase() !== 'chunked') throw malformed(`unsupported Transfer-Encoding "${transferEncoding.slice(0, 64)}"`);
    }
    // `Connection: keep-alive` alone (the usual case) names no field and closes nothing.
    if (connection !== undefined && !(connection.length === 10 && connection.toLowerCase() === 'keep-alive')) {
      const tokens = connection.toLowerCase().split(',').map((t) => t.trim());
      if (tokens.includes('close')) keepAlive = false;
      const named = tokens.filter((t) => t !== 'close' && t !== 'keep-alive' && t !== '');
      if (named.length) {
        for (let k = headers.length - 2; k >= 0; k -= 2) if (named.includes(headers[k].toLowerCase())) headers.splice(k, 2);
      }
    }
    const head: ResponseHead = { status, headers, contentLength, keepAlive, keepAliveMs };
    // RFC 9112 6.3 points 1-2: no body after HEAD, 204 and 304, whatever the fields say.
    if (this.#isHead || status === 204 || status === 304) this.#state = IDLE;
    else if (transferEncoding !== undefined) {
      this.#state = CHUNK_LINE;
      this.#line = '';
    } else if (contentLength >= 0) {
      this.#remaining = contentLength;
      this.#state = contentLength === 0 ? IDLE : LENGTH;
    } else {
      // RFC 9112 6.3 point 8: no framing, so the body runs to the close.
      this.#state = CLOSE;
      head.keepAlive = false;
    }
    this.#keepAlive = head.keepAlive;
    this.#handler.onHead(head);
  }

  /** Reads up to an LF into `#line`; returns the complete line (ending in CR) or undefined. */
  #takeLine(buf: Buffer, i: number, max: number): [string | undefined, number] {
    const lf = buf.indexOf(10, i);
    if (lf < 0) {
      if (this.#line.length + buf.length - i > max) throw malformed(this.#state === TRAILERS ? `trailers larger than ${max} bytes` : `chunk-size line longer than ${max} bytes`);
      this.#line += buf.toString('latin1', i);
      return [undefined, buf.length];
    }
    if (this.#line.length + lf - i > max) throw malformed(this.#state === TRAILERS ? `trailers larger than ${max} bytes` : `chunk-size line longer than ${max} bytes`);
    const line = this.#line + buf.toString('latin1', i, lf);
    this.#line = '';
    return [line, lf + 1];
  }

  #readChunkLine(buf: Buffer, i: number): number {
    const [line, next] = this.#takeLine(buf, i, MAX_CHUNK_LINE_BYTES);
    if (line === undefined) return next;
    const m = CHUNK_LINE_RE.exec(line);
    if (!m) throw malformed(`bad chunk-size line "${line.slice(0, 64).replace(/[^\x20-\x7e]/g, '?')}"`);
    const digits = m[1].replace(/^0+(?=.)/, '');
    if (digits.length > MAX_CHUNK_SIZE_DIGITS) throw malformed(`chunk size ${digits.slice(0, 20)} too large`);
    const size = parseInt(digits, 16);
    if (size === 0) {
      this.#state = TRAILERS;
      this.#trailerBytes = 0;
    } else {
      this.#state = CHUNK_DATA;
      this.#remaining = size;
    }
    return next;
  }

  #readTrailer(buf: Buffer, i: number): number {
    const [line, next] = this.#takeLine(buf, i, MAX_TRAILER_BYTES - this.#trailerBytes);
    if (line === undefined) return next;
    this.#trailerBytes += line.length + 1;
    if (line === '\r') {
      this.#state = IDLE;
      return next;
    }
    if (!TRAILER_LINE.test(line)) throw malformed(`bad trailer field line "${line.slice(0, 64).replace(/[^\x20-\x7e]/g, '?')}"`);
    return next;
  }
}
