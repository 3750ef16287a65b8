/**
 * The challenge validators the lifecycle calls (RFC 8555 section 8, RFC 8737), behind one small
 * interface the authority receives: `mutual serve` passes {@link challengeValidators} (the real
 * ones, validate-*.ts); a test may pass its own. Each resolves when the challenge is met and
 * throws a MutualError ACME_CONNECTION, ACME_DNS, ACME_INCORRECT_RESPONSE or ACME_TLS whose
 * detail says what was fetched, from where, and what was expected.
 */
import type { AcmeIdentifier } from './acme-api.ts';
import { validateDns01 } from './validate-dns01.ts';
import { validateHttp01 } from './validate-http01.ts';
import { validateTlsAlpn01 } from './validate-tls-alpn01.ts';
import type { ValidationOptions } from './validation-options.ts';

export type { ValidationOptions };

/** The three validators. */
export interface AcmeValidators {
  http01(identifier: AcmeIdentifier, token: string, keyAuthorization: string, o: ValidationOptions): Promise<void>;
  dns01(identifier: AcmeIdentifier, keyAuthorization: string, o: ValidationOptions): Promise<void>;
  tlsAlpn01(identifier: AcmeIdentifier, keyAuthorization: string, o: ValidationOptions): Promise<void>;
}

/** The real validators: http-01, dns-01 and tls-alpn-01 against the hosts themselves. */
export const challengeValidators: AcmeValidators = { http01: validateHttp01, dns01: validateDns01, tlsAlpn01: validateTlsAlpn01 };
