/**
 * Framework glue: `allow(...)` for Express and for Fastify, one small function each. Both read the
 * caller's identity from the SDK server ({@link peerIdentity}) or, behind the gateway, from XFCC
 * believed only from a trusted proxy ({@link identityFromXfcc}); a caller that is not allowed gets
 * the same coded 403 JSON as the SDK server. The frameworks are typed structurally: mutual does not
 * depend on them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MutualError } from '../core/errors.ts';
import { matchIdentity } from '../core/identity.ts';
import { peerIdentity, sendError, type MtlsRequest } from './server.ts';
import { identityFromXfcc, type XfccTrustOptions } from './xfcc.ts';

/** Options of the allow middlewares. */
export interface AllowOptions {
  /** Believe XFCC from these proxies (the gateway); the forwarded identity is then the caller. */
  xfcc?: XfccTrustOptions;
}

/** The identity a request is authorized as: forwarded (when from a trusted proxy), else the peer's. */
export function callerIdentity(req: MtlsRequest, o: AllowOptions = {}): string | undefined {
  if (o.xfcc) {
    const fwd = identityFromXfcc(req, o.xfcc);
    if (fwd) return fwd.spiffeId;
  }
  return peerIdentity(req)?.spiffeId;
}

function decide(req: MtlsRequest, patterns: readonly string[], o: AllowOptions): void {
  const id = callerIdentity(req, o);
  if (!id) throw new MutualError('CERT_MISSING', { detail: 'no verified client identity on this request (is the server made with createServer?)' });
  if (!patterns.some((p) => matchIdentity(p, id))) throw new MutualError('ACCESS_DENIED', { identity: id, detail: `${id} may not call ${req.method ?? ''} ${(req.url ?? '').split('?')[0]}` });
}

/** Express-style middleware: `app.get('/x', allow(['spiffe://acme.internal/prod/*']), handler)`. */
export function allow(patterns: readonly string[], o: AllowOptions = {}): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void {
  if (!Array.isArray(patterns)) throw new TypeError('allow() needs a list of identities or patterns');
  return (req, res, next) => {
    try {
      decide(req, patterns, o);
    } catch (e) {
      sendError(res, e);
      return;
    }
    next();
  };
}

/** The parts of a Fastify request and reply the hook uses. */
export interface FastifyLikeRequest {
  raw: IncomingMessage;
}
export interface FastifyLikeReply {
  raw: ServerResponse;
  hijack(): void;
}

/** Fastify `onRequest` hook: `fastify.addHook('onRequest', fastifyAllow([...]))` or per route. */
export function fastifyAllow(patterns: readonly string[], o: AllowOptions = {}): (request: FastifyLikeRequest, reply: FastifyLikeReply, done: (err?: Error) => void) => void {
  if (!Array.isArray(patterns)) throw new TypeError('fastifyAllow() needs a list of identities or patterns');
  return (request, reply, done) => {
    try {
      decide(request.raw, patterns, o);
    } catch (e) {
      reply.hijack();
      sendError(reply.raw, e);
      return;
    }
    done();
  };
}
