/**
 * One gateway request, HTTP/1.1 or HTTP/2: bounds node:http2 does not apply, who is calling (the
 * peer verified at the handshake), where to (the normalized host and path, routed), may they
 * (route + method -> identity patterns, default deny), then forward: the header policy's fields
 * over the route's upstream pool. Every outcome is counted, logged to the access log and, for
 * refusals, answered with a coded error and a request id.
 *
 * Not async and no promise per request (measurable here): the peer is almost always known
 * synchronously (verified once per connection).
 */
import http2 from 'node:http2';
import crypto from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { MutualError, isMutualError } from '../core/errors.ts';
import { verifiedChain, type PeerIdentity, type PeerVerifier, sendError } from '../sdk/index.ts';
import { normalizeHost, normalizeTarget, type NormalizedTarget } from './request-target.ts';
import type { GatewayMetrics } from './metrics.ts';
import type { UpstreamPool } from './upstream.ts';
import type { Route } from './router.ts';
import { decide, poolFor, type GatewayState, type UpstreamTlsMaterial } from './gateway-state.ts';
import type { GatewayConnections } from './connections.ts';
import { forward } from './forward.ts';

/** HPACK's per-field overhead, counted in a header list's size (RFC 9113 6.5.2, RFC 7541 4.1). */
const H2_FIELD_OVERHEAD = 32;
/** Methods whose requests carry a body by definition: sent with `content-length: 0` when they have none. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

const rejectedChannel = diagnostics.channel('mutual:gateway:rejected');
const deniedChannel = diagnostics.channel('mutual:gateway:denied');
const upstreamFailedChannel = diagnostics.channel('mutual:gateway:upstream-failed');

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

/** What {@link createRequestHandler}'s handler reads; the getters give what is current after a reload. */
export interface RequestHandlerOptions {
  state: () => GatewayState;
  verifier: () => PeerVerifier;
  material: UpstreamTlsMaterial;
  connections: GatewayConnections;
  metrics: GatewayMetrics;
  log: Logger;
  access: Logger | undefined;
}

/** One request in progress: what its steps share. */
interface RequestContext {
  req: Req;
  res: Res;
  s: GatewayState;
  isH2: boolean;
  socket: TLSSocket;
  method: string;
  url: string;
  hostFields: number;
  entry: Record<string, unknown>;
  reqId(): string;
  finish(status: number, route?: string): void;
  refuse(e: unknown, route?: string): void;
  /** Set once forwarding starts: what to call when the response closes. */
  gone: (() => void) | undefined;
}

/** The gateway's 'request' listener. */
export function createRequestHandler(o: RequestHandlerOptions): (req: Req, res: Res) => void {
  return function handle(req: Req, res: Res): void {
    const x = begin(o, req, res);
    // 0. Bounds node:http2 does not apply: it advertises SETTINGS_MAX_HEADER_LIST_SIZE but does
    // not refuse a larger header list (node:http's parser does, with a 431, for HTTP/1.1).
    const raw = req.rawHeaders;
    let headerBytes = 0;
    for (let i = 0; i < raw.length; i += 2) {
      headerBytes += raw[i].length + raw[i + 1].length + H2_FIELD_OVERHEAD;
      if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') x.hostFields++;
    }
    if (x.isH2 && headerBytes > x.s.config.limits.maxHeaderBytes) {
      x.refuse(new MutualError('HEADERS_TOO_LARGE', { detail: `${headerBytes} bytes of header list (RFC 9113 6.5.2); the limit is ${x.s.config.limits.maxHeaderBytes}` }));
      return;
    }

    // 1. Who is calling.
    const rejected = (e: unknown) => {
      const code = isMutualError(e) ? e.code : 'CERT_UNTRUSTED';
      o.metrics.rejections.inc({ code });
      if (rejectedChannel.hasSubscribers) rejectedChannel.publish({ code, serial: isMutualError(e) ? e.fields.serial : undefined, remoteAddress: x.socket?.remoteAddress });
      x.refuse(e);
    };
    let p: PeerIdentity | Promise<PeerIdentity>;
    try {
      p = o.verifier().peerOf(x.socket);
    } catch (e) {
      rejected(e);
      return;
    }
    if (p instanceof Promise) p.then((peer) => proceed(o, x, peer), rejected);
    else proceed(o, x, p);
  };
}

