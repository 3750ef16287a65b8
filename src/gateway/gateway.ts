/**
 * `mutual gateway`: an mTLS-terminating reverse proxy. Per connection it verifies the caller with
 * the SDK's {@link PeerVerifier}; per request it normalizes the path and host (request-target.ts),
 * routes on that form (host + path prefix), authorizes (route + method -> identity patterns,
 * default deny), strips every identity and forwarding header the caller sent, sets XFCC (and, if
 * configured, RFC 9440 Client-Cert), and forwards the normalized request over its own HTTP/1.1
 * keep-alive pools ({@link UpstreamPool}: http, https, or https with the gateway's own client
 * certificate).
 * HTTP/1.1 and HTTP/2 callers alike go upstream over HTTP/1.1. Config, policy, certificates, trust
 * bundles and CRLs reload on file change or SIGHUP without dropping a request: new state is
 * built aside and swapped in one assignment; TLS contexts change through `setSecureContext`;
 * old upstream pools drain before they close.
 */
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import path from 'node:path';
import crypto, { constants as cryptoConstants } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse, Http2Session, ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { pino, type Logger } from 'pino';
import { MutualError, isMutualError } from '../core/errors.ts';
import { PeerVerifier, verifiedChain, type PeerIdentity } from '../sdk/verifier.ts';
import { loadIdentity, enrollIdentity, type IdentitySource } from '../sdk/identity-source.ts';
import { serverIdentityChecker } from '../sdk/client.ts';
import { sendError } from '../sdk/server.ts';
import type { FetchBytes } from '../sdk/fetch-bytes.ts';
import { certificateIdentity } from '../core/certificate.ts';
import { loadGatewayConfig, type GatewayConfig } from './config.ts';
import { Router, authorize, type Route } from './router.ts';
import { normalizeHost, normalizeTarget, type NormalizedTarget } from './request-target.ts';
import { HeaderPolicy } from './header-policy.ts';
import { createGatewayMetrics, type GatewayMetrics } from './metrics.ts';
import { UpstreamPool, type UpstreamCall, type UpstreamRequest } from './upstream.ts';

/** How often watched files are polled besides fs.watch (which misses events on some file systems). */
export const WATCH_POLL_MS = 2000;
/** Changes are applied this long after the last file event, so files written together land together. */
export const RELOAD_SETTLE_MS = 100;
/** Upstream answers up to this size are sent in one write with their headers; larger ones stream. */
export const SMALL_RESPONSE_BYTES = 64 * 1024;
/** Bodies up to this size are handed to Node as (latin1) strings, which it writes with the head in one write instead of a writev. */
const STRING_BODY_BYTES = 4096;
/** HPACK's per-field overhead, counted in a header list's size (RFC 9113 6.5.2, RFC 7541 4.1). */
const H2_FIELD_OVERHEAD = 32;

const rejectedChannel = diagnostics.channel('mutual:gateway:rejected');
const deniedChannel = diagnostics.channel('mutual:gateway:denied');
const reloadedChannel = diagnostics.channel('mutual:gateway:reloaded');
const upstreamFailedChannel = diagnostics.channel('mutual:gateway:upstream-failed');

/** Methods whose requests carry a body by definition: sent with `content-length: 0` when they have none. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** Options of {@link startGateway}. */
export interface GatewayOptions {
  /** gateway.yaml; reloaded on change and by {@link Gateway.reload}. */
  configFile?: string;
  /** A config given directly (tests); reload re-reads `configFile` when there is one. */
  config?: GatewayConfig;
  /** Operational log; default pino on stderr at the config's logLevel. */
  logger?: Logger;
  /** Access log; default from the config's `accessLog`. */
  accessLogger?: Logger | false;
  /** Watch files (config, certificates, trust, CRLs) and reload on change. Default true. */
  watch?: boolean;
  /** Fetcher for CRLs/OCSP (tests); default HTTPS trusting trust.ca. */
  fetch?: FetchBytes;
  now?: () => Date;
}

/** A running gateway. */
export interface Gateway {
  readonly url: string;
  readonly port: number;
  /** The admin listener's URL (metrics), when configured. */
  readonly adminUrl?: string;
  readonly metrics: GatewayMetrics;
  readonly server: http2.Http2SecureServer;
  /** The verifier in use (replaced when revocation settings change). */
  readonly verifier: PeerVerifier;
  /** Re-reads the config and every file it names, and applies them; keeps the old state on error. */
  reload(): Promise<{ ok: boolean; error?: MutualError }>;
  /** Stops accepting, lets requests in flight finish (up to limits.shutdownTimeoutMs), then closes. */
  close(): Promise<void>;
}

