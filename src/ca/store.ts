/**
 * The storage the authority needs, declared here by its consumer (STYLE.md). src/store implements
 * it for SQLite (and PostgreSQL). Certificates are keyed by (issuer key id, serial).
 */
import type { Role } from '../core/certificate-template.ts';
import type { RevocationReason } from '../core/crl.ts';
import type { SubjectAltNames } from '../core/names.ts';

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

/** The store the authority uses. Every method that writes does so in one transaction with its audit entry. */
export interface CaStore {
  /** Records issued certificates and their audit entries in one transaction. */
  recordIssued(records: CertificateRecord[]): Promise<void>;
  /** Marks a certificate revoked, stores its CRL entry and the audit entry, in one transaction. */
  recordRevocation(r: RevocationInput, actor: string): Promise<StoredCertificate>;
  getCertificate(serial: string, issuerKeyId?: string): Promise<StoredCertificate | undefined>;
  listCertificates(filter: ListFilter): Promise<StoredCertificate[]>;
  /** The pre-encoded CRL entries of one issuer, without those of certificates expired at `now`. */
  crlEntries(issuerKeyId: string, now: Date): Promise<Buffer[]>;
  /** Allocates the next CRL number for an issuer. */
  nextCrlNumber(issuerKeyId: string): Promise<bigint>;
  /** Appends an audit entry (for actions other than issue/revoke). */
  audit(entry: AuditInput): Promise<void>;
  /**
   * Marks a one-time token used. Returns false when it was used before (a replay). Entries can be
   * forgotten after `expiresAt`, when the token is refused for its age anyway.
   */
  consumeToken(jti: string, expiresAt: Date, actor: string): Promise<boolean>;
  /**
   * Revocations recorded after `cursor` (an audit sequence number), oldest first, and the new
   * cursor. Replicas poll this to update their OCSP and CRL answers within seconds.
   */
  revocationsSince(cursor: number, limit?: number): Promise<{ cursor: number; items: RevocationEvent[] }>;
  /**
   * Runs `fn` only if no other replica holds the named job lock (PostgreSQL advisory lock; the
   * embedded store has one process, so it always runs). Returns false when skipped.
   */
  withJobLock(name: string, fn: () => Promise<void>): Promise<boolean>;
  /** Reads the audit log in order. */
  auditEntries(): AsyncIterable<AuditEntry>;
  close(): Promise<void>;
}
