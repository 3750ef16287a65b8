/**
 * Making external account binding keys (RFC 8555 section 7.3.4) for `mutual acme eab create`: a
 * key id and a 32-byte HMAC key the operator hands to one ACME client, the names the account it
 * binds may order, and an optional expiry. The key is stored in the CA's database (the CA needs
 * it to verify the binding) and shown once.
 */
import crypto from 'node:crypto';
import { MutualError } from '../../core/errors.ts';
import { isIpAddress } from '../../core/names.ts';
import type { AcmeEabKey, AcmeStore } from './acme-store.ts';

/** Most name patterns on one key. */
export const MAX_EAB_NAMES = 100;
/** A pattern label: a DNS label, or `*` for exactly one label. */
const LABEL = /^(\*|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$/;

/** Checks and lowercases name patterns (`api.*.acme.internal`, an IP address). USAGE_INVALID names the bad one. */
export function checkEabNames(names: string[]): string[] {
  if (names.length === 0 || names.length > MAX_EAB_NAMES) throw new MutualError('USAGE_INVALID', { detail: `give 1 to ${MAX_EAB_NAMES} name patterns` });
  return names.map((raw) => {
    const n = raw.trim().toLowerCase().replace(/\.$/, '');
    if (isIpAddress(n)) return n;
    if (n.length === 0 || n.length > 253 || !n.split('.').every((l) => LABEL.test(l))) {
      throw new MutualError('USAGE_INVALID', { detail: `name pattern ${JSON.stringify(raw.slice(0, 80))}: DNS labels, "*" for exactly one label (api.*.acme.internal), or an IP address` });
    }
    return n;
  });
}

/** Makes and stores an EAB key; returns it (its HMAC key is shown to the operator once). */
export async function createEabKey(store: AcmeStore, o: { names: string[]; clientProfile?: boolean; expiresAt?: Date; now: Date }): Promise<AcmeEabKey> {
  const key: AcmeEabKey = {
    keyId: `eab-${crypto.randomBytes(12).toString('base64url')}`,
    hmacKey: crypto.randomBytes(32),
    names: checkEabNames(o.names),
    clientProfile: o.clientProfile === true,
    createdAt: o.now,
    ...(o.expiresAt ? { expiresAt: o.expiresAt } : {}),
  };
  await store.createEabKey(key);
  return key;
}
