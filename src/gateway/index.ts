/**
 * The mTLS gateway (`mutual gateway`). Exports by name only; see docs/gateway.md.
 */
export { startGateway, WATCH_POLL_MS } from './gateway.ts';
export type { Gateway, GatewayOptions } from './gateway.ts';
export { loadGatewayConfig, validateGatewayConfig, GatewayConfigSchema } from './config.ts';
export type { GatewayConfig, RouteConfig, LimitsConfig } from './config.ts';
export { Router, authorize } from './router.ts';
export { normalizeTarget, normalizeHost } from './request-target.ts';
export type { NormalizedTarget } from './request-target.ts';
export { HeaderPolicy } from './header-policy.ts';
export type { HeaderPolicyOptions } from './header-policy.ts';
export type { Route, Decision } from './router.ts';
export { createGatewayMetrics } from './metrics.ts';
export type { GatewayMetrics } from './metrics.ts';
