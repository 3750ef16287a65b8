/**
 * `createServer`: an HTTPS (or HTTP/2 with HTTP/1.1 fallback) server that requires client
 * certificates, verifies them with the shared {@link PeerVerifier}, applies an allow list of
 * identities, and rotates its own certificate through `setSecureContext` when its
 * {@link IdentitySource} rotates (connections in flight keep the old one; new ones get the new).
 */
import fs from 'node:fs';
import https from 'node:https';
import http2 from 'node:http2';
import crypto from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { MutualError, isMutualError } from '../core/errors.ts';
import { matchIdentity } from '../core/identity.ts';
import { IDENTITY_POLL_MS, MAX_IDENTITY_FILE_BYTES, statStamp, type IdentitySource } from './identity-source.ts';
import { PeerVerifier, readCertificates, type PeerIdentity, type RevocationOptions } from './verifier.ts';

/** Default limits of an SDK server (all overridable through `serverOptions`). */
export const SDK_HEADERS_TIMEOUT_MS = 10_000;
export const SDK_REQUEST_TIMEOUT_MS = 60_000;
export const SDK_KEEPALIVE_TIMEOUT_MS = 65_000;
export const SDK_MAX_HEADER_BYTES = 16 * 1024;

const deniedChannel = diagnostics.channel('mutual:sdk:denied');
const trustFailedChannel = diagnostics.channel('mutual:sdk:trust-reload-failed');
const trustReloadedChannel = diagnostics.channel('mutual:sdk:trust-reloaded');

/** Reads a trust bundle file and checks that it holds certificates (PEM_MALFORMED, INPUT_TOO_LARGE, or the file error otherwise). */
function readTrustFile(file: string): string {
  const size = fs.statSync(file).size;
  if (size > MAX_IDENTITY_FILE_BYTES) throw new MutualError('INPUT_TOO_LARGE', { detail: `${file} is ${size} bytes` });
  const text = fs.readFileSync(file, 'utf8');
  readCertificates(text);
  return text;
}

/** A request of either server flavour. */
export type MtlsRequest = IncomingMessage | Http2ServerRequest;
export type MtlsResponse = ServerResponse | Http2ServerResponse;
/** The handler called for authenticated and allowed requests. */
export type MtlsHandler = (req: MtlsRequest, res: MtlsResponse) => void;

/** Options of {@link createServer}. */
export interface CreateServerOptions {
  /** The server's own certificate and key (a server certificate from the server CA). */
  identity: IdentitySource;
  /**
   * Trust anchors for OpenSSL's chain check of clients (PEM): the root, and the client CA when
   * clients send only their leaf. Default: the identity's `ca` bundle.
   */
  ca?: string;
  /**
   * A trust bundle FILE (PEM roots) instead of `ca`: read at start and again whenever it changes
   * (its {@link statStamp}, looked at every `caPollMs`), so a root rollover needs no restart. New
   * connections get the new bundle (and the verifier its roots); connections in flight keep theirs.
   * A file that does not read as certificates keeps the bundle in force (published on
   * 'mutual:sdk:trust-reload-failed'). Default: `ca`, else the identity's `ca` (followed when it rotates).
   */
  caFile?: string;
  /** How often `caFile` is looked at, ms. Default {@link IDENTITY_POLL_MS}. */
  caPollMs?: number;
  /** The client CA certificate(s) whose leaves are accepted (PEM). The trust boundary. */
  clientCas: string | string[];
  /** Identities allowed to call (exact or `*`/`**` patterns). Default: every verified client. */
  allow?: readonly string[];
  /** Revocation checking (default fail-closed, CRL from the certificates' CRL URL, OCSP fallback). */
  revocation?: RevocationOptions;
  /** A verifier to share (e.g. with other servers); default: one made from clientCas/revocation. */
  verifier?: PeerVerifier;
  /** Trust (PEM) for fetching CRLs/OCSP from the CA over HTTPS; default: the identity's `ca`. */
  fetchCa?: string;
  /** HTTP/2 with HTTP/1.1 fallback (ALPN). Default false: HTTPS/1.1. */
  http2?: boolean;
  /** Extra options for https.createServer / http2.createSecureServer (limits, timeouts). */
  serverOptions?: https.ServerOptions & http2.SecureServerOptions;
  now?: () => Date;
}

/** The server returned by {@link createServer}. */
export type MtlsServer = (https.Server | http2.Http2SecureServer) & {
  /** The verifier in use (shared with middleware). */
  readonly verifier: PeerVerifier;
};

const identities = new WeakMap<object, PeerIdentity>();

/**
 * The verified identity of the caller of a request handled by an SDK server (or a gateway); undefined
 * for requests that did not go through one.
 */
export function peerIdentity(req: MtlsRequest): PeerIdentity | undefined {
  return identities.get(req);
}

/** Records the verified identity of a request (for servers that verify by themselves). */
export function setPeerIdentity(req: MtlsRequest, id: PeerIdentity): void {
  identities.set(req, id);
}

/**
 * Answers with a coded JSON error `{ code, message, hint, requestId }`: the detail (which names
 * the caller's own certificate, never a secret) for 4xx; a generic body for 5xx.
 */
