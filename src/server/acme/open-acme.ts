/**
 * The one place `mutual serve` builds its ACME lifecycle from config.yaml (`acme.enabled`). The
 * lifecycle (`AcmeAuthority`, src/ca/acme/) lands separately; until then no configuration enables it.
 */
import type { AcmeService, CertificateAuthority } from '../../ca/index.ts';

/** The ACME service config.yaml enables for this CA, or undefined when ACME is off. */
export function openAcme(_o: { ca: CertificateAuthority; now: () => Date }): AcmeService | undefined {
  return undefined;
}