/** Everything a request reads, swapped whole on reload. */
interface State {
  config: GatewayConfig;
  router: Router;
  /** Which fields the backend gets (gateway.yaml's `forward`). */
  headers: HeaderPolicy;
  /** Upstream pools by origin and TLS setting, made on first use (and by route, to skip the key). */
  pools: Map<string, UpstreamPool>;
  poolOfRoute: Map<Route, UpstreamPool>;
  /** Replaced by a newer state: pools made now close as soon as their requests finish. */
  retired: boolean;
  /** Decisions by route, method and identity (the policy is fixed for the life of a State). */
  decisions: WeakMap<Route, Map<string, ReturnType<typeof authorize>>>;
}

/** Most cached authorization decisions per state; past it the cache starts over. */
export const MAX_CACHED_DECISIONS = 10_000;

function decide(s: State, route: Route, method: string, identity: string | undefined): ReturnType<typeof authorize> {
  let byRoute = s.decisions.get(route);
  if (!byRoute) s.decisions.set(route, (byRoute = new Map()));
  const key = `${method} ${identity ?? ''}`;
  let d = byRoute.get(key);
  if (!d) {
    if (byRoute.size >= MAX_CACHED_DECISIONS) byRoute.clear();
    d = authorize(route, method, identity);
    byRoute.set(key, d);
  }
  return d;
}

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

const fileText = (f: string) => fs.readFileSync(f, 'utf8');

