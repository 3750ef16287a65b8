/**
 * ACME (RFC 8555, RFC 8737, RFC 8738, RFC 9773) as the authority offers it: the contract between
 * the transport (`server/acme/`: JWS, nonces, URLs, problem documents) and the lifecycle
 * (`ca/acme/`: accounts, orders, authorizations, challenge validation, finalization through the
 * authority's issuance pipeline, revocation, renewal information). The transport has verified the
 * JWS (signature, nonce, url) before it calls any method that takes an `accountId`, and passes
 * only an account it found with {@link AcmeService.accountByKey} or {@link AcmeService.account}.
 *
 * Errors: every refusal is a MutualError whose code the transport maps to an
 * `urn:ietf:params:acme:error:*` type (server/acme/problems.ts). ACME-only refusals have ACME_*
 * codes; the pipeline's own (POLICY_*, CSR_*, KEY_WEAK, CERT_*) pass through unchanged. A refusal
 * about several identifiers carries `fields.subproblems`.
 */

/** An identifier an order or authorization is for (RFC 8555 section 9.7.7, RFC 8738). */
export interface AcmeIdentifier {
  type: 'dns' | 'ip';
  value: string;
}

/** One identifier's refusal inside a compound problem (RFC 8555 section 6.7.1). */
export interface AcmeSubproblem {
  /** The mutual error code (the transport maps it to an ACME type). */
  code: string;
  detail: string;
  identifier: AcmeIdentifier;
}

/** An ACME account. `id` is opaque and URL-safe; the transport makes the account URL of it. */
export interface AcmeAccount {
  id: string;
  status: 'valid' | 'deactivated' | 'revoked';
  /** The account's public key (a public JWK: kty, crv/x/y, n/e, as the client sent it). */
  jwk: JsonWebKey;
  /** RFC 7638 thumbprint of `jwk`, base64url (SHA-256). */
  thumbprint: string;
  contact: string[];
  termsOfServiceAgreed: boolean;
  /** The EAB key the account was bound with, if any. */
  eabKeyId?: string;
  createdAt: Date;
}

/** A flattened JWS as the client sent it (RFC 7515 section 7.2.2). */
export interface FlattenedJws {
  protected: string;
  payload: string;
  signature: string;
}

export type AcmeChallengeType = 'http-01' | 'dns-01' | 'tls-alpn-01';

export interface AcmeChallenge {
  id: string;
  type: AcmeChallengeType;
  status: 'pending' | 'processing' | 'valid' | 'invalid';
  /** base64url, at least 128 bits of entropy. */
  token: string;
  validated?: Date;
  /** Why validation failed: what was fetched, from where, what was expected. */
  error?: { code: string; detail: string };
}

export interface AcmeAuthorization {
  id: string;
  identifier: AcmeIdentifier;
  status: 'pending' | 'valid' | 'invalid' | 'deactivated' | 'expired' | 'revoked';
  expires: Date;
  challenges: AcmeChallenge[];
  wildcard: boolean;
}

export interface AcmeOrder {
  id: string;
  accountId: string;
  status: 'pending' | 'ready' | 'processing' | 'valid' | 'invalid';
  expires: Date;
  identifiers: AcmeIdentifier[];
  notBefore?: Date;
  notAfter?: Date;
  authorizationIds: string[];
  /** Set once valid: the certificate's id for {@link AcmeService.certificate}. */
  certificateId?: string;
  /** RFC 9773 `replaces`: the ARI certificate id this order renews. */
  replaces?: string;
  error?: { code: string; detail: string; subproblems?: AcmeSubproblem[] };
}

/** What the directory's `meta` says (RFC 8555 section 7.1.1). */
export interface AcmeMeta {
  termsOfService?: string;
  website?: string;
  caaIdentities: string[];
  externalAccountRequired: boolean;
}

/** RFC 9773 renewal information. */
export interface RenewalInfo {
  suggestedWindow: { start: Date; end: Date };
  explanationURL?: string;
  /** How long the client should wait before asking again. */
  retryAfterSeconds: number;
}