export function sendError(res: MtlsResponse, e: unknown, requestId: string = crypto.randomUUID()): { status: number; code: string } {
  const err = isMutualError(e) ? e : new MutualError('UPSTREAM_UNAVAILABLE');
  const body = err.status >= 500
    ? { code: err.code, message: err.message.split(':')[0], hint: err.hint, requestId }
    : { code: err.code, message: err.message, hint: err.hint, requestId };
  const text = JSON.stringify(body);
  if (!res.headersSent) {
    (res as ServerResponse).writeHead(err.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-request-id': requestId });
  }
  (res as ServerResponse).end(text);
  return { status: err.status, code: err.code };
}

/** Throws ACCESS_DENIED unless `id` matches one of the patterns. */
export function checkAllowed(id: PeerIdentity, allow: readonly string[], what = 'this service'): void {
  const name = id.spiffeId;
  if (name && allow.some((p) => matchIdentity(p, name))) return;
  if (deniedChannel.hasSubscribers) deniedChannel.publish({ identity: name ?? id.subject, serial: id.serial, what });
  throw new MutualError('ACCESS_DENIED', { serial: id.serial, identity: name ?? id.subject, detail: `${name ?? id.subject} may not call ${what}` });
}

/**
 * Makes an mTLS server: client certificates are required and verified (chain by OpenSSL, then the
 * trust boundary, EKU, validity and revocation by the verifier); a refused caller gets a coded JSON
 * answer (496 no certificate, 495 bad certificate, 403 not allowed) instead of a bare TLS alert.
 * The handshake itself does not fail on a bad client certificate, so the answer can say why.
 * Starts the verifier's CRL fetching and waits for its first round (fail-closed servers are ready
 * when it resolves). `close()` also stops the verifier and the rotation listener.
 */
export async function createServer(o: CreateServerOptions, handler: MtlsHandler): Promise<MtlsServer> {
  if (!o.identity) throw new TypeError('createServer needs an identity (loadIdentity or enrollIdentity)');
  if (o.ca && o.caFile) throw new TypeError('createServer takes `ca` or `caFile`, not both');
  // The trust in force: `ca`, the bundle file, or the identity's, whichever the options name.
  let ca = o.ca ?? (o.caFile ? readTrustFile(o.caFile) : o.identity.current.ca);
  if (!ca) throw new TypeError('createServer needs `ca` (the root, PEM), `caFile`, or an identity with a trust bundle');
  const verifier = o.verifier ?? new PeerVerifier({ clientCas: o.clientCas, roots: ca, revocation: o.revocation, fetchCa: o.fetchCa ?? ca, now: o.now });
  const tlsOptions = () => ({ cert: o.identity.current.cert, key: o.identity.current.key, ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' as const });
  const common = {
    ...tlsOptions(),
    headersTimeout: SDK_HEADERS_TIMEOUT_MS,
    requestTimeout: SDK_REQUEST_TIMEOUT_MS,
    keepAliveTimeout: SDK_KEEPALIVE_TIMEOUT_MS,
    maxHeaderSize: SDK_MAX_HEADER_BYTES,
    ...o.serverOptions,
  };
  const onRequest = (req: MtlsRequest, res: MtlsResponse) => {
    let peer: PeerIdentity | Promise<PeerIdentity>;
    try {
      peer = verifier.peerOf(req.socket as TLSSocket);
    } catch (e) {
      sendError(res, e);
      return;
    }
    const go = (id: PeerIdentity) => {
      try {
        if (o.allow) checkAllowed(id, o.allow);
      } catch (e) {
        sendError(res, e);
        return;
      }
      identities.set(req, id);
      handler(req, res);
    };
    if (peer instanceof Promise) peer.then(go, (e) => sendError(res, e));
    else go(peer);
  };
  const server = (o.http2
    ? http2.createSecureServer({ ...common, allowHTTP1: true }, onRequest as (req: Http2ServerRequest, res: Http2ServerResponse) => void)
    : https.createServer(common, onRequest as (req: IncomingMessage, res: ServerResponse) => void)) as MtlsServer;
  Object.defineProperty(server, 'verifier', { value: verifier });
  server.on('secureConnection', (socket: TLSSocket) => {
    verifier.verifySocket(socket);
  });
  // A new bundle: the verifier's roots first (it checks paths against them), then the context new
  // handshakes use. A bundle that does not parse throws before anything changes.
  const setTrust = (next: string) => {
    if (next === ca) return;
    verifier.setRoots(next);
    ca = next;
    server.setSecureContext(tlsOptions());
    if (trustReloadedChannel.hasSubscribers) trustReloadedChannel.publish({ file: o.caFile, roots: readCertificates(next).length });
  };
  const onRotated = () => {
    const idCa = o.identity.current.ca;
    if (!o.ca && !o.caFile && idCa && idCa !== ca) {
      try {
        setTrust(idCa);
        return;
      } catch (e) {
        if (trustFailedChannel.hasSubscribers) trustFailedChannel.publish({ error: (e as Error).message });
      }
    }
    server.setSecureContext(tlsOptions());
  };
  o.identity.on('rotated', onRotated);
  let poll: NodeJS.Timeout | undefined;
  if (o.caFile) {
    const file = o.caFile;
    let stamp = statStamp(file);
    poll = setInterval(() => {
      const now = statStamp(file);
      if (now === stamp) return;
      try {
        setTrust(readTrustFile(file));
        stamp = now;
      } catch (e) {
        // A half-written or bad bundle: the one in force stays; the next change is tried again.
        stamp = now;
        if (trustFailedChannel.hasSubscribers) trustFailedChannel.publish({ file, error: (e as Error).message, code: (e as { code?: string }).code });
      }
    }, o.caPollMs ?? IDENTITY_POLL_MS);
    poll.unref();
  }
  server.on('close', () => {
    o.identity.off('rotated', onRotated);
    if (poll) clearInterval(poll);
    if (!o.verifier) verifier.close();
  });
  await verifier.start();
  return server;
}
