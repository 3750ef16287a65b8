/**
 * The gateway's Prometheus metrics, in a Registry of its own (no global default registry, so
 * several gateways and the CA server can live in one process).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { PeerVerifier } from '../sdk/index.ts';

/** The gateway's metrics. */
export interface GatewayMetrics {
  /** Counts a request (label children cached: hashing labels was measurable per request). */
  request(route: string, status: number): void;
  /** Observes the time to the upstream's response headers. */
  upstream(route: string, seconds: number): void;
  registry: Registry;
  handshakes: Counter<'result'>;
  rejections: Counter<'code'>;
  authzDenials: Counter<'route'>;
  requests: Counter<'route' | 'status'>;
  upstreamSeconds: Histogram<'route'>;
  reloads: Counter<'result'>;
  h2Abuse: Counter<'reason'>;
}

/** Makes the metrics; `verifier()` feeds the CRL gauges at scrape time. */
export function createGatewayMetrics(verifier: () => PeerVerifier): GatewayMetrics {
  const registry = new Registry();
  const requestChildren = new Map<string, { inc(): void }>();
  const upstreamChildren = new Map<string, { observe(v: number): void }>();
  const m: GatewayMetrics = {
    request(route, status) {
      const key = `${route} ${status}`;
      let c = requestChildren.get(key);
      if (!c) requestChildren.set(key, (c = m.requests.labels(route, String(status))));
      c.inc();
    },
    upstream(route, seconds) {
      let c = upstreamChildren.get(route);
      if (!c) upstreamChildren.set(route, (c = m.upstreamSeconds.labels(route)));
      c.observe(seconds);
    },
    registry,
    handshakes: new Counter({ name: 'mutual_gateway_handshakes_total', help: 'TLS handshakes completed, by verification result (ok or error code)', labelNames: ['result'], registers: [registry] }),
    rejections: new Counter({ name: 'mutual_gateway_rejections_total', help: 'Requests refused for the client certificate, by error code', labelNames: ['code'], registers: [registry] }),
    authzDenials: new Counter({ name: 'mutual_gateway_authz_denials_total', help: 'Requests denied by the authorization policy, by route', labelNames: ['route'], registers: [registry] }),
    requests: new Counter({ name: 'mutual_gateway_requests_total', help: 'Requests answered, by route and status', labelNames: ['route', 'status'], registers: [registry] }),
    upstreamSeconds: new Histogram({
      name: 'mutual_gateway_upstream_duration_seconds', help: 'Time to the upstream response headers', labelNames: ['route'], registers: [registry],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    }),
    reloads: new Counter({ name: 'mutual_gateway_reloads_total', help: 'Configuration reloads, by result', labelNames: ['result'], registers: [registry] }),
    h2Abuse: new Counter({ name: 'mutual_gateway_h2_sessions_closed_total', help: 'HTTP/2 sessions closed for abuse (rapid reset)', labelNames: ['reason'], registers: [registry] }),
  };
  new Gauge({
    name: 'mutual_gateway_crl_entries', help: 'Revoked serials in the loaded CRL, per client CA', labelNames: ['issuer'], registers: [registry],
    collect() {
      this.reset();
      for (const s of verifier().status()) this.set({ issuer: s.issuer }, s.entries);
    },
  });
  new Gauge({
    name: 'mutual_gateway_crl_fresh', help: '1 when the client CA has a CRL before its nextUpdate', labelNames: ['issuer'], registers: [registry],
    collect() {
      this.reset();
      for (const s of verifier().status()) this.set({ issuer: s.issuer }, s.fresh ? 1 : 0);
    },
  });
  return m;
}
