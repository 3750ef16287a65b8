/**
 * What a gateway request reads, built from one config and swapped whole on reload: the router,
 * the header policy, the authorization decisions made so far, and the upstream pools (made on
 * first use). A request keeps the state it started with; a retired state's pools close once the
 * requests they carry finish.
 */
import { MutualError } from '../core/errors.ts';
import { certificateIdentity } from '../core/certificate.ts';
import { serverIdentityChecker, type IdentitySource } from '../sdk/index.ts';
import type { GatewayConfig } from './config.ts';
import { Router, authorize, type Route } from './router.ts';
import { HeaderPolicy } from './header-policy.ts';
import { UpstreamPool } from './upstream.ts';

/** Most cached authorization decisions per state; past it the cache starts over. */
export const MAX_CACHED_DECISIONS = 10_000;

/** The gateway's own TLS material for upstreams, read when a pool is made. */
export interface UpstreamTlsMaterial {
  /** The client certificate for mTLS routes (upstreamTls.cert/key), if configured. */
  readonly upstreamIdentity: IdentitySource | undefined;
  /** Trust anchors for https upstreams, PEM (upstreamTls.ca, else trust.ca). */
  readonly upstreamCa: string;
}

/** Everything a request reads, swapped whole on reload. */
export interface GatewayState {
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

/** A state for `c`; XFCC's `By` is the config's `identity`, else the upstream client certificate's. */
export function buildState(c: GatewayConfig, upstreamIdentity: IdentitySource | undefined): GatewayState {
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
}

/** {@link authorize}, cached per state (at most {@link MAX_CACHED_DECISIONS} per route). */
export function decide(s: GatewayState, route: Route, method: string, identity: string | undefined): ReturnType<typeof authorize> {
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

// mTLS upstreams must show a server certificate (EKU serverAuth), as the SDK's clients require.
const checkUpstream = serverIdentityChecker();

/** The pool for route `r`, made on first use. Throws CONFIG_INVALID for an mTLS route without upstreamTls. */
export function poolFor(s: GatewayState, r: Route, material: UpstreamTlsMaterial): UpstreamPool {
  let p = s.poolOfRoute.get(r);
  if (p) return p;
  const key = `${r.upstream.origin}|${r.mtls}|${r.serverName ?? ''}`;
  p = s.pools.get(key);
  if (p) {
    s.poolOfRoute.set(r, p);
    return p;
  }
  const https = r.upstream.protocol === 'https:';
  const upstreamIdentity = material.upstreamIdentity;
  if (r.mtls && !upstreamIdentity) throw new MutualError('CONFIG_INVALID', { detail: `route ${r.name}: mTLS upstream without upstreamTls` });
  p = new UpstreamPool({
    origin: r.upstream,
    connections: s.config.limits.upstreamConnections,
    timeoutMs: s.config.limits.upstreamTimeoutMs,
    ...(https ? {
      tls: {
        ca: material.upstreamCa,
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
}

/** Marks `s` replaced: its pools close as soon as their requests finish. */
export function retire(s: GatewayState): void {
  s.retired = true;
  for (const p of s.pools.values()) void p.close();
}