/** The request's bookkeeping: connection tracking for shutdown, the access log entry, refusals. */
function begin(o: RequestHandlerOptions, req: Req, res: Res): RequestContext {
  const started = performance.now();
  const isH2 = req.httpVersionMajor === 2;
  const socket = (isH2 ? (req as Http2ServerRequest).stream.session?.socket : req.socket) as TLSSocket;
  // One 'close' listener per request: HTTP/1.1 connection bookkeeping (for shutdown), and
  // abandoning the upstream request when the caller goes away before the answer is sent.
  const h1Socket: Socket | undefined = isH2 ? undefined : req.socket;
  if (h1Socket) {
    o.connections.requestStarted(h1Socket);
    if (o.connections.closing) (res as ServerResponse).setHeader('connection', 'close');
  }
  const method = req.method ?? 'GET';
  const rawHost = ((isH2 ? req.headers[':authority'] : undefined) ?? req.headers.host) as string | undefined;
  const url = req.url ?? '/';
  const entry: Record<string, unknown> = { method, host: rawHost, path: url.length > 256 ? url.slice(0, 256) + '...' : url, proto: isH2 ? 'h2' : 'http/1.1' };
  let requestId: string | undefined;
  const x: RequestContext = {
    req, res, s: o.state(), isH2, socket, method, url, hostFields: 0, entry, gone: undefined,
    reqId: () => (requestId ??= crypto.randomUUID()),
    finish(status, route) {
      o.metrics.request(route ?? 'none', status);
      if (o.access) {
        entry.status = status;
        entry.ms = performance.now() - started;
        if (requestId) entry.requestId = requestId;
        o.access.info(entry);
      }
    },
    refuse(e, route) {
      const { status, code } = sendError(res, e, x.reqId());
      entry.code = code;
      if (isMutualError(e) && e.fields.detail) entry.detail = e.fields.detail;
      x.finish(status, route);
    },
  };
  res.on('close', () => {
    if (h1Socket) o.connections.requestEnded(h1Socket);
    x.gone?.();
  });
  return x;
}

/** Steps 2 and 3 for a known peer: route on the normalized target, then authorize. */
function proceed(o: RequestHandlerOptions, x: RequestContext, peer: PeerIdentity): void {
  x.entry.identity = peer.spiffeId ?? peer.subject;
  x.entry.serial = peer.serial;

  // 2. Where to: routed on the normalized path and host, which are also what is forwarded, so
  // the route (and policy) chosen is the one for what the backend serves.
  let target: NormalizedTarget;
  let host: string | undefined;
  try {
    target = normalizeTarget(x.url);
    host = requestHost(x.req, x.isH2, x.hostFields);
  } catch (e) {
    x.refuse(e);
    return;
  }
  const route = x.s.router.match(host, target.path);
  if (!route) {
    x.refuse(new MutualError('ROUTE_NOT_FOUND', { detail: `${host ?? '(no host)'}${target.path.slice(0, 200)}` }));
    return;
  }
  x.entry.route = route.name;

  // 3. May they.
  const decision = decide(x.s, route, x.method, peer.spiffeId);
  x.entry.decision = decision.allowed ? 'allow' : 'deny';
  if (decision.allowed && o.access) x.entry.rule = `${decision.rule}:${decision.pattern}`;
  if (!decision.allowed) {
    o.metrics.authzDenials.inc({ route: route.name });
    const who = peer.spiffeId ?? peer.subject;
    if (deniedChannel.hasSubscribers) deniedChannel.publish({ identity: who, route: route.name, method: x.method, serial: peer.serial });
    x.refuse(new MutualError('ACCESS_DENIED', { identity: who, route: route.name, detail: `${who} may not ${x.method} on route "${route.name}"` }), route.name);
    return;
  }
  forwardTo(o, x, peer, route, target, host);
}

