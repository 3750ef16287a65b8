/**
 * Prometheus metrics of the CA server, on a registry of its own (no global default registry).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The CA server's metrics. */
export interface CaMetrics {
  registry: Registry;
  issued: Counter<'role'>;
  revoked: Counter;
  renewals: Counter;
  errors: Counter<'code'>;
  ocspResponses: Counter<'status'>;
  crlAge: Gauge<'ca'>;
  latency: Histogram<'route'>;
}

/** Makes a fresh registry with mutual's metrics. */
export function createMetrics(): CaMetrics {
  const registry = new Registry();
  const r = [registry];
  return {
    registry,
    issued: new Counter({ name: 'mutual_certificates_issued_total', help: 'Certificates issued through the API', labelNames: ['role'], registers: r }),
    revoked: new Counter({ name: 'mutual_certificates_revoked_total', help: 'Certificates revoked through the API', registers: r }),
    renewals: new Counter({ name: 'mutual_renewals_total', help: 'Renewals over mTLS', registers: r }),
    errors: new Counter({ name: 'mutual_errors_total', help: 'Refused or failed API requests by error code', labelNames: ['code'], registers: r }),
    ocspResponses: new Counter({ name: 'mutual_ocsp_responses_total', help: 'OCSP answers by status', labelNames: ['status'], registers: r }),
    crlAge: new Gauge({ name: 'mutual_crl_age_seconds', help: 'Seconds since the CRL served for each CA was built', labelNames: ['ca'], registers: r }),
    latency: new Histogram({ name: 'mutual_http_request_duration_seconds', help: 'Request latency by route', labelNames: ['route'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: r }),
  };
}
