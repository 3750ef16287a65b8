/**
 * Row mapping of the ACME tables, shared by the SQLite and PostgreSQL stores (acme-sqlite.ts,
 * acme-postgres.ts): both keep times as epoch seconds and lists as JSON text; booleans are
 * integers in SQLite and booleans in PostgreSQL, read the same way here.
 */
import type {
  AcmeAccount, AcmeAuthorizationRecord, AcmeChallenge, AcmeEabKey, AcmeIdentifier, AcmeOrderRecord, ChallengeOutcome,
} from '../ca/acme/acme-store.ts';
import { MutualError } from '../core/errors.ts';
import { date, sec, type Row } from './rows.ts';

/** The order statuses a challenge's end or a deactivation may still change. */
export const OPEN_ORDER = ['pending', 'ready'] as const;

const json = <T>(v: unknown, what: string): T => {
  try {
    return JSON.parse(v as string) as T;
  } catch {
    throw new MutualError('STORE_CORRUPT', { detail: `ACME ${what} is not JSON` });
  }
};

export function toAccount(r: Row): AcmeAccount {
  return {
    id: r.id as string,
    status: r.status as AcmeAccount['status'],
    jwk: json<JsonWebKey>(r.jwk, `account ${String(r.id)}'s key`),
    thumbprint: r.thumbprint as string,
    contact: json<string[]>(r.contact, `account ${String(r.id)}'s contact`),
    termsOfServiceAgreed: Boolean(r.tos_agreed),
    ...(r.eab_key_id ? { eabKeyId: r.eab_key_id as string } : {}),
    createdAt: date(r.created_at as number)!,
  };
}

/** The values of an acme_accounts row, in column order (id, thumbprint, jwk, status, contact, tos_agreed, eab_key_id, created_at). */
export function accountValues(a: AcmeAccount, bool: (b: boolean) => unknown): unknown[] {
  return [a.id, a.thumbprint, JSON.stringify(a.jwk), a.status, JSON.stringify(a.contact), bool(a.termsOfServiceAgreed), a.eabKeyId ?? null, sec(a.createdAt)];
}

export function toEabKey(r: Row): AcmeEabKey {
  return {
    keyId: r.key_id as string,
    hmacKey: Buffer.from(r.hmac_key as Uint8Array),
    names: json<string[]>(r.names, `EAB key ${String(r.key_id)}'s names`),
    clientProfile: Boolean(r.client_profile),
    createdAt: date(r.created_at as number)!,
    ...(r.expires_at !== null && r.expires_at !== undefined ? { expiresAt: date(r.expires_at as number)! } : {}),
    ...(r.account_id ? { accountId: r.account_id as string } : {}),
  };
}

/** An acme_orders row and its authorization ids (in order). */
export function toOrder(r: Row, authorizationIds: string[]): AcmeOrderRecord {
  return {
    id: r.id as string,
    accountId: r.account_id as string,
    status: r.status as AcmeOrderRecord['status'],
    expires: date(r.expires_at as number)!,
    identifiers: json<AcmeIdentifier[]>(r.identifiers, `order ${String(r.id)}'s identifiers`),
    ...(r.not_before !== null ? { notBefore: date(r.not_before as number)! } : {}),
    ...(r.not_after !== null ? { notAfter: date(r.not_after as number)! } : {}),
    authorizationIds,
    ...(r.certificate_id ? { certificateId: r.certificate_id as string } : {}),
    ...(r.replaces ? { replaces: r.replaces as string } : {}),
    ...(r.error ? { error: json<NonNullable<AcmeOrderRecord['error']>>(r.error, `order ${String(r.id)}'s error`) } : {}),
    createdAt: date(r.created_at as number)!,
  };
}

/** The values of an acme_orders row, in column order. */
export function orderValues(o: AcmeOrderRecord): unknown[] {
  return [o.id, o.accountId, o.status, sec(o.expires), JSON.stringify(o.identifiers), o.notBefore ? sec(o.notBefore) : null, o.notAfter ? sec(o.notAfter) : null,
    o.certificateId ?? null, o.replaces ?? null, o.error ? JSON.stringify(o.error) : null, sec(o.createdAt)];
}

/** Challenges as stored: dates as epoch seconds. */
type StoredChallenge = Omit<AcmeChallenge, 'validated'> & { validated?: number };

export function toAuthorization(r: Row): AcmeAuthorizationRecord {
  const challenges = json<StoredChallenge[]>(r.challenges, `authorization ${String(r.id)}'s challenges`)
    .map(({ validated, ...c }) => ({ ...c, ...(validated !== undefined ? { validated: date(validated)! } : {}) }));
  return {
    id: r.id as string,
    accountId: r.account_id as string,
    identifier: { type: r.type as AcmeIdentifier['type'], value: r.value as string },
    status: r.status as AcmeAuthorizationRecord['status'],
    expires: date(r.expires_at as number)!,
    challenges,
    wildcard: Boolean(r.wildcard),
  };
}

/** The challenges of an authorization as stored (JSON text). */
export function challengesJson(challenges: AcmeChallenge[]): string {
  return JSON.stringify(challenges.map(({ validated, ...c }) => ({ ...c, ...(validated ? { validated: sec(validated) } : {}) })));
}

/** The values of an acme_authorizations row, in column order. */
export function authorizationValues(a: AcmeAuthorizationRecord, bool: (b: boolean) => unknown): unknown[] {
  return [a.id, a.accountId, a.identifier.type, a.identifier.value, bool(a.wildcard), a.status, sec(a.expires), challengesJson(a.challenges)];
}

/**
 * An authorization after its challenge ended: the challenge valid (with the time) or invalid
 * (with the error), the authorization the same; other challenges are left as they are.
 */
export function finishedAuthorization(a: AcmeAuthorizationRecord, challengeId: string, outcome: ChallengeOutcome): AcmeAuthorizationRecord {
  const challenges = a.challenges.map((c): AcmeChallenge => {
    if (c.id !== challengeId) return c;
    return outcome.valid ? { ...c, status: 'valid', validated: outcome.at } : { ...c, status: 'invalid', error: outcome.error };
  });
  return { ...a, status: outcome.valid ? 'valid' : 'invalid', challenges };
}

/** The error a pending order gets when one of its authorizations failed. */
export function authorizationFailed(a: AcmeAuthorizationRecord, error: { code: string; detail: string }): { code: string; detail: string } {
  return { code: error.code, detail: `authorization for ${a.identifier.value} failed: ${error.detail}` };
}

/** ACME_RATE_LIMITED for an account whose oldest order in the window was created at `oldest`. */
export function rateLimited(max: number, windowSeconds: number, oldest: number, now: Date): MutualError {
  const retryAfter = Math.max(1, oldest + windowSeconds - sec(now));
  return new MutualError('ACME_RATE_LIMITED', { detail: `${max} orders in ${windowSeconds} s; retry in ${retryAfter} s`, retryAfter });
}
