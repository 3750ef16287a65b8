/**
 * The storage the ACME lifecycle needs (accounts, EAB keys, orders, authorizations, challenges,
 * spent nonces), declared here by its consumer, `ca/acme/`; src/store implements it for SQLite and
 * PostgreSQL, in the same database as the CA's inventory (`CaStore.acme`).
 *
 * What must be atomic across replicas is done inside one store call, never as a read then a write
 * in the service: binding an EAB key with the account it creates, the rate limit with the order it
 * counts, the pending -> processing and ready -> processing steps (compare-and-set: two callers, one
 * wins), and the certificate recorded with the order that hands it out.
 */
import type { CertificateRecord } from '../store.ts';
import type { AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeIdentifier, AcmeOrder, AcmeSubproblem } from './acme-api.ts';

/** An external account binding key (RFC 8555 section 7.3.4), made by `mutual acme eab create`. */
export interface AcmeEabKey {
  keyId: string;
  /** The HMAC-SHA256 key, 32 random bytes. */
  hmacKey: Buffer;
  /**
   * DNS names (and IP addresses, literally) the account bound with this key may order; a `*`
   * label matches exactly one label (`api.*.acme.internal`).
   */
  names: string[];
  /** The key allows client certificates (stored; see docs/acme.md for why orders stay server). */
  clientProfile: boolean;
  createdAt: Date;
  /** After this the key binds no account; absent: never expires. */
  expiresAt?: Date;
  /** The account it bound, once it has. */
  accountId?: string;
}

/** An authorization as stored: the API's view and the account it belongs to. */
export interface AcmeAuthorizationRecord extends AcmeAuthorization {
  accountId: string;
}

/** An order as stored. `certificateId` is the certificate's serial (hex) once valid. */
export interface AcmeOrderRecord extends AcmeOrder {
  createdAt: Date;
}

/** How a challenge's validation ended. */
export type ChallengeOutcome = { valid: true; at: Date } | { valid: false; error: { code: string; detail: string } };

/** An order's failure, as it is shown to the client. */
export type AcmeOrderError = { code: string; detail: string; subproblems?: AcmeSubproblem[] };

/** The ACME lifecycle's storage. Every method that writes does so in one transaction. */
export interface AcmeStore {
  /**
   * A secret shared by every replica of the CA, made once: returns the stored value of `name`,
   * storing `fresh` first when there is none (the first replica's wins).
   */
  secret(name: string, fresh: Buffer): Promise<Buffer>;
  /** Records a nonce spent; false when it was spent before (on any replica). */
  spendNonce(nonce: string, expiresAt: Date): Promise<boolean>;

  /**
   * Creates an account, or returns the one that already has its key (`created: false`). With
   * `eab`, the key is bound to the new account in the same transaction: ACME_EAB_INVALID when
   * the key is unknown, expired at `eab.at`, or bound to another account.
   */
  createAccount(a: AcmeAccount, eab?: { keyId: string; at: Date }): Promise<{ account: AcmeAccount; created: boolean }>;
  account(id: string): Promise<AcmeAccount | undefined>;
  accountByThumbprint(thumbprint: string): Promise<AcmeAccount | undefined>;
  /** Changes contact and/or status; undefined when there is no such account. */
  updateAccount(id: string, patch: { contact?: string[]; status?: AcmeAccount['status'] }): Promise<AcmeAccount | undefined>;
  /** Key rollover: ACME_KEY_IN_USE when another account has `thumbprint`; ACME_NOT_FOUND without the account. */
  changeAccountKey(id: string, jwk: JsonWebKey, thumbprint: string): Promise<AcmeAccount>;

  createEabKey(k: AcmeEabKey): Promise<void>;
  eabKey(keyId: string): Promise<AcmeEabKey | undefined>;
  /** All EAB keys, oldest first. */
  eabKeys(): Promise<AcmeEabKey[]>;

  /**
   * Stores a new order with its new authorizations (existing ones it reuses are only linked), after
   * counting the account's orders created in the `windowSeconds` before `order.createdAt`:
   * ACME_RATE_LIMITED (field `retryAfter`, seconds) at `max`. Orders of one account are counted
   * one at a time across replicas.
   */
  createOrder(order: AcmeOrderRecord, authorizations: AcmeAuthorizationRecord[], limit: { max: number; windowSeconds: number }): Promise<void>;
  order(id: string): Promise<AcmeOrderRecord | undefined>;
  /** The account's order ids, newest first (at most `limit`). */
  orderIds(accountId: string, limit: number): Promise<string[]>;
  authorization(id: string): Promise<AcmeAuthorizationRecord | undefined>;
  /** A pending or valid authorization of the account for the identifier that expires after `after`, if any (the latest). */
  reusableAuthorization(accountId: string, identifier: AcmeIdentifier, after: Date): Promise<AcmeAuthorizationRecord | undefined>;
  /**
   * Compare-and-set: marks the challenge processing when it and its authorization are pending.
   * False when another call (on any replica) did first, or they are no longer pending.
   */
  startChallenge(authorizationId: string, challengeId: string): Promise<boolean>;
  /**
   * Ends a processing challenge: the challenge and its authorization become valid or invalid, and
   * in the same transaction every pending order holding the authorization becomes ready (all its
   * authorizations valid) or invalid (with the challenge's error).
   */
  finishChallenge(authorizationId: string, challengeId: string, outcome: ChallengeOutcome): Promise<void>;
  /** Deactivates an authorization (pending or valid); its pending and ready orders become invalid. */
  deactivateAuthorization(id: string): Promise<void>;

  /** Compare-and-set: ready -> processing. False when the order is not ready (another finalize won). */
  beginFinalize(orderId: string): Promise<boolean>;
  /**
   * Records the certificate in the CA's inventory (with its audit entry) and marks the order valid
   * with it, in ONE transaction: nothing a client is handed is missing from the inventory.
   */
  completeFinalize(orderId: string, certificate: CertificateRecord): Promise<void>;
  /** A processing order failed: it becomes invalid with the error. */
  failFinalize(orderId: string, error: AcmeOrderError): Promise<void>;

  /**
   * Removes abandoned orders (not valid) and the authorizations no order holds whose expiry is
   * before `now`, and spent nonces past theirs.
   */
  expire(now: Date): Promise<void>;
}

/** A challenge's id is its authorization's id and its index: this many characters of authorization id. */
export const AUTHORIZATION_ID_LENGTH = 22;

/** The authorization a challenge id belongs to (see {@link AUTHORIZATION_ID_LENGTH}). */
export function authorizationOfChallenge(challengeId: string): string {
  return challengeId.slice(0, AUTHORIZATION_ID_LENGTH);
}

export type { AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeIdentifier, AcmeOrder, AcmeSubproblem };
