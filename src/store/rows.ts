/**
 * Row mapping shared by the SQLite and PostgreSQL stores: both keep times as epoch seconds,
 * serials as raw bytes, names and audit details as JSON text, so one mapping serves both.
 */
import crypto from 'node:crypto';
import { reasonName } from '../core/crl.ts';
import type { Role } from '../core/certificate-template.ts';
import type { AuditEntry, StoredCertificate } from '../ca/store.ts';

/** A database row. */
export type Row = Record<string, unknown>;

/** Epoch seconds of a date. */
export const sec = (d: Date): number => Math.floor(d.getTime() / 1000);
/** A date from epoch seconds (SQLite numbers, PostgreSQL bigint strings). */
export const date = (s: number | bigint | string | null): Date | undefined => (s === null ? undefined : new Date(Number(s) * 1000));
/** The bytes of a hex serial (an odd-length one gets its leading zero back). */
export const serialBytes = (hex: string): Buffer => Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex');

/** A certificates row as the inventory returns it. */
export function toStored(r: Row): StoredCertificate {
  const der = Buffer.from(r.der as Uint8Array);
  return {
    issuerKeyId: r.issuer_kid as string,
    serial: Buffer.from(r.serial as Uint8Array).toString('hex'),
    role: r.role as Role,
    subject: r.subject as string,
    identity: (r.identity as string | null) ?? undefined,
    names: JSON.parse(r.names as string),
    notBefore: date(r.not_before as number)!,
    notAfter: date(r.not_after as number)!,
    fingerprint: crypto.hash('sha256', der, 'hex'),
    der,
    renewedFrom: (r.renewed_from as string | null) ?? undefined,
    issuedAt: date(r.issued_at as number)!,
    issuedBy: r.issued_by as string,
    status: r.status as 'valid' | 'revoked',
    revokedAt: date(r.revoked_at as number | null),
    reason: r.reason === null ? undefined : reasonName(Number(r.reason)),
  };
}

/** An audit row. */
export function toAuditEntry(r: Row): AuditEntry {
  return {
    seq: Number(r.seq),
    at: date(r.at as number)!,
    actor: r.actor as string,
    action: r.action as string,
    target: r.target as string,
    details: JSON.parse(r.details as string),
    detailsJson: r.details as string,
    prevHash: r.prev_hash as string,
    hash: r.hash as string,
  };
}