/** Starts a gateway. Throws CONFIG_INVALID, file errors, KEY_MISMATCH for its first state. */
export async function startGateway(o: GatewayOptions): Promise<Gateway> {
  if (!o.config && !o.configFile) throw new TypeError('startGateway needs configFile or config');
  let config = o.config ?? loadGatewayConfig(o.configFile!);
  const log = o.logger ?? pino({ level: config.logLevel }, pino.destination(2));
  const access: Logger | undefined = o.accessLogger === false ? undefined
    : o.accessLogger ?? (config.accessLog === false ? undefined : pino({ base: undefined }, config.accessLog === true ? pino.destination(1) : pino.destination({ dest: config.accessLog, mkdir: true })));
  const now = o.now ?? (() => new Date());

  // ---- TLS material
  let trustCa = fileText(config.trust.ca);
  let clientCasText = fileText(config.trust.clientCas);
  const makeVerifier = (c: GatewayConfig) => new PeerVerifier({
    clientCas: clientCasText,
    revocation: { mode: c.revocation.mode, crlUrls: c.revocation.crlUrls, ocsp: c.revocation.ocsp, refreshMs: c.revocation.refreshSeconds * 1000 },
    fetchCa: trustCa,
    // The roots the handshake trusts: the verifier checks their validity on its own clock.
    roots: trustCa,
    closeRevokedConnections: c.revocation.closeRevokedConnections,
    now,
    ...(o.fetch ? { fetch: o.fetch } : {}),
  });
  let verifier = makeVerifier(config);
  const loadCrlFiles = (c: GatewayConfig) => {
    for (const f of c.revocation.crlFiles) {
      try {
        verifier.loadCrl(fs.readFileSync(f), f);
      } catch (e) {
        log.error({ err: errText(e), file: f }, 'could not load the CRL file; the previous CRL stays in use');
      }
    }
  };
  loadCrlFiles(config);
  await verifier.start();

  const serverIdentity = async (c: GatewayConfig): Promise<IdentitySource> => {
    if ('cert' in c.tls) return loadIdentity({ certFile: c.tls.cert, keyFile: c.tls.key, pollMs: WATCH_POLL_MS, watch: o.watch !== false });
    const token = c.tls.enroll.tokenFile ? fileText(c.tls.enroll.tokenFile).trim() : process.env.MUTUAL_GATEWAY_TOKEN;
    if (!token) throw new MutualError('CONFIG_INVALID', { detail: 'tls.enroll needs tokenFile or MUTUAL_GATEWAY_TOKEN' });
    return enrollIdentity({ caUrl: c.tls.enroll.caUrl, token, ...(c.tls.enroll.dir ? { dir: c.tls.enroll.dir } : {}) });
  };
  let tlsIdentity = await serverIdentity(config);
  const upstreamIdentityOf = (c: GatewayConfig): IdentitySource | undefined =>
    c.upstreamTls.cert && c.upstreamTls.key ? loadIdentity({ certFile: c.upstreamTls.cert, keyFile: c.upstreamTls.key, pollMs: WATCH_POLL_MS, watch: o.watch !== false }) : undefined;
  let upstreamIdentity = upstreamIdentityOf(config);
  let upstreamCa = config.upstreamTls.ca ? fileText(config.upstreamTls.ca) : trustCa;

  const metrics = createGatewayMetrics(() => verifier);

  // ---- state
  const buildState = (c: GatewayConfig): State => {
    const upstreamId = upstreamIdentity?.current.info;
    const by = c.identity ?? (upstreamId && certificateIdentity(upstreamId));
    return {
      config: c,
      router: new Router(c.routes),
      headers: new HeaderPolicy({ strip: c.forward.strip, xfcc: c.forward.xfcc, clientCert: c.forward.clientCert, ...(by ? { by } : {}) }),
      pools: new Map(),
      poolOfRoute: new Map(),
      retired: false,
      decisions: new WeakMap(),
    };
  };
  let state = buildState(config);

  // mTLS upstreams must show a server certificate (EKU serverAuth), as the SDK's clients require.
  const checkUpstream = serverIdentityChecker();
  const poolFor = (s: State, r: Route): UpstreamPool => {
    let p = s.poolOfRoute.get(r);
    if (p) return p;
    const key = `${r.upstream.origin}|${r.mtls}|${r.serverName ?? ''}`;
    p = s.pools.get(key);
    if (p) {
      s.poolOfRoute.set(r, p);
      return p;
    }
    const https = r.upstream.protocol === 'https:';
    if (r.mtls && !upstreamIdentity) throw new MutualError('CONFIG_INVALID', { detail: `route ${r.name}: mTLS upstream without upstreamTls` });
    p = new UpstreamPool({
      origin: r.upstream,
      connections: s.config.limits.upstreamConnections,
      timeoutMs: s.config.limits.upstreamTimeoutMs,
      ...(https ? {
        tls: {
          ca: upstreamCa,
          ...(r.mtls ? { identity: upstreamIdentity, checkServerIdentity: checkUpstream } : {}),
          ...(r.serverName ? { servername: r.serverName } : {}),
        },
      } : {}),
    });
    s.pools.set(key, p);
    s.poolOfRoute.set(r, p);
    // A request that began before a reload may reach a retired state: its pool closes after it.
    if (s.retired) void p.close();
    return p;
  };
  const retire = (s: State) => {
    s.retired = true;
    for (const p of s.pools.values()) void p.close();
  };

  // ---- the server
  const limits = () => state.config.limits;
  const tlsOptions = () => ({
    cert: tlsIdentity.current.cert, key: tlsIdentity.current.key, ca: trustCa, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' as const,
    ...(state.config.sessionResumption ? {} : { secureOptions: cryptoConstants.SSL_OP_NO_TICKET }),
  });
  const server = http2.createSecureServer({
    ...tlsOptions(),
    allowHTTP1: true,
    ALPNProtocols: ['h2', 'http/1.1'],
    maxHeaderSize: config.limits.maxHeaderBytes,
    settings: { maxConcurrentStreams: config.limits.h2MaxConcurrentStreams, maxHeaderListSize: config.limits.maxHeaderBytes },
    maxSessionMemory: 10,
  } as http2.SecureServerOptions);
  const applyLimits = (c: GatewayConfig) => {
    const l = c.limits;
    server.maxConnections = l.maxConnections;
    // Read by the HTTP/1.1 fallback (node:http's connection handling on this server).
    // connectionsCheckingInterval (how often those timeouts are checked, 30 s by default) is read
    // once, at listen; a reload changes the timeouts, not the interval.
    Object.assign(server, {
      headersTimeout: l.headersTimeoutMs, requestTimeout: l.requestTimeoutMs, keepAliveTimeout: l.idleTimeoutMs, maxHeaderSize: l.maxHeaderBytes,
      ...(server.listening ? {} : { connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(l.headersTimeoutMs / 4))) }),
    });
    server.setTimeout(l.idleTimeoutMs);
    server.updateSettings({ maxConcurrentStreams: l.h2MaxConcurrentStreams, maxHeaderListSize: l.maxHeaderBytes });
  };
  applyLimits(config);
  const onServerRotated = () => server.setSecureContext(tlsOptions());
  tlsIdentity.on('rotated', onServerRotated);
  const onServerIdentityError = (e: Error) => log.warn({ err: e.message }, 'server certificate reload failed; the current one stays in use');
  tlsIdentity.on('error', onServerIdentityError);

  // Connections, for graceful shutdown: HTTP/1.1 sockets with their active request count, HTTP/2
  // sessions, and every accepted TCP socket (one still in its handshake, or an HTTP/2 connection
  // that never sent its preface, is neither, and would hold server.close() open for as long as the
  // client likes).
  const h1Sockets = new Map<Socket, number>();
  const sessions = new Set<Http2Session>();
  const sockets = new Set<Socket>();
  let closing = false;

  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  server.on('secureConnection', (socket: TLSSocket) => {
    const r = verifier.verifySocket(socket);
    if (r instanceof Promise) r.then(() => metrics.handshakes.inc({ result: 'ok' }), (e) => metrics.handshakes.inc({ result: isMutualError(e) ? e.code : 'error' }));
    else metrics.handshakes.inc({ result: r instanceof MutualError ? r.code : 'ok' });
    if (socket.alpnProtocol !== 'h2') {
      h1Sockets.set(socket, 0);
      socket.once('close', () => h1Sockets.delete(socket));
    }
  });
  server.on('tlsClientError', (e: Error) => {
    metrics.handshakes.inc({ result: 'tls_error' });
    log.debug({ err: e.message }, 'TLS handshake failed');
  });
  server.on('session', (session: Http2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    if (closing) session.close();
    // Rapid-reset bound (CVE-2023-44487): count streams reset before they completed.
    let windowStart = Date.now();
    let resets = 0;
    session.on('stream', (stream: ServerHttp2Stream) => {
      stream.once('close', () => {
        if (stream.rstCode === http2.constants.NGHTTP2_NO_ERROR) return;
        const t = Date.now();
        const l = limits();
        if (t - windowStart > l.h2ResetWindowMs) {
          windowStart = t;
          resets = 0;
        }
        if (++resets > l.h2MaxResetsPerWindow && !session.destroyed) {
          metrics.h2Abuse.inc({ reason: 'rapid_reset' });
          log.warn({ remoteAddress: session.socket?.remoteAddress, resets }, 'closing an HTTP/2 session that resets streams too fast');
          session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
          session.destroy();
        }
      });
    });
  });

  // ---- requests
  server.on('request', (req: Req, res: Res) => handle(req, res));

  // Not async: a promise per request is measurable here, and the peer is almost always known
  // synchronously (verified once per connection).
  function handle(req: Req, res: Res): void {
    const started = performance.now();
    const s = state;
    const isH2 = req.httpVersionMajor === 2;
    const socket = (isH2 ? (req as Http2ServerRequest).stream.session?.socket : req.socket) as TLSSocket;
    // One 'close' listener per request: HTTP/1.1 connection bookkeeping (for shutdown), and
    // abandoning the upstream request when the caller goes away before the answer is sent.
    let gone: (() => void) | undefined;
    const h1Socket: Socket | undefined = isH2 ? undefined : req.socket;
    if (h1Socket) {
      h1Sockets.set(h1Socket, (h1Sockets.get(h1Socket) ?? 0) + 1);
      if (closing) (res as ServerResponse).setHeader('connection', 'close');
    }
    res.on('close', () => {
      if (h1Socket) {
        const n = (h1Sockets.get(h1Socket) ?? 1) - 1;
        if (h1Sockets.has(h1Socket)) h1Sockets.set(h1Socket, n);
        if (closing && n === 0) h1Socket.end();
      }
      gone?.();
    });
    const method = req.method ?? 'GET';
    const rawHost = ((isH2 ? req.headers[':authority'] : undefined) ?? req.headers.host) as string | undefined;
    const url = req.url ?? '/';
    const entry: Record<string, unknown> = { method, host: rawHost, path: url.length > 256 ? url.slice(0, 256) + '...' : url, proto: isH2 ? 'h2' : 'http/1.1' };
    let requestId: string | undefined;
    const reqId = () => (requestId ??= crypto.randomUUID());
    const finish = (status: number, route?: string) => {
      metrics.request(route ?? 'none', status);
      if (access) {
        entry.status = status;
        entry.ms = performance.now() - started;
        if (requestId) entry.requestId = requestId;
        access.info(entry);
      }
    };
    const refuse = (e: unknown, route?: string) => {
      const { status, code } = sendError(res, e, reqId());
      entry.code = code;
      if (isMutualError(e) && e.fields.detail) entry.detail = e.fields.detail;
      finish(status, route);
    };

    // 0. Bounds node:http2 does not apply: it advertises SETTINGS_MAX_HEADER_LIST_SIZE but does
    // not refuse a larger header list (node:http's parser does, with a 431, for HTTP/1.1).
    const raw = req.rawHeaders;
    let hostFields = 0;
    let headerBytes = 0;
    for (let i = 0; i < raw.length; i += 2) {
      headerBytes += raw[i].length + raw[i + 1].length + H2_FIELD_OVERHEAD;
      if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') hostFields++;
    }
    if (isH2 && headerBytes > s.config.limits.maxHeaderBytes) {
      refuse(new MutualError('HEADERS_TOO_LARGE', { detail: `${headerBytes} bytes of header list (RFC 9113 6.5.2); the limit is ${s.config.limits.maxHeaderBytes}` }));
      return;
    }

    // 1. Who is calling.
    const rejected = (e: unknown) => {
      const code = isMutualError(e) ? e.code : 'CERT_UNTRUSTED';
      metrics.rejections.inc({ code });
      if (rejectedChannel.hasSubscribers) rejectedChannel.publish({ code, serial: isMutualError(e) ? e.fields.serial : undefined, remoteAddress: socket?.remoteAddress });
      refuse(e);
    };
    let p: PeerIdentity | Promise<PeerIdentity>;
    try {
      p = verifier.peerOf(socket);
    } catch (e) {
      rejected(e);
      return;
    }
    if (p instanceof Promise) p.then(proceed, rejected);
    else proceed(p);

    function proceed(peer: PeerIdentity): void {
      entry.identity = peer.spiffeId ?? peer.subject;
      entry.serial = peer.serial;

      // 2. Where to: routed on the normalized path and host, which are also what is forwarded, so
      // the route (and policy) chosen is the one for what the backend serves.
      let target: NormalizedTarget;
      let host: string | undefined;
      try {
        target = normalizeTarget(url);
        host = requestHost(req, isH2, hostFields);
      } catch (e) {
        refuse(e);
        return;
      }
      const route = s.router.match(host, target.path);
      if (!route) {
        refuse(new MutualError('ROUTE_NOT_FOUND', { detail: `${host ?? '(no host)'}${target.path.slice(0, 200)}` }));
        return;
      }
      entry.route = route.name;

      // 3. May they.
      const decision = decide(s, route, method, peer.spiffeId);
      entry.decision = decision.allowed ? 'allow' : 'deny';
      if (decision.allowed && access) entry.rule = `${decision.rule}:${decision.pattern}`;
      if (!decision.allowed) {
        metrics.authzDenials.inc({ route: route.name });
        const who = peer.spiffeId ?? peer.subject;
        if (deniedChannel.hasSubscribers) deniedChannel.publish({ identity: who, route: route.name, method, serial: peer.serial });
        refuse(new MutualError('ACCESS_DENIED', { identity: who, route: route.name, detail: `${who} may not ${method} on route "${route.name}"` }), route.name);
        return;
      }

      // 4. Forward.
      const limit = s.config.limits.maxBodyBytes;
      const declared = req.headers['content-length'];
      let contentLength: number | undefined;
      if (declared !== undefined) {
        contentLength = Number(declared);
        if (!Number.isSafeInteger(contentLength) || contentLength < 0) {
          refuse(new MutualError('REQUEST_MALFORMED', { detail: 'a bad Content-Length' }), route.name);
          return;
        }
        if (contentLength > limit) {
          refuse(new MutualError('BODY_TOO_LARGE', { detail: `${declared} bytes; the limit is ${limit}` }), route.name);
          return;
        }
      }
      // HTTP/1.1: a body only with Content-Length or Transfer-Encoding (RFC 9112 6.3 point 7); HTTP/2: unless END_STREAM came with the headers.
      const hasBody = contentLength !== 0 && (isH2 ? !(req as Http2ServerRequest).stream.endAfterHeaders : declared !== undefined || req.headers['transfer-encoding'] !== undefined);
      if (!hasBody && contentLength === undefined && BODY_METHODS.has(method)) contentLength = 0;
      let pool: UpstreamPool;
      try {
        pool = poolFor(s, route);
      } catch (e) {
        refuse(e, route.name);
        return;
      }
      const upstreamStart = performance.now();
      gone = forward(pool, {
        method,
        path: s.router.upstreamPath(route, target.path) + target.query,
        headers: s.headers.fields(req, peer, socket?.remoteAddress ?? '', host, () => peerChain(socket)),
        body: hasBody ? req : null,
        ...(contentLength !== undefined ? { contentLength } : {}),
        maxBodyBytes: limit,
      }, res, isH2, {
        onHeaders: () => metrics.upstream(route.name, (performance.now() - upstreamStart) / 1000),
        onDone: (status) => finish(status, route.name),
        onClientClosed: () => {
          entry.code = 'CLIENT_CLOSED';
          finish(499, route.name);
        },
        onFailed: (e, headersSent, status) => {
          if (!headersSent) {
            const err = upstreamError(e);
            if (upstreamFailedChannel.hasSubscribers) upstreamFailedChannel.publish({ route: route.name, code: err.code, error: errText(e) });
            log.warn({ route: route.name, err: errText(e), requestId: reqId() }, 'upstream request failed');
            refuse(err, route.name);
            return;
          }
          log.warn({ route: route.name, err: errText(e) }, 'upstream response body failed');
          entry.code = 'UPSTREAM_BODY_FAILED';
          finish(status, route.name);
          if (isH2) (res as Http2ServerResponse).stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
          else res.destroy();
        },
        closing: () => closing,
      });
    }
  }

  // ---- reload
  const watched = new Map<string, string>();
  const watchers: fs.FSWatcher[] = [];
  let reloadTimer: NodeJS.Timeout | undefined;
  const filesOf = (c: GatewayConfig): string[] => [
    ...(o.configFile ? [path.resolve(o.configFile)] : []),
    c.trust.ca, c.trust.clientCas, ...c.revocation.crlFiles, ...(c.upstreamTls.ca ? [c.upstreamTls.ca] : []),
  ];
  const stamp = (f: string) => {
    try {
      const st = fs.statSync(f);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return 'missing';
    }
  };
  const rewatch = (c: GatewayConfig) => {
    for (const w of watchers.splice(0)) w.close();
    watched.clear();
    if (o.watch === false) return;
    const files = filesOf(c);
    for (const f of files) watched.set(f, stamp(f));
    for (const dir of new Set(files.map((f) => path.dirname(f)))) {
      try {
        const w = fs.watch(dir, { persistent: false }, (_e, name) => {
          if (!name || files.some((f) => path.dirname(f) === dir && path.basename(f) === name.toString())) scheduleReload();
        });
        w.on('error', () => w.close());
        watchers.push(w);
      } catch {
        // The poll below still sees changes.
      }
    }
  };
  const scheduleReload = () => {
    if (reloadTimer) clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => {
      reloadTimer = undefined;
      if ([...watched].some(([f, st]) => stamp(f) !== st)) void reload();
    }, RELOAD_SETTLE_MS);
    reloadTimer.unref();
  };
  const poll = o.watch === false ? undefined : setInterval(scheduleReload, WATCH_POLL_MS);
  poll?.unref();
  rewatch(config);

  let reloading: Promise<{ ok: boolean; error?: MutualError }> | undefined;
  function reload(): Promise<{ ok: boolean; error?: MutualError }> {
    // One reload at a time; a request for another while one runs gets a fresh one after it.
    const run = async () => {
      try {
        const next = o.configFile ? loadGatewayConfig(o.configFile) : config;
        const prev = config;
        const nextTrustCa = fileText(next.trust.ca);
        const nextClientCas = fileText(next.trust.clientCas);
        const nextUpstreamCa = next.upstreamTls.ca ? fileText(next.upstreamTls.ca) : nextTrustCa;
        // Build everything that can fail before changing anything.
        const revocationChanged = JSON.stringify({ ...prev.revocation, crlFiles: [] }) !== JSON.stringify({ ...next.revocation, crlFiles: [] });
        const serverTlsChanged = JSON.stringify(prev.tls) !== JSON.stringify(next.tls);
        const upstreamTlsChanged = prev.upstreamTls.cert !== next.upstreamTls.cert || prev.upstreamTls.key !== next.upstreamTls.key;
        const newTlsIdentity = serverTlsChanged ? await serverIdentity(next) : undefined;
        const newUpstreamIdentity = upstreamTlsChanged ? upstreamIdentityOf(next) : undefined;
        if (nextClientCas !== clientCasText) {
          verifier.setClientCas(nextClientCas);
          clientCasText = nextClientCas;
        }
        const trustChanged = nextTrustCa !== trustCa;
        if (revocationChanged || trustChanged) {
          const old = verifier;
          trustCa = nextTrustCa;
          verifier = makeVerifier(next);
          await verifier.start();
          old.close();
        }
        config = next;
        loadCrlFiles(next);
        if (newTlsIdentity) {
          tlsIdentity.off('rotated', onServerRotated);
          tlsIdentity.close();
          tlsIdentity = newTlsIdentity;
          tlsIdentity.on('rotated', onServerRotated);
          tlsIdentity.on('error', onServerIdentityError);
        }
        trustCa = nextTrustCa;
        if (newTlsIdentity || trustChanged) server.setSecureContext(tlsOptions());
        const oldUpstream = upstreamTlsChanged ? upstreamIdentity : undefined;
        if (upstreamTlsChanged) upstreamIdentity = newUpstreamIdentity;
        const upstreamCaChanged = nextUpstreamCa !== upstreamCa;
        upstreamCa = nextUpstreamCa;
        const old = state;
        state = buildState(next);
        // Pools are rebuilt lazily; the old ones finish their requests, then close.
        retire(old);
        oldUpstream?.close();
        applyLimits(next);
        rewatch(next);
        metrics.reloads.inc({ result: 'ok' });
        if (reloadedChannel.hasSubscribers) reloadedChannel.publish({ ok: true, routes: next.routes.length, upstreamCaChanged, trustChanged });
        log.info({ routes: next.routes.length }, 'configuration reloaded');
        return { ok: true };
      } catch (e) {
        const err = isMutualError(e) ? e : new MutualError('CONFIG_INVALID', { detail: errText(e) });
        metrics.reloads.inc({ result: 'error' });
        if (reloadedChannel.hasSubscribers) reloadedChannel.publish({ ok: false, code: err.code, detail: err.fields.detail });
        log.error({ code: err.code, detail: err.fields.detail }, 'reload failed; the previous configuration stays in force');
        // Forget the stamps so the next change of any file tries again.
        for (const f of watched.keys()) watched.set(f, stamp(f));
        return { ok: false, error: err };
      }
    };
    const p: Promise<{ ok: boolean; error?: MutualError }> = (reloading ?? Promise.resolve()).then(run);
    reloading = p;
    void p.finally(() => {
      if (reloading === p) reloading = undefined;
    });
    return p;
  }

  // ---- admin listener
  let admin: http.Server | undefined;
  let adminUrl: string | undefined;
  if (config.admin) {
    admin = http.createServer(async (req, res) => {
      const p = (req.url ?? '/').split('?')[0];
      if (p === '/metrics') {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(await metrics.registry.metrics());
      } else if (p === '/health') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      } else if (p === '/ready') {
        const fresh = verifier.mode !== 'fail-closed' || verifier.status().some((x) => x.fresh);
        res.writeHead(fresh && !closing ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready: fresh && !closing, revocation: verifier.status() }));
      } else res.writeHead(404).end();
    });
  }

  // A listener that cannot open (a port taken) fails the start: everything started so far is
  // stopped, so the process ends instead of running half a gateway (an admin listener answering
  // /ready 200 for a gateway that is not there).
  const stopStarted = () => {
    if (poll) clearInterval(poll);
    if (reloadTimer) clearTimeout(reloadTimer);
    for (const w of watchers.splice(0)) w.close();
    tlsIdentity.off('rotated', onServerRotated);
    verifier.close();
    tlsIdentity.close();
    upstreamIdentity?.close();
    if (server.listening) server.close();
    if (admin?.listening) admin.close();
  };
  try {
    await listenOn(server, config.listen.host, config.listen.port, 'listen');
    if (admin && config.admin) {
      await listenOn(admin, config.admin.host, config.admin.port, 'admin');
      adminUrl = `http://${config.admin.host}:${(admin.address() as AddressInfo).port}`;
    }
  } catch (e) {
    stopStarted();
    throw e;
  }
  // Errors after the start (accept failing for lack of file descriptors) are logged, not fatal.
  server.on('error', (e: Error) => log.error({ err: e.message }, 'listener error'));
  admin?.on('error', (e: Error) => log.error({ err: e.message }, 'admin listener error'));
  const port = (server.address() as AddressInfo).port;
  const url = `https://${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${port}`;
  log.info({ url, routes: config.routes.length, revocation: config.revocation.mode }, 'mutual gateway listening');

  let closed: Promise<void> | undefined;
  return {
    url, port, ...(adminUrl ? { adminUrl } : {}), metrics, server,
    get verifier() {
      return verifier;
    },
    reload,
    close() {
      closed ??= (async () => {
        closing = true;
        if (poll) clearInterval(poll);
        if (reloadTimer) clearTimeout(reloadTimer);
        for (const w of watchers.splice(0)) w.close();
        const stopped = new Promise<void>((r) => server.close(() => r()));
        // GOAWAY to every HTTP/2 session (streams in flight finish); idle HTTP/1.1 connections close.
        for (const s of sessions) s.close();
        for (const [sock, active] of h1Sockets) if (active === 0) sock.destroy();
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<void>((r) => (timer = setTimeout(r, state.config.limits.shutdownTimeoutMs)));
        await Promise.race([stopped, timeout]);
        clearTimeout(timer);
        // The deadline: whatever is still open goes, whether it has streams, requests, or nothing
        // at all (a client holding a connection without a request must not hold the process).
        for (const s of sessions) s.destroy();
        for (const sock of h1Sockets.keys()) sock.destroy();
        for (const sock of sockets) sock.destroy();
        await stopped;
        retire(state);
        verifier.close();
        tlsIdentity.close();
        upstreamIdentity?.close();
        if (admin) {
          const adminClosed = new Promise<void>((r) => admin!.close(() => r()));
          admin.closeAllConnections();
          await adminClosed;
        }
        log.info('mutual gateway stopped');
      })();
      return closed;
    },
  };
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