/** Step 4: the body's bounds, then the request upstream and its answer back. */
function forwardTo(o: RequestHandlerOptions, x: RequestContext, peer: PeerIdentity, route: Route, target: NormalizedTarget, host: string | undefined): void {
  const { req, res, s, isH2, socket, method } = x;
  const limit = s.config.limits.maxBodyBytes;
  const declared = req.headers['content-length'];
  let contentLength: number | undefined;
  if (declared !== undefined) {
    contentLength = Number(declared);
    if (!Number.isSafeInteger(contentLength) || contentLength < 0) {
      x.refuse(new MutualError('REQUEST_MALFORMED', { detail: 'a bad Content-Length' }), route.name);
      return;
    }
    if (contentLength > limit) {
      x.refuse(new MutualError('BODY_TOO_LARGE', { detail: `${declared} bytes; the limit is ${limit}` }), route.name);
      return;
    }
  }
  // HTTP/1.1: a body only with Content-Length or Transfer-Encoding (RFC 9112 6.3 point 7); HTTP/2: unless END_STREAM came with the headers.
  const hasBody = contentLength !== 0 && (isH2 ? !(req as Http2ServerRequest).stream.endAfterHeaders : declared !== undefined || req.headers['transfer-encoding'] !== undefined);
  if (!hasBody && contentLength === undefined && BODY_METHODS.has(method)) contentLength = 0;
  let pool: UpstreamPool;
  try {
    pool = poolFor(s, route, o.material);
  } catch (e) {
    x.refuse(e, route.name);
    return;
  }
  const upstreamStart = performance.now();
  x.gone = forward(pool, {
    method,
    path: s.router.upstreamPath(route, target.path) + target.query,
    headers: s.headers.fields(req, peer, socket?.remoteAddress ?? '', host, () => peerChain(socket)),
    body: hasBody ? req : null,
    ...(contentLength !== undefined ? { contentLength } : {}),
    maxBodyBytes: limit,
  }, res, isH2, {
    onHeaders: () => o.metrics.upstream(route.name, (performance.now() - upstreamStart) / 1000),
    onDone: (status) => x.finish(status, route.name),
    onClientClosed: () => {
      x.entry.code = 'CLIENT_CLOSED';
      x.finish(499, route.name);
    },
    onFailed: (e, headersSent, status) => {
      if (!headersSent) {
        const err = upstreamError(e);
        if (upstreamFailedChannel.hasSubscribers) upstreamFailedChannel.publish({ route: route.name, code: err.code, error: errText(e) });
        o.log.warn({ route: route.name, err: errText(e), requestId: x.reqId() }, 'upstream request failed');
        x.refuse(err, route.name);
        return;
      }
      o.log.warn({ route: route.name, err: errText(e) }, 'upstream response body failed');
      x.entry.code = 'UPSTREAM_BODY_FAILED';
      x.finish(status, route.name);
      if (isH2) (res as Http2ServerResponse).stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      else res.destroy();
    },
    closing: () => o.connections.closing,
  });
}

/**
 * The intermediates for RFC 9440 Client-Cert-Chain: those of the path the verifier accepted (the
 * client CA that signed the leaf). Not `getPeerCertificate(true)`: once OpenSSL accepts a chain, Node
 * shows only what the trust store completes it with, so with the root alone in trust.ca (as the docs
 * configure it) the client CA the client sent was never forwarded.
 */
function peerChain(socket: TLSSocket): readonly Buffer[] {
  return verifiedChain(socket);
}

/** Upstream failures come coded from the upstream client; anything else is a 502. */
function upstreamError(e: unknown): MutualError {
  return isMutualError(e) ? e : new MutualError('UPSTREAM_UNAVAILABLE', { detail: errText(e) });
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The request's host, normalized ({@link normalizeHost}), from `:authority` (HTTP/2) or Host.
 * Throws HOST_INVALID for a malformed one, several Host fields (node:http keeps the first, other
 * servers the last, so which one the policy applied to would depend on who reads it), or an HTTP/2
 * request whose Host names another host than its :authority (RFC 9113 8.3.1: a server should treat
 * it as malformed, for the same reason).
 */
export function requestHost(req: Pick<Req, 'headers'>, isH2: boolean, hostFields: number): string | undefined {
  if (hostFields > 1) throw new MutualError('HOST_INVALID', { detail: 'several Host fields' });
  const hostField = req.headers.host;
  const host = hostField === undefined ? undefined : normalizeHost(String(hostField));
  if (!isH2) return host;
  const authority = req.headers[':authority'];
  if (authority === undefined) return host;
  const a = normalizeHost(String(authority));
  if (host !== undefined && host !== a) throw new MutualError('HOST_INVALID', { detail: `:authority ${a} and Host ${host} differ` });
  return a;
}
