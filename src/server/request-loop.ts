/**
 * The request loop of `mutual serve`: OCSP on its fast path, everything else through the route
 * table with a request id, the peer certificate read once per connection, errors answered as
 * coded problems (5xx bodies generic, the cause logged), metrics per route.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { isMutualError } from '../core/errors.ts';
import { isClientGone, MAX_BODY_BYTES, newRequestId, sendProblem } from './http-util.ts';
import { sendAcmeProblem } from './acme/problems.ts';
import { route, routeLabel, type RequestContext, type ServerState } from './routes.ts';

/** Longest request target written to a log line (a refused target may be up to Node's 16 KiB header limit). */
const MAX_LOGGED_PATH = 256;
const logPath = (u: string | undefined): string | undefined => (u && u.length > MAX_LOGGED_PATH ? `${u.slice(0, MAX_LOGGED_PATH)}...` : u);

/** The listeners' handlers, for the TLS listener (`isPublic` false) and the plain-HTTP one. */
export interface RequestLoop {
  onRequest(req: IncomingMessage, res: ServerResponse, isPublic: boolean): void;
  /**
   * `Expect: 100-continue` (curl sends it for bodies over 1 MB): a body larger than any route reads
   * is not invited (RFC 9110 10.1.1), so the client gets its 413 without sending it, and Node then
   * closes the connection after the answer; any other request goes on as usual.
   */
  onExpectContinue(req: IncomingMessage, res: ServerResponse, isPublic: boolean): void;
}

/** Makes the request loop over a server state (read at each request: a reload replaces parts of it). */
export function createRequestLoop(s: ServerState, log: Logger): RequestLoop {
  // The peer certificate of a keep-alive connection does not change: read and parse it once per
  // connection (getPeerCertificate() builds a large object each call: ~110 us measured here).
  const peers = new WeakMap<object, { peer?: CertificateInfo; chainOk: boolean }>();
  function peerOf(req: IncomingMessage): { peer?: CertificateInfo; chainOk: boolean } {
    const socket = req.socket as TLSSocket;
    let p = peers.get(socket);
    if (!p) {
      const raw = socket.getPeerX509Certificate?.()?.raw;
      p = raw ? { peer: parseCertificate(raw), chainOk: socket.authorized } : { chainOk: false };
      peers.set(socket, p);
    }
    return p;
  }

  function onRequest(req: IncomingMessage, res: ServerResponse, isPublic: boolean): void {
    const rawUrl = req.url ?? '/';
    // OCSP is the hot path: no request id, no URL object, no latency histogram, and a cached
    // GET answer is written without a promise. What follows `/ocsp/` is the request itself
    // (RFC 6960 A.1), opaque to routing: the OCSP handler answers it or says malformedRequest.
    if (rawUrl === '/ocsp' || rawUrl.startsWith('/ocsp/') || rawUrl.startsWith('/ocsp?')) {
      if (s.ocsp.trySendCached(req, res, rawUrl)) return;
      s.ocsp.handle(req, res, rawUrl.split('?')[0]).catch((e) => {
        log.error({ err: e }, 'OCSP request failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
      return;
    }
    handleRequest(req, res, isPublic);
  }

  function handleRequest(req: IncomingMessage, res: ServerResponse, isPublic: boolean): void {
    const id = newRequestId();
    const started = process.hrtime.bigint();
    let ctx: RequestContext;
    try {
      const { peer, chainOk } = isPublic ? { peer: undefined, chainOk: false } : peerOf(req);
      ctx = { req, res, id, peer, peerChainOk: chainOk, isPublic };
    } catch (e) {
      sendProblem(res, e, id);
      return;
    }
    res.setHeader('x-request-id', id);
    route(s, ctx).catch((e) => {
      if (isClientGone(e, req)) {
        // Not a server failure, and nobody to answer: counted under its own code, logged quietly.
        s.metrics.errors.inc({ code: 'CLIENT_ABORTED' });
        log.debug({ requestId: id, code: 'CLIENT_ABORTED', path: logPath(req.url), detail: isMutualError(e) ? e.fields.detail : (e as NodeJS.ErrnoException).code }, 'client went away');
        res.destroy();
        return;
      }
      const { status, code } = ctx.acme ? sendAcmeProblem(res, e, id, ctx.acme) : sendProblem(res, e, id);
      s.metrics.errors.inc({ code });
      if (status >= 500) log.error({ err: e, requestId: id, path: logPath(req.url) }, 'request failed');
      else log.info({ requestId: id, code, path: logPath(req.url) }, 'request refused');
    }).finally(() => {
      s.metrics.latency.observe({ route: routeLabel(req.url) }, Number(process.hrtime.bigint() - started) / 1e9);
    });
  }

  return {
    onRequest,
    onExpectContinue(req, res, isPublic) {
      if (!(Number(req.headers['content-length']) > MAX_BODY_BYTES)) res.writeContinue();
      onRequest(req, res, isPublic);
    },
  };
}
