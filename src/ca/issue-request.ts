/**
 * What an issuance request is, and the checks on it that need no store and no signature: the
 * subject's key (a CSR, checked and its signature verified; a key proved another way; or a key made
 * for the caller), the lifetime asked for, and the CN. CertificateAuthority.issue runs them before
 * its policy, lint, signing and persistence steps.
 */
import type { KeyObject } from 'node:crypto';
import { describeSpki, generateKeyPair, spkiDer, type KeyType } from '../core/algorithms.ts';
import { parseCsr, verifyCsr, verifyCsrOffloaded, type ParsedCsr } from '../core/csr.ts';
import { formatDuration } from '../core/duration.ts';
import { MutualError } from '../core/errors.ts';
import type { SubjectAltNames } from '../core/names.ts';
import { OID } from '../core/oids.ts';
import { readPemOrDer } from '../core/pem.ts';
import { profileLifetimes, type CaConfig } from './config.ts';
import type { LeafRole } from './load-intermediates.ts';
import type { CertificateRecord, StoredCertificate, TokenSpend } from './store.ts';
import { MAX_RENEWAL_GRACE_SECONDS } from './limits.ts';

/**
 * Shortest certificate lifetime a person or a token may ask for (`--ttl 5m`): below it a
 * certificate would expire before an agent renewing at 2/3 of its lifetime could replace it
 * across a CA restart. (`lifetimeSeconds`, for the server's own certificate and tests, is not held to it.)
 */
export const MIN_CERT_LIFETIME_SECONDS = 300;

/**
 * Renewals of one certificate allowed within {@link RENEWAL_WINDOW_SECONDS}. More than one: a
 * client (an agent killed after the CA answered, before it saved the certificate) retries at
 * once, and each retry supersedes the certificate it lost. A loop renewing the same certificate
 * is refused with RENEWAL_TOO_SOON and Retry-After (300 renewals in 7 s were all issued before).
 */
export const RENEWALS_PER_WINDOW = 3;

/**
 * The window of {@link RENEWALS_PER_WINDOW}: short enough for the 5-minute certificates
 * ({@link MIN_CERT_LIFETIME_SECONDS}) renewed at 2/3 of their lifetime.
 */
export const RENEWAL_WINDOW_SECONDS = 60;

/** Backdating of notBefore, for clock skew between hosts. */
export const BACKDATE_MS = 60_000;

/** See ./limits.ts (kept there so option parsing need not load the authority). */
export { MAX_RENEWAL_GRACE_SECONDS };

/** An issuance request. */
export interface IssueRequest {
  role: LeafRole;
  /**
   * A CSR (PEM or DER, or already parsed by the caller, so a server parses it once). Without one,
   * a key is made for the caller and returned.
   */
  csr?: Uint8Array | string | ParsedCsr;
  /** Key type when no CSR is given (default from config: p256). */
  keyType?: KeyType;
  /**
   * The subject's SubjectPublicKeyInfo when the caller already proved possession another way (a
   * renewal over mTLS re-certifies the key the TLS handshake proved). Not for untrusted input.
   */
  spki?: Buffer;
  /** Names to issue for; with a CSR, defaults to the CSR's. */
  names?: SubjectAltNames;
  /** Lifetime in days (default: the profile's), up to the profile's maximum. */
  days?: number;
  /**
   * Lifetime chosen by a person (`--ttl 8h`) or carried by an enrollment token, in seconds: from
   * {@link MIN_CERT_LIFETIME_SECONDS} (POLICY_VALIDITY_TOO_SHORT) to the profile's maximum
   * (POLICY_VALIDITY_TOO_LONG). Wins over `days`.
   */
  ttlSeconds?: number;
  /** Exact lifetime in seconds, at least 1, for programmatic callers (the server's own certificate, tests). */
  lifetimeSeconds?: number;
  /** Who asks (audit actor). */
  actor?: string;
  /**
   * Serial of the certificate this renews: the renewal is recorded with the lineage bound
   * ({@link CaStore.recordRenewal}): RENEWAL_TOO_SOON past {@link RENEWALS_PER_WINDOW} renewals
   * of that certificate within {@link RENEWAL_WINDOW_SECONDS}, and what the lineage holds beyond that certificate and
   * the new one is revoked as superseded. Use {@link CertificateAuthority.renew}, which checks the
   * certificate renewed first.
   */
  renewedFrom?: string;
  /** With `renewedFrom`: certificates of the lineage expired longer ago than this are left alone (default 0). */
  renewalGraceSeconds?: number;
  /**
   * A one-time enrollment token to spend: spent in the store in the same transaction that
   * records the certificate ({@link CaStore.recordEnrollment}), after every check (CSR, policy,
   * lint), so a request that fails a check does not burn it, a token is never spent without its
   * certificate, and a token spent before stops the issuance with TOKEN_REPLAYED.
   */
  spendToken?: TokenSpend;
  /**
   * Records the certificate (with its audit entry) in the caller's own transaction instead of
   * group commit, after every check and the signature: ACME's finalize commits the certificate and
   * the order that hands it out together (AcmeStore.completeFinalize). Not with `spendToken` or
   * `renewedFrom`. When it throws, nothing is returned and the signed certificate is dropped.
   */
  persist?: (record: CertificateRecord) => Promise<void>;
  now?: Date;
}

