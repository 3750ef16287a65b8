/**
 * The challenge validators the lifecycle calls (RFC 8555 section 8, RFC 8737), behind one small
 * interface the authority receives: `mutual serve` passes the real ones (validate-*.ts), tests
 * may pass them too against local responders. Each resolves when the challenge is met and throws
 * a MutualError ACME_CONNECTION, ACME_DNS, ACME_INCORRECT_RESPONSE or ACME_TLS whose detail says
 * what was fetched, from where, and what was expected.
 */
import type { AcmeIdentifier } from './acme-api.ts';

/** Where and how long a validator looks. */
export interface ValidationOptions {
  /** Port of http-01 requests (80 in production). */
  httpPort: number;
  /** Port of tls-alpn-01 handshakes (443 in production). */
  tlsAlpnPort: number;
  /** DNS servers (`host:port`) for dns-01 and name lookups; absent: the system's. */
  dnsServers?: string[];
  /** Limit of one attempt. */
  timeoutMs: number;
  /** Connect here instead of resolving the identifier (tests). */
  hostOverride?: string;
}

/** The three validators. */
export interface AcmeValidators {
  http01(identifier: AcmeIdentifier, token: string, keyAuthorization: string, o: ValidationOptions): Promise<void>;
  dns01(identifier: AcmeIdentifier, keyAuthorization: string, o: ValidationOptions): Promise<void>;
  tlsAlpn01(identifier: AcmeIdentifier, keyAuthorization: string, o: ValidationOptions): Promise<void>;
}
