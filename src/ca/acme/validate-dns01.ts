/**
 * dns-01 validation (RFC 8555 section 8.4): a TXT record at `_acme-challenge.<name>` (for a
 * wildcard, of the base name, RFC 8555 section 7.1.3) must equal the base64url SHA-256 of the key
 * authorization. Looked up through the configured resolvers, CNAME chains followed (a delegated
 * `_acme-challenge`), within the validation's deadline.
 */
import net from 'node:net';
import { MutualError } from '../../core/errors.ts';
import type { AcmeIdentifier } from './acme-api.ts';
import { createChallengeResolver } from './challenge-resolver.ts';
import { dnsDigest } from './key-authorization.ts';
import { printable } from './printable.ts';
import type { ValidationOptions } from './validation-options.ts';

/**
 * Validates a dns-01 challenge; resolves when one TXT record at the challenge name is the digest.
 * Throws ACME_MALFORMED for an IP identifier (RFC 8738 section 7: no dns-01 for IPs), ACME_DNS when
 * the lookup fails (NXDOMAIN, SERVFAIL, timeout, a CNAME loop), ACME_INCORRECT_RESPONSE when no
 * record matches.
 */
export async function validateDns01(identifier: AcmeIdentifier, keyAuthorization: string, o: ValidationOptions): Promise<void> {
  if (identifier.type !== 'dns' || net.isIP(identifier.value)) {
    throw new MutualError('ACME_MALFORMED', { detail: `dns-01 cannot validate the ${identifier.type} identifier ${identifier.value} (RFC 8738 section 7)` });
  }
  const base = identifier.value.startsWith('*.') ? identifier.value.slice(2) : identifier.value;
  const name = `_acme-challenge.${base}`;
  const expected = dnsDigest(keyAuthorization);
  const signal = AbortSignal.timeout(o.timeoutMs);
  const resolver = createChallengeResolver(o, signal);
  const { values, chain } = await resolver.lookup(name, 'TXT');
  if (values.includes(expected)) return;
  const where = `TXT ${name}${chain.length > 1 ? ` (via CNAME ${chain.slice(1).join(' -> ')})` : ''} from resolver ${resolver.servers}`;
  const seen = values.length === 0
    ? 'no TXT records'
    : `${values.length} TXT record${values.length > 1 ? 's' : ''}: ${values.slice(0, 4).map((v) => printable(v)).join(', ')}${values.length > 4 ? ', ...' : ''}`;
  throw new MutualError('ACME_INCORRECT_RESPONSE', { detail: `${where}: expected ${JSON.stringify(expected)}, found ${seen}` });
}
