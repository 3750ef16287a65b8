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
 *
 * This file composes the parts: tls-material.ts (certificates, trust, verifier and their reload),
 * gateway-state.ts (router, policy, pools: what a request reads), connections.ts (handshakes,
 * HTTP/2 abuse bounds, graceful shutdown), handle-request.ts and forward.ts (a request and its
 * answer), reload-watcher.ts (file changes) and admin-listener.ts (metrics, health, readiness).
 */
import http from 'node:http';
import http2 from 'node:http2';
import path from 'node:path';
import diagnostics from 'node:diagnostics_channel';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { MutualError, isMutualError } from '../core/errors.ts';
import type { PeerVerifier, FetchBytes } from '../sdk/index.ts';
import { loadGatewayConfig, type GatewayConfig } from './config.ts';
import { createGatewayMetrics, type GatewayMetrics } from './metrics.ts';
import { TlsMaterial } from './tls-material.ts';
import { buildState, retire } from './gateway-state.ts';
import { GatewayConnections } from './connections.ts';
import { createRequestHandler } from './handle-request.ts';
import { ReloadWatcher } from './reload-watcher.ts';
import { createAdminListener } from './admin-listener.ts';
import type { UpstreamPool } from './upstream.ts';

export { WATCH_POLL_MS } from './tls-material.ts';
export { RELOAD_SETTLE_MS } from './reload-watcher.ts';
export { SMALL_RESPONSE_BYTES } from './forward.ts';
export { MAX_CACHED_DECISIONS } from './gateway-state.ts';

const reloadedChannel = diagnostics.channel('mutual:gateway:reloaded');

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

/** Starts a gateway. Throws CONFIG_INVALID, file errors, KEY_MISMATCH for its first state. */
export async function startGateway(o: GatewayOptions): Promise<Gateway> {
  if (!o.config && !o.configFile) throw new TypeError('startGateway needs configFile or config');
  let config = o.config ?? loadGatewayConfig(o.configFile!);
  const log = o.logger ?? pino({ level: config.logLevel }, pino.destination(2));
  const access: Logger | undefined = o.accessLogger === false ? undefined
    : o.accessLogger ?? (config.accessLog === false ? undefined : pino({ base: undefined }, config.accessLog === true ? pino.destination(1) : pino.destination({ dest: config.accessLog, mkdir: true })));
  const now = o.now ?? (() => new Date());

  const material = await TlsMaterial.load(config, { log, watch: o.watch !== false, now, ...(o.fetch ? { fetch: o.fetch } : {}) });
  const metrics = createGatewayMetrics(() => material.verifier);
  let state = buildState(config, material.upstreamIdentity);

  // ---- the server
  const tlsOptions = () => material.serverOptions(state.config.sessionResumption);
  const server = createServer(config, tlsOptions());
  material.onServerRotated(() => server.setSecureContext(tlsOptions()));
  const connections = new GatewayConnections({ verifier: () => material.verifier, limits: () => state.config.limits, metrics, log });
  connections.attach(server);
  server.on('request', createRequestHandler({ state: () => state, verifier: () => material.verifier, material, connections, metrics, log, access }));

  // ---- reload
  const watcher = new ReloadWatcher(o.watch !== false, () => void reload());
  const filesOf = (c: GatewayConfig): string[] => [
    ...(o.configFile ? [path.resolve(o.configFile)] : []),
    c.trust.ca, c.trust.clientCas, ...c.revocation.crlFiles, ...(c.upstreamTls.ca ? [c.upstreamTls.ca] : []),
  ];
  watcher.watch(filesOf(config));

  let reloading: Promise<{ ok: boolean; error?: MutualError }> | undefined;
  function reload(): Promise<{ ok: boolean; error?: MutualError }> {
    // One reload at a time; a request for another while one runs gets a fresh one after it.
    const run = async () => {
      try {
        const next = o.configFile ? loadGatewayConfig(o.configFile) : config;
        const changes = await material.update(config, next);
        config = next;
        if (changes.serverChanged || changes.trustChanged) server.setSecureContext(tlsOptions());
        const old = state;
        state = buildState(next, material.upstreamIdentity);
        // Pools are rebuilt lazily; the old ones finish their requests, then close.
        retire(old);
        changes.replacedUpstreamIdentity?.close();
        applyLimits(server, next);
        watcher.watch(filesOf(next));
        metrics.reloads.inc({ result: 'ok' });
        if (reloadedChannel.hasSubscribers) reloadedChannel.publish({ ok: true, routes: next.routes.length, upstreamCaChanged: changes.upstreamCaChanged, trustChanged: changes.trustChanged });
        log.info({ routes: next.routes.length }, 'configuration reloaded');
        return { ok: true };
      } catch (e) {
        const err = isMutualError(e) ? e : new MutualError('CONFIG_INVALID', { detail: e instanceof Error ? e.message : String(e) });
        metrics.reloads.inc({ result: 'error' });
        if (reloadedChannel.hasSubscribers) reloadedChannel.publish({ ok: false, code: err.code, detail: err.fields.detail });
        log.error({ code: err.code, detail: err.fields.detail }, 'reload failed; the previous configuration stays in force');
        // Forget the stamps so the next change of any file tries again.
        watcher.restamp();
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

  // ---- listeners
  const admin = config.admin ? createAdminListener({ metrics, verifier: () => material.verifier, closing: () => connections.closing }) : undefined;
  let adminUrl: string | undefined;
  // A listener that cannot open (a port taken) fails the start: everything started so far is
  // stopped, so the process ends instead of running half a gateway (an admin listener answering
  // /ready 200 for a gateway that is not there).
  try {
    await listenOn(server, config.listen.host, config.listen.port, 'listen');
    if (admin && config.admin) {
      await listenOn(admin, config.admin.host, config.admin.port, 'admin');
      adminUrl = `http://${config.admin.host}:${(admin.address() as AddressInfo).port}`;
    }
  } catch (e) {
    watcher.close();
    material.close();
    if (server.listening) server.close();
    if (admin?.listening) admin.close();
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
      return material.verifier;
    },
    reload,
    close() {
      closed ??= (async () => {
        watcher.close();
        await connections.shutdown(server, state.config.limits.shutdownTimeoutMs);
        retire(state);
        material.close();
        if (admin) {
          const adminClosed = new Promise<void>((r) => admin.close(() => r()));
          admin.closeAllConnections();
          await adminClosed;
        }
        log.info('mutual gateway stopped');
      })();
      return closed;
    },
  };
}

/** The TLS server, HTTP/2 with HTTP/1.1 fallback, with `c`'s limits; not yet listening. */
function createServer(c: GatewayConfig, tlsOptions: ReturnType<TlsMaterial['serverOptions']>): http2.Http2SecureServer {
  const server = http2.createSecureServer({
    ...tlsOptions,
    allowHTTP1: true,
    ALPNProtocols: ['h2', 'http/1.1'],
    maxHeaderSize: c.limits.maxHeaderBytes,
    settings: { maxConcurrentStreams: c.limits.h2MaxConcurrentStreams, maxHeaderListSize: c.limits.maxHeaderBytes },
    maxSessionMemory: 10,
  } as http2.SecureServerOptions);
  applyLimits(server, c);
  return server;
}

/** Applies `c`'s limits to the server (at start and on reload). */
function applyLimits(server: http2.Http2SecureServer, c: GatewayConfig): void {
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