/** What issuance returns. */
export interface IssueResult {
  serial: string;
  certificate: Buffer;
  certificatePem: string;
  /** The issuing CA certificate (PEM). */
  chainPem: string;
  /** Certificate + issuing CA (PEM). */
  fullchainPem: string;
  /** The key made for the caller, when no CSR was given. */
  privateKey?: KeyObject;
  notAfter: Date;
  identity?: string;
  /** For a renewal: the certificates of the lineage it revoked as superseded. */
  superseded?: StoredCertificate[];
}

/** A renewal request: see {@link CertificateAuthority.renew}. */
export interface RenewRequest {
  /** The certificate presented (DER), whose key the caller proved it holds (the mTLS handshake). */
  certificate: Buffer;
  /** A CSR for a new key (PEM, DER or parsed); without one the same key is certified again. */
  csr?: Uint8Array | string | ParsedCsr;
  /** Renewal of a certificate expired less than this long ago (default 0: off; at most {@link MAX_RENEWAL_GRACE_SECONDS}). */
  graceSeconds?: number;
  now?: Date;
}

/** What a revocation did. */
export interface RevokeResult extends StoredCertificate {
  /**
   * Certificates renewed from it, directly or not, revoked with it (same time and reason): a
   * revocation for any reason but superseded covers them, since they were authorized by it.
   */
  covered: StoredCertificate[];
}

/** A CSR the caller already parsed (a byte array or PEM text is not). */
function isParsedCsr(csr: Uint8Array | string | ParsedCsr): csr is ParsedCsr {
  return typeof csr === 'object' && !(csr instanceof Uint8Array);
}

/** The subject's key for a request, and the names a CSR asks for. */
export interface SubjectKey {
  /** DER SubjectPublicKeyInfo to certify. */
  spki: Buffer;
  /** The key made for the caller, when the request brought none. */
  privateKey?: KeyObject;
  /** The CSR's names, when there is a CSR. */
  csrNames?: SubjectAltNames;
}

/**
 * The key a request certifies: its CSR's (which must not ask for a CA certificate or another EKU
 * than the role's, must hold a key mutual accepts, and must be signed by it: checked in that order,
 * so a weak key is refused before the signature work), the SPKI it proved another way, or a new key
 * of `keyType` made for the caller. `offload` verifies the CSR on the thread pool; without it the
 * answer is not a Promise, so the issuance hot path takes no extra async hop.
 *
 * @throws MutualError `CSR_FORBIDDEN_EXTENSION`, `KEY_WEAK`, `CSR_BAD_SIGNATURE`, the CSR_* and
 *   PEM_* errors of reading it.
 */
