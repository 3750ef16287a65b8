/**
 * Enrollment with one-time tokens: an admin mints a token bound to names (and optionally to the
 * lifetime of the certificate it enrolls); a new host presents it once with a CSR. The policy is
 * here, not in the server: which names a token may carry, that the certificate's names are the
 * token's, and that the authority spends the token in the transaction that records the
 * certificate, after every check (a request that fails a check does not burn it; a replay gets
 * TOKEN_REPLAYED; a token is never spent without its certificate).
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { Signer } from '../core/signer.ts';
import type { ParsedCsr } from '../core/csr.ts';
import type { SubjectAltNames } from '../core/names.ts';
import { readPemOrDer } from '../core/pem.ts';
import { checkNames } from '../core/policy.ts';
import { checkLifetime, type CertificateAuthority, type IssueResult, type LeafRole } from './authority.ts';
import { profileLifetimes } from './config.ts';
import { checkTokenNames, mintToken, verifyToken, type TokenClaims } from './tokens.ts';

/** Options for {@link Enrollment}. */
export interface EnrollmentOptions {
  ca: CertificateAuthority;
  /** The token signing key, as a Signer (see loadTokenKey). */
  tokenKey: Signer;
  /** Default: the CA's clock. */
  now?: () => Date;
}

/** What an admin asks a token for. */
export interface MintRequest {
  names: SubjectAltNames;
  ttlSeconds: number;
  /** Lifetime of the certificate it enrolls (checked against the profile); absent: the profile's default. */
  certificateTtlSeconds?: number;
  /** The admin (audit actor). */
  actor: string;
}

/** See the module comment. */
export class Enrollment {
  readonly #ca: CertificateAuthority;
  readonly #key: Signer;
  readonly #public: KeyObject;
  readonly #now: () => Date;
  /** SHA-256 of the root certificate (DER), hex: carried by every token so a new host can pin the root. Follows a reload (root rotation). */
  get rootFingerprint(): string {
    return crypto.createHash('sha256').update(readPemOrDer(this.#ca.rootPem, ['CERTIFICATE'])).digest('hex');
  }

  constructor(o: EnrollmentOptions) {
    this.#ca = o.ca;
    this.#key = o.tokenKey;
    this.#public = o.tokenKey.publicKey;
    this.#now = o.now ?? o.ca.now;
  }

  /**
   * Mints a token: the names must pass the CA's policy for the role they imply (a spiffe:// URI:
   * client, else server), and a certificate lifetime the profile's bounds. Audited.
   */
  async mint(r: MintRequest): Promise<{ token: string; expiresAt: Date }> {
    const role: LeafRole = r.names.uri.length ? 'client' : 'server';
    checkNames(this.#ca.policy, r.names, role);
    if (r.certificateTtlSeconds !== undefined) checkLifetime(role, r.certificateTtlSeconds, profileLifetimes(this.#ca.config.profiles[role]).maxSeconds);
    const t = await mintToken({
      key: this.#key, names: r.names, ttlSeconds: r.ttlSeconds, rootFingerprint: this.rootFingerprint, madeBy: r.actor, now: this.#now(), certLifetimeSeconds: r.certificateTtlSeconds,
    });
    const lifetime = r.certificateTtlSeconds !== undefined ? { certificateTtlSeconds: r.certificateTtlSeconds } : {};
    await this.#ca.store.audit({ actor: r.actor, action: 'token', target: t.jti, details: { names: r.names, expiresAt: t.expiresAt.toISOString(), ...lifetime } });
    return t;
  }

  /** Verifies a token (signature, audience, age); it is not spent until {@link enroll} signs. */
  verify(token: string): Promise<TokenClaims> {
    return verifyToken(token, this.#public, this.#now());
  }

  /**
   * Enrolls a CSR (parsed once, by the caller) with verified token claims: the names are the
   * CSR's (or the token's when the CSR names none) and must be the token's; the lifetime is the
   * token's (or the profile's default). The authority spends the token as it records the certificate.
   */
  async enroll(claims: TokenClaims, csr: ParsedCsr): Promise<IssueResult> {
    const names = csr.names.dns.length + csr.names.ip.length + csr.names.uri.length ? csr.names : claims.names;
    checkTokenNames(claims, names);
    return this.#ca.issue({
      role: claims.role, csr, names, ttlSeconds: claims.certLifetimeSeconds, actor: `token:${claims.jti}`, now: this.#now(),
      spendToken: { jti: claims.jti, expiresAt: claims.expiresAt, actor: `token:${claims.subject}` },
    });
  }
}
