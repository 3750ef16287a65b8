/**
 * The storage the authority needs, declared here by its consumer (STYLE.md). src/store implements
 * it for SQLite (and PostgreSQL). Certificates are keyed by (issuer key id, serial).
 */
import type { Role } from '../core/certificate-template.ts';
import type { RevocationReason } from '../core/crl.ts';
import type { SubjectAltNames } from '../core/names.ts';
import type { AcmeStore } from './acme/acme-store.ts';

/** A certificate as the inventory keeps it. */
export interface CertificateRecord {
  /** Issuer's subject key identifier, hex. */
  issuerKeyId: string;
  /** Serial, lowercase hex. */
  serial: string;
  role: Role;
  subject: string;
  /** The SPIFFE identity for client certificates. */
  identity?: string;
  names: SubjectAltNames;
  notBefore: Date;
  notAfter: Date;
  fingerprint: string;
  der: Buffer;
  /** Serial of the certificate this one renews. */
  renewedFrom?: string;
  issuedAt: Date;
  /** Who asked for it (admin identity, token subject, `cli`); goes into the audit entry. */
  issuedBy: string;
}

/** A stored certificate with its status. */
export interface StoredCertificate extends CertificateRecord {
  status: 'valid' | 'revoked';
  revokedAt?: Date;
  reason?: RevocationReason;
}

/** One audit entry. `hash` chains it to the previous entry. */
export interface AuditEntry {
  seq: number;
  at: Date;
  actor: string;
  action: string;
  /** What the entry is about (a serial, a CA name). */
  target: string;
  details: Record<string, unknown>;
  /** `details` exactly as stored: the hash covers this text. */
  detailsJson: string;
  prevHash: string;
  hash: string;
}

/** What an audit entry says before it is chained. */
export type AuditInput = Pick<AuditEntry, 'actor' | 'action' | 'target' | 'details'> & { at?: Date };

/** A revocation to record. */
export interface RevocationInput {
  issuerKeyId: string;
  serial: string;
  revokedAt: Date;
  reason: RevocationReason;
  /** The pre-encoded CRL entry (see core/crl.ts encodeRevokedEntry). */
  crlEntry: Buffer;
  /**
   * Also revoke, with the same time and reason, every certificate renewed from this one, directly
   * or not, that is still valid and expires after this time (the authority passes it for every
   * reason but superseded). When the certificate itself is already revoked, those descendants are
   * still revoked, and CERT_ALREADY_REVOKED is thrown only when there are none.
   */
  renewalsExpiringAfter?: Date;
}

/** What a revocation recorded: the certificate, and the renewals of it revoked with it. */
export interface RevocationRecorded extends StoredCertificate {
  /** Certificates renewed from it (directly or not) revoked in the same transaction, oldest first. */
  covered: StoredCertificate[];
}

/** A renewal to record (see {@link IssuanceStore.recordRenewal}). */
export interface RenewalInput {
  /** The new certificate; `renewedFrom` names the certificate it renews. */
  record: CertificateRecord & { renewedFrom: string };
  /**
   * Refuse with RENEWAL_TOO_SOON (field `retryAfter`: seconds until one of them leaves the window)
   * when the certificate renewed already has `max` renewals issued in the `windowSeconds` before
   * `record.issuedAt`.
   */
  limit: { max: number; windowSeconds: number };
  /**
   * The other valid certificates of the lineage (all but the one renewed and the new one) that
   * expire after this time are revoked, reason superseded, at `record.issuedAt`.
   */
  supersedeExpiringAfter: Date;
}

/** A one-time token to spend: see {@link IssuanceStore.recordEnrollment} and {@link TokenStore.consumeToken}. */
export interface TokenSpend {
  jti: string;
  /** When the token expires: its entry may be forgotten after that (it is refused for its age). */
  expiresAt: Date;
  /** Audit actor of the `token-used` entry. */
  actor: string;
}

/** A revocation as replicas learn of it. */
export interface RevocationEvent {
  issuerKeyId: string;
  serial: string;
  revokedAt: Date;
  reason: RevocationReason;
}

/** Inventory filters. */
export interface ListFilter {
  role?: Role;
  status?: 'valid' | 'revoked';
  /** Only certificates whose notAfter is before this time. */
  expiringBefore?: Date;
  /** Leave out certificates that expired before this time. */
  notExpiredAt?: Date;
  identity?: string;
  limit?: number;
}