/** Listens, or throws LISTEN_FAILED naming the address and the system's reason (EADDRINUSE...). */
function listenOn(server: http.Server | http2.Http2SecureServer, host: string, port: number, what: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => reject(new MutualError('LISTEN_FAILED', { detail: `${what} ${host}:${port}: ${e.code ?? e.message}` }, { cause: e }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
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
function requestHost(req: Req, isH2: boolean, hostFields: number): string | undefined {
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

/** What {@link forward} reports back. */
interface ForwardEvents {
  onHeaders(): void;
  onDone(status: number): void;
  onClientClosed(): void;
  onFailed(e: unknown, headersSent: boolean, status: number): void;
  closing(): boolean;
}

/**
 * One upstream exchange. Small answers (the common case) are collected and sent with the headers
 * in one write, so one TLS record and one syscall; larger ones stream with backpressure. Returns
 * what to call when the response closes: if the caller went away first, the upstream request is
 * abandoned (its connection is closed, not reused).
 */
function forward(pool: UpstreamPool, r: UpstreamRequest, res: Res, isH2: boolean, ev: ForwardEvents): () => void {
  let status = 0;
  let out: string[] = [];
  const chunks: Buffer[] = [];
  let buffered = 0;
  let streaming = false;
  // Settled: answered, failed or abandoned; nothing more is reported.
  let settled = false;
  let hasLength = false;
  let call: UpstreamCall | undefined;
  const onClose = () => {
    if (!res.writableFinished && !settled) {
      settled = true;
      call?.abort();
      ev.onClientClosed();
    }
  };
  const writeHead = (length?: number): boolean => {
    if (length !== undefined && !isH2) out.push('content-length', String(length));
    if (ev.closing() && !isH2) out.push('connection', 'close');
    try {
      (res as ServerResponse).writeHead(status, out);
      return true;
    } catch (e) {
      settled = true;
      call?.abort();
      ev.onFailed(new MutualError('UPSTREAM_UNAVAILABLE', { detail: `bad response headers: ${errText(e)}` }), false, status);
      return false;
    }
  };
  call = pool.request(r, {
    onHeaders(head) {
      status = head.status;
      out = head.headers;
      // HEAD answers, 204 and 304 carry no body: a length of 0 would misstate the resource's.
      hasLength = head.contentLength >= 0 || r.method === 'HEAD' || status === 204 || status === 304;
      ev.onHeaders();
    },
    onData(chunk) {
      if (settled) return false;
      if (!streaming) {
        chunks.push(chunk);
        buffered += chunk.length;
        if (buffered <= SMALL_RESPONSE_BYTES) return true;
        streaming = true;
        if (!writeHead()) return false;
        res.on('drain', () => call?.resume());
        let ok = true;
        for (const c of chunks.splice(0)) ok = (res as ServerResponse).write(c);
        return ok;
      }
      return (res as ServerResponse).write(chunk);
    },
    onComplete() {
      if (settled) return;
      settled = true;
      if (!streaming) {
        const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        if (!writeHead(hasLength ? undefined : data.length)) return;
        // Node joins a string body to the head and writes the whole answer in one write, where a
        // Buffer takes a writev; latin1 keeps every byte as it is.
        if (data.length <= STRING_BODY_BYTES) (res as ServerResponse).end(data.toString('latin1'), 'latin1');
        else (res as ServerResponse).end(data);
      } else (res as ServerResponse).end();
      ev.onDone(status);
    },
    onError(e) {
      if (settled) return;
      settled = true;
      ev.onFailed(e, streaming, status);
    },
  });
  return onClose;
}
