/**
 * The gateway's connections: per-connection checks (the peer verified once at the handshake,
 * HTTP/2's rapid-reset bound) and the bookkeeping graceful shutdown needs: HTTP/1.1 sockets with
 * their active request count, HTTP/2 sessions, and every accepted TCP socket (one still in its
 * handshake, or an HTTP/2 connection that never sent its preface, is neither, and would hold
 * server.close() open for as long as the client likes).
 */
import http2 from 'node:http2';
import type { Http2SecureServer, Http2Session, ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { MutualError, isMutualError } from '../core/errors.ts';
import type { PeerVerifier } from '../sdk/index.ts';
import type { LimitsConfig } from './config.ts';
import type { GatewayMetrics } from './metrics.ts';

/** What {@link GatewayConnections} reads as it runs (current after a reload). */
export interface GatewayConnectionsOptions {
  verifier: () => PeerVerifier;
  limits: () => LimitsConfig;
  metrics: GatewayMetrics;
  log: Logger;
}

/** The connections of one gateway server; see the module doc. */
export class GatewayConnections {
  readonly #o: GatewayConnectionsOptions;
  readonly #h1Sockets = new Map<Socket, number>();
  readonly #sessions = new Set<Http2Session>();
  readonly #sockets = new Set<Socket>();
  #closing = false;

  constructor(o: GatewayConnectionsOptions) {
    this.#o = o;
  }

  /** True once {@link shutdown} began: HTTP/1.1 answers say `connection: close`, /ready answers 503. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Follows `server`'s connections, handshakes and HTTP/2 sessions. */
  attach(server: Http2SecureServer): void {
    const { metrics, log } = this.#o;
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      const r = this.#o.verifier().verifySocket(socket);
      if (r instanceof Promise) r.then(() => metrics.handshakes.inc({ result: 'ok' }), (e) => metrics.handshakes.inc({ result: isMutualError(e) ? e.code : 'error' }));
      else metrics.handshakes.inc({ result: r instanceof MutualError ? r.code : 'ok' });
      if (socket.alpnProtocol !== 'h2') {
        this.#h1Sockets.set(socket, 0);
        socket.once('close', () => this.#h1Sockets.delete(socket));
      }
    });
    server.on('tlsClientError', (e: Error) => {
      metrics.handshakes.inc({ result: 'tls_error' });
      log.debug({ err: e.message }, 'TLS handshake failed');
    });
    server.on('session', (session: Http2Session) => this.#onSession(session));
  }

  /** An HTTP/1.1 request began on `socket`. */
  requestStarted(socket: Socket): void {
    this.#h1Sockets.set(socket, (this.#h1Sockets.get(socket) ?? 0) + 1);
  }

  /** An HTTP/1.1 request on `socket` was answered (or abandoned); during shutdown an idle connection ends. */
  requestEnded(socket: Socket): void {
    const n = (this.#h1Sockets.get(socket) ?? 1) - 1;
    if (this.#h1Sockets.has(socket)) this.#h1Sockets.set(socket, n);
    if (this.#closing && n === 0) socket.end();
  }

  /**
   * Stops `server`: GOAWAY to every HTTP/2 session (streams in flight finish), idle HTTP/1.1
   * connections close, busy ones after their answer; at `timeoutMs` whatever is still open goes.
   */
  async shutdown(server: Http2SecureServer, timeoutMs: number): Promise<void> {
    this.#closing = true;
    const stopped = new Promise<void>((r) => server.close(() => r()));
    for (const s of this.#sessions) s.close();
    for (const [sock, active] of this.#h1Sockets) if (active === 0) sock.destroy();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)));
    await Promise.race([stopped, timeout]);
    clearTimeout(timer);
    // The deadline: whatever is still open goes, whether it has streams, requests, or nothing
    // at all (a client holding a connection without a request must not hold the process).
    for (const s of this.#sessions) s.destroy();
    for (const sock of this.#h1Sockets.keys()) sock.destroy();
    for (const sock of this.#sockets) sock.destroy();
    await stopped;
  }

  #onSession(session: Http2Session): void {
    this.#sessions.add(session);
    session.once('close', () => this.#sessions.delete(session));
    if (this.#closing) session.close();
    // Rapid-reset bound (CVE-2023-44487): count streams reset before they completed.
    let windowStart = Date.now();
    let resets = 0;
    session.on('stream', (stream: ServerHttp2Stream) => {
      stream.once('close', () => {
        if (stream.rstCode === http2.constants.NGHTTP2_NO_ERROR) return;
        const t = Date.now();
        const l = this.#o.limits();
        if (t - windowStart > l.h2ResetWindowMs) {
          windowStart = t;
          resets = 0;
        }
        if (++resets > l.h2MaxResetsPerWindow && !session.destroyed) {
          this.#o.metrics.h2Abuse.inc({ reason: 'rapid_reset' });
          this.#o.log.warn({ remoteAddress: session.socket?.remoteAddress, resets }, 'closing an HTTP/2 session that resets streams too fast');
          session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
          session.destroy();
        }
      });
    });
  }
}
