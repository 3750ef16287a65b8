/**
 * The one place the ACME lifecycle is composed for `mutual serve`: when config.yaml enables ACME
 * (`acme.enabled`), an {@link AcmeAuthority} on the CA's own store and config, with the real
 * challenge validators (its default). The server receives the result as an `AcmeService`.
 */
import type { CertificateAuthority } from '../authority.ts';
import { acmeConfig } from '../config.ts';
import { AcmeAuthority } from './acme-authority.ts';

/** The ACME lifecycle config.yaml enables for this CA, or undefined when ACME is off. */
export function openAcme(o: { ca: CertificateAuthority; now?: () => Date }): AcmeAuthority | undefined {
  const config = acmeConfig(o.ca.config);
  if (!config.enabled) return undefined;
  return new AcmeAuthority({ ca: o.ca, config, ...(o.now ? { now: o.now } : {}) });
}
