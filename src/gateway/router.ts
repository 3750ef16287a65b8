/**
 * Routing (host + path prefix -> upstream) and authorization (route + method -> allow rules with
 * identity patterns). Default deny: a route without a matching rule refuses. A router is built
 * once per config and swapped whole on reload, so a request sees one consistent policy. It matches
 * hosts and paths in the form {@link normalizeTarget} and {@link normalizeHost} give, which is the
 * form forwarded.
 */
import { matchIdentity } from '../core/identity.ts';
import type { RouteConfig } from './config.ts';
import { normalizeHost, normalizeTarget } from './request-target.ts';

/** A route ready to serve. */
export interface Route {
  name: string;
  host?: string;
  pathPrefix: string;
  /** Match the prefix in any ASCII case (for backends that do, such as Express). */
  caseInsensitive: boolean;
  /** The prefix in lower case, for caseInsensitive routes. */
  lowerPrefix: string;
  upstream: URL;
  /** The upstream base path (without a trailing slash), prepended to forwarded paths. */
  basePath: string;
  mtls: boolean;
  serverName?: string;
  stripPrefix: boolean;
  allow: RouteConfig['allow'];
}

/** An authorization decision, logged with every request. */
export interface Decision {
  allowed: boolean;
  /** Index of the matched rule and the pattern that matched. */
  rule?: number;
  pattern?: string;
}

/** Routes in match order: exact hosts before wildcards before any host, longer prefixes first. */
export class Router {
  readonly routes: Route[];

  constructor(configs: readonly RouteConfig[]) {
    this.routes = configs.map((c) => {
      const upstream = new URL(c.upstream);
      const trimmed = c.pathPrefix.length > 1 ? c.pathPrefix.replace(/\/+$/, '') : '/';
      // Prefixes are compared with normalized paths, so they are normalized the same way (a prefix
      // that cannot be, such as "/a/../b", is refused by the config schema).
      const prefix = normalizeTarget(trimmed).path;
      const host = c.host && (c.host.startsWith('*.') ? `*.${normalizeHost(c.host.slice(2))}` : normalizeHost(c.host));
      return {
        name: c.name ?? `${c.host ?? '*'}${prefix}`,
        ...(host ? { host } : {}),
        pathPrefix: prefix,
        caseInsensitive: c.caseInsensitive,
        lowerPrefix: prefix.toLowerCase(),
        upstream,
        basePath: upstream.pathname.replace(/\/+$/, ''),
        mtls: upstream.protocol === 'https:' && c.mtls,
        ...(c.serverName ? { serverName: c.serverName } : {}),
        stripPrefix: c.stripPrefix,
        allow: c.allow,
      };
    });
    const hostRank = (r: Route) => (!r.host ? 2 : r.host.startsWith('*.') ? 1 : 0);
    this.routes.sort((a, b) => hostRank(a) - hostRank(b) || b.pathPrefix.length - a.pathPrefix.length);
  }

  /**
   * The route for a host and a path, or undefined. Both must be normalized ({@link normalizeHost},
   * {@link normalizeTarget}'s path, without the query); the host's port is ignored.
   */
  match(normalizedHost: string | undefined, path: string): Route | undefined {
    const host = stripPort(normalizedHost ?? '');
    let lower: string | undefined;
    for (const r of this.routes) {
      if (r.host && !hostMatches(r.host, host)) continue;
      if (r.pathPrefix === '/') return r;
      // ASCII only: normalized paths carry anything else percent-encoded, so lengths stay equal.
      const p = r.caseInsensitive ? (lower ??= path.toLowerCase()) : path;
      const prefix = r.caseInsensitive ? r.lowerPrefix : r.pathPrefix;
      if (p.startsWith(prefix) && (p.length === prefix.length || p.charCodeAt(prefix.length) === 47 /* / */)) return r;
    }
    return undefined;
  }

  /** The upstream path for a request path on a route. */
  upstreamPath(r: Route, path: string): string {
    let p = path;
    if (r.stripPrefix && r.pathPrefix !== '/') {
      p = p.slice(r.pathPrefix.length);
      if (!p.startsWith('/')) p = '/' + p;
    }
    return r.basePath + p;
  }
}

/** Decides whether `identity` may use `method` on a route: the first matching rule allows. */
export function authorize(r: Route, method: string, identity: string | undefined): Decision {
  for (const [i, rule] of r.allow.entries()) {
    if (rule.methods && !rule.methods.includes(method as (typeof rule.methods)[number])) continue;
    for (const p of rule.identities) {
      // "*" alone: any client that passed verification (with or without a SPIFFE ID).
      if (p === '*' || (identity !== undefined && matchIdentity(p, identity))) return { allowed: true, rule: i, pattern: p };
    }
  }
  return { allowed: false };
}

function stripPort(h: string): string {
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const i = h.lastIndexOf(':');
  return i >= 0 && h.indexOf(':') === i ? h.slice(0, i) : h;
}

function hostMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
  return pattern === host;
}
