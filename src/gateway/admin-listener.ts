/**
 * The gateway's admin listener (plain HTTP, for the operator's network only): `/metrics`
 * (Prometheus), `/health` (the process answers), `/ready` (serving, and in fail-closed mode
 * holding at least one fresh revocation source).
 */
import http from 'node:http';
import type { PeerVerifier } from '../sdk/index.ts';
import type { GatewayMetrics } from './metrics.ts';

/** What the admin listener reads (current after a reload). */
export interface AdminListenerOptions {
  metrics: GatewayMetrics;
  verifier: () => PeerVerifier;
  /** True once the gateway is shutting down: /ready answers 503. */
  closing: () => boolean;
}

/** An admin server, not yet listening. */
export function createAdminListener(o: AdminListenerOptions): http.Server {
  return http.createServer(async (req, res) => {
    const p = (req.url ?? '/').split('?')[0];
    if (p === '/metrics') {
      res.writeHead(200, { 'content-type': o.metrics.registry.contentType });
      res.end(await o.metrics.registry.metrics());
    } else if (p === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    } else if (p === '/ready') {
      const verifier = o.verifier();
      const closing = o.closing();
      const fresh = verifier.mode !== 'fail-closed' || verifier.status().some((x) => x.fresh);
      res.writeHead(fresh && !closing ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready: fresh && !closing, revocation: verifier.status() }));
    } else res.writeHead(404).end();
  });
}