/** A certificate chain to download: the leaf first, then the intermediates (PEM). */
export interface AcmeCertificateChain {
  pem: string;
  /** How many alternate chains there are (`Link: rel="alternate"` with `?alt=N`, N from 1). */
  alternates: number;
}

/** The ACME lifecycle. Every method that writes does so in the store, shared by replicas. */
export interface AcmeService {
  meta(): AcmeMeta;
  /** A fresh nonce (any replica accepts it once). */
  newNonce(): Promise<string>;
  /** Spends a nonce: false when it is unknown, expired or spent (the transport answers badNonce). */
  spendNonce(nonce: string): Promise<boolean>;

  /** The account whose key has this thumbprint, if any (any status). */
  accountByKey(thumbprint: string): Promise<AcmeAccount | undefined>;
  /** The account with this id, if any (any status). */
  account(id: string): Promise<AcmeAccount | undefined>;
  /**
   * newAccount: creates the account for `jwk`, or returns the existing one (`created: false`).
   * `eab` is the externalAccountBinding JWS (checked here: HMAC, kid, its payload is `jwk`);
   * required when the config says so (ACME_EXTERNAL_ACCOUNT_REQUIRED). An EAB key binds one account.
   */
  newAccount(o: { jwk: JsonWebKey; thumbprint: string; contact: string[]; termsOfServiceAgreed: boolean; eab?: FlattenedJws; accountUrl: string }): Promise<{ account: AcmeAccount; created: boolean }>;
  /** Updates contact, or deactivates (status 'deactivated'; final). */
  updateAccount(accountId: string, o: { contact?: string[]; status?: 'deactivated' }): Promise<AcmeAccount>;
  /** Key rollover (RFC 8555 section 7.3.5): the transport has checked the inner JWS; ACME_KEY_IN_USE when another account has the new key. */
  changeKey(accountId: string, newJwk: JsonWebKey, newThumbprint: string): Promise<AcmeAccount>;
  /** The account's orders (ids), newest first, for the `orders` list. */
  orders(accountId: string): Promise<string[]>;

  /** newOrder: identifiers checked against the policy (compound rejectedIdentifier), rate limit per account. */
  newOrder(accountId: string, o: { identifiers: AcmeIdentifier[]; notBefore?: Date; notAfter?: Date; replaces?: string }): Promise<AcmeOrder>;
  order(accountId: string, orderId: string): Promise<AcmeOrder>;
  authorization(accountId: string, authzId: string): Promise<AcmeAuthorization>;
  deactivateAuthorization(accountId: string, authzId: string): Promise<AcmeAuthorization>;
  /**
   * The client says a challenge is ready: validation starts (asynchronously, with bounded retries)
   * and the challenge is returned as it is now (processing). Idempotent while processing or done.
   */
  respondChallenge(accountId: string, challengeId: string): Promise<{ challenge: AcmeChallenge; authorizationId: string }>;
  /**
   * finalize: the CSR (DER) must name exactly the order's identifiers; issued through the
   * authority's pipeline (policy, lint, persisted before this returns). Returns the order (valid).
   */
  finalize(accountId: string, orderId: string, csrDer: Buffer): Promise<AcmeOrder>;
  /** The certificate of a valid order: `alternate` 0 is the default chain. */
  certificate(accountId: string, certificateId: string, alternate: number): Promise<AcmeCertificateChain>;
  /**
   * revokeCert: by the account that ordered it (or holds authorizations for all its names), or by
   * the certificate's own key (`by.jwk`). The transport has verified the JWS with that key.
   */
  revoke(o: { certificateDer: Buffer; reason?: number; by: { accountId: string } | { jwk: JsonWebKey } }): Promise<void>;
  /** RFC 9773: the window for a certificate id (base64url(AKI keyIdentifier) "." base64url(serial)). */
  renewalInfo(certId: string): Promise<RenewalInfo>;
}