export function subjectKey(req: Pick<IssueRequest, 'role' | 'csr' | 'spki'>, keyType: KeyType, offload: boolean): SubjectKey | Promise<SubjectKey> {
  if (req.csr !== undefined) {
    const csr = isParsedCsr(req.csr) ? req.csr : parseCsr(readPemOrDer(req.csr, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']));
    if (csr.requestsCa) throw new MutualError('CSR_FORBIDDEN_EXTENSION', { detail: 'the CSR asks for a CA certificate' });
    const wanted = req.role === 'server' ? OID.serverAuth : OID.clientAuth;
    const other = csr.requestedEku.find((e) => e !== wanted);
    if (other) throw new MutualError('CSR_FORBIDDEN_EXTENSION', { detail: `the CSR asks for extended key usage ${other}; a ${req.role} certificate has ${wanted} only` });
    describeSpki(csr.spki);
    const key = { spki: csr.spki, csrNames: csr.names };
    if (offload) return verifyCsrOffloaded(csr).then(() => key);
    verifyCsr(csr);
    return key;
  }
  if (req.spki) {
    describeSpki(req.spki);
    return { spki: req.spki };
  }
  const kp = generateKeyPair(keyType);
  return { spki: spkiDer(kp.publicKey), privateKey: kp.privateKey };
}

/**
 * The lifetime of a request in ms: `ttlSeconds` (checked with {@link checkLifetime}), else
 * `lifetimeSeconds`, else `days`, else the profile's default; never more than the profile's maximum.
 *
 * @throws MutualError `POLICY_VALIDITY_TOO_SHORT`, `POLICY_VALIDITY_TOO_LONG`.
 */
export function leafLifetimeMs(req: Pick<IssueRequest, 'role' | 'ttlSeconds' | 'lifetimeSeconds' | 'days'>, profile: CaConfig['profiles'][LeafRole]): number {
  const limits = profileLifetimes(profile);
  const lifetimeMs = req.ttlSeconds !== undefined ? checkLifetime(req.role, req.ttlSeconds, limits.maxSeconds) * 1000
    : req.lifetimeSeconds !== undefined ? req.lifetimeSeconds * 1000 : req.days !== undefined ? req.days * 86_400_000 : limits.defaultSeconds * 1000;
  if (!(lifetimeMs >= 1000) || lifetimeMs > limits.maxSeconds * 1000) {
    throw new MutualError('POLICY_VALIDITY_TOO_LONG', { detail: `the ${req.role} profile allows up to ${formatDuration(limits.maxSeconds)}` });
  }
  return lifetimeMs;
}

/**
 * Checks a lifetime a person or a token chose, in seconds: a whole number from
 * {@link MIN_CERT_LIFETIME_SECONDS} (POLICY_VALIDITY_TOO_SHORT) to the profile's `maxSeconds`
 * (POLICY_VALIDITY_TOO_LONG; see profileLifetimes). Returns it.
 */
export function checkLifetime(role: LeafRole, seconds: number, maxSeconds: number): number {
  if (!Number.isInteger(seconds) || seconds < MIN_CERT_LIFETIME_SECONDS) {
    throw new MutualError('POLICY_VALIDITY_TOO_SHORT', { detail: `${seconds} s; certificates live ${formatDuration(MIN_CERT_LIFETIME_SECONDS)} at least` });
  }
  if (seconds > maxSeconds) throw new MutualError('POLICY_VALIDITY_TOO_LONG', { detail: `${formatDuration(seconds)}; the ${role} profile allows ${formatDuration(maxSeconds)} at most` });
  return seconds;
}

/**
 * The CN of a leaf, for tools that only read CNs: the service name of a client, the first DNS
 * name of a server. Left out when it would look like a host name that is not among the DNS SANs
 * (an IP, or a service with a dot): verifiers check such a CN against the intermediate's DNS
 * name constraints when there is no DNS SAN, and it would fail there.
 */
export function leafCommonName(role: LeafRole, names: SubjectAltNames): string | undefined {
  if (role === 'server') return names.dns[0];
  const uri = names.uri[0];
  const service = uri.slice(uri.lastIndexOf('/') + 1);
  return service.includes('.') ? undefined : service;
}

