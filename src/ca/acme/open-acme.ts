/**
 * The one place the ACME lifecycle is composed for `mutual serve`: when config.yaml enables ACME
 * (`acme.enabled`), an {@link AcmeAuthority} on the CA's own store and config, with the real
 * challenge validators (validate-*.ts). The server receives the result as an `AcmeService`.
 */
import type { CertificateAuthority } from '../authority.ts';
import { acmeConfig } from '../config.ts';
import { AcmeAuthority } from './acme-authority.ts';
import type { AcmeValidators } from './acme-validators.ts';
import { validateDns01 } from './validate-dns01.ts';
import { validateHttp01 } from './validate-http01.ts';
import { validateTlsAlpn01 } from './validate-tls-alpn01.ts';

/** The validators of RFC 8555 section 8 and RFC 8737, as the CA runs them. */
export const challengeValidators: AcmeValidators = { http01: validateHttp01, dns01: validateDns01, tlsAlpn01: validateTlsAlpn01 };

/** The ACME lifecycle config.yaml enables for this CA, or undefined when ACME is off. */
export function openAcme(o: { ca: CertificateAuthority; now?: () => Date }): AcmeAuthority | undefined {
  const config = acmeConfig(o.ca.config);
  if (!config.enabled) return undefined;
  return new AcmeAuthority({ ca: o.ca, config, validators: challengeValidators, ...(o.now ? { now: o.now } : {}) });
}