/*
 * The store, cut along its consumers (STYLE.md: the consumer declares the interface). Each part of
 * the authority and each tool outside it takes the smallest of these it needs; {@link CaStore} is
 * all of them, which the SQLite and PostgreSQL stores implement. Every method that writes does so
 * in one transaction with its audit entry.
 */

/** Recording certificates as they are issued: the authority's issue, enroll and renew paths. */
export interface IssuanceStore {
  /**
   * Records issued certificates and their audit entries in one transaction. Renewals go through
   * {@link IssuanceStore.recordRenewal} (their checks and the lineage bound need a transaction of their own).
   */
  recordIssued(records: CertificateRecord[]): Promise<void>;
  /**
   * Records a certificate enrolled with a one-time token and spends the token, in one transaction
   * with both audit entries: returns false, recording nothing, when the token was spent before.
   * So a token is never spent without its certificate recorded, nor two certificates recorded for
   * one token, across replicas.
   */
  recordEnrollment(record: CertificateRecord, token: TokenSpend): Promise<boolean>;
  /**
   * Records a renewal in one transaction: checks that the certificate renewed is in the inventory
   * (CERT_NOT_FOUND) and still valid (CERT_REVOKED: a revocation that covered it committed first),
   * applies the per-certificate interval (RENEWAL_TOO_SOON, with `retryAfter` seconds), inserts
   * the new certificate with its audit entry, and revokes as superseded what the lineage holds
   * beyond the renewed certificate and the new one. Renewals and revocations of one lineage are
   * serialized (a transaction-scoped lock in PostgreSQL; SQLite's write lock), so the bound holds
   * across replicas. Returns the certificates superseded.
   */
  recordRenewal(r: RenewalInput): Promise<{ superseded: StoredCertificate[] }>;
}

/** Recording revocations and reading what a CRL lists: the authority's revoke path and its CRLs. */
export interface RevocationStore {
  /**
   * Marks a certificate revoked, stores its CRL entry and the audit entry, in one transaction;
   * with `renewalsExpiringAfter`, its renewals too (each with its CRL and audit entry, action
   * `revoke`, details `coveredBy`). Serialized with renewals of the same lineage across replicas.
   */
  recordRevocation(r: RevocationInput, actor: string): Promise<RevocationRecorded>;
  /** The pre-encoded CRL entries of one issuer, without those of certificates expired at `now`. */
  crlEntries(issuerKeyId: string, now: Date): Promise<Buffer[]>;
  /** Allocates the next CRL number for an issuer. */
  nextCrlNumber(issuerKeyId: string): Promise<bigint>;
}

/** The revocations other replicas recorded, as the revocation feed follows them. */
export interface RevocationLog {
  /**
   * Revocations recorded after `cursor` (an audit sequence number), oldest first, and the new
   * cursor. Replicas poll this to update their OCSP and CRL answers within seconds.
   */
  revocationsSince(cursor: number, limit?: number): Promise<{ cursor: number; items: RevocationEvent[] }>;
}

/** The audit log: appending entries of its own, and reading it all (`mutual audit verify`). */
export interface AuditStore {
  /** Appends an audit entry (for actions other than issue/revoke). */
  audit(entry: AuditInput): Promise<void>;
  /** Reads the audit log in order. */
  auditEntries(): AsyncIterable<AuditEntry>;
}

/** Spending one-time tokens. */
export interface TokenStore {
  /**
   * Marks a one-time token used. Returns false when it was used before (a replay). Entries can be
   * forgotten after `expiresAt`, when the token is refused for its age anyway.
   */
  consumeToken(jti: string, expiresAt: Date, actor: string): Promise<boolean>;
}

/** Reading the inventory: admin authentication, the monitor, doctor, the admin API. */
export interface InventoryQueries {
  getCertificate(serial: string, issuerKeyId?: string): Promise<StoredCertificate | undefined>;
  listCertificates(filter: ListFilter): Promise<StoredCertificate[]>;
}

/** Scheduled jobs that one replica at a time runs (CRL refresh). */
export interface JobLock {
  /**
   * Runs `fn` only if no other replica holds the named job lock (PostgreSQL advisory lock; the
   * embedded store has one process, so it always runs). Returns false when skipped.
   */
  withJobLock(name: string, fn: () => Promise<void>): Promise<boolean>;
}

/**
 * The whole store the authority opens: every part above, the ACME lifecycle's tables (in the same
 * database, so finalize records a certificate and its order in one transaction), and closing it.
 */
export interface CaStore extends IssuanceStore, RevocationStore, RevocationLog, AuditStore, TokenStore, InventoryQueries, JobLock {
  readonly acme: AcmeStore;
  close(): Promise<void>;
}
