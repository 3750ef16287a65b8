/**
 * Row mapping shared by the SQLite and PostgreSQL stores: both keep times as epoch seconds,
 * serials as raw bytes, names and audit details as JSON text, so one mapping serves both.
 */
import crypto from 'node:crypto';
import { reasonName } from '../core/crl.ts';
import { MutualError } from '../core/errors.ts';
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

/**
 * A certificates row as the inventory returns it. A row whose bytes, names or times are not what
 * mutual writes (the database was edited or damaged) is STORE_CORRUPT naming the certificate, not
 * a parse error; `audit verify` reports it as tampering.
 */
export function toStored(r: Row): StoredCertificate {
  if (!(r.serial instanceof Uint8Array)) throw corrupt(undefined, 'its serial is not bytes');
  const serial = Buffer.from(r.serial).toString('hex');
  if (!(r.der instanceof Uint8Array)) throw corrupt(serial, 'its certificate is not bytes');
  const der = Buffer.from(r.der);
  let names: unknown;
  try {
    names = JSON.parse(r.names as string);
  } catch {
    throw corrupt(serial, 'its names are not JSON');
  }
  if (names === null || typeof names !== 'object') throw corrupt(serial, 'its names are not a JSON object');
  const time = (field: string): Date => {
    const d = date(r[field] as number);
    if (!d || Number.isNaN(d.getTime())) throw corrupt(serial, `${field} is not a time`);
    return d;
  };
  return {
    issuerKeyId: r.issuer_kid as string,
    serial,
    role: r.role as Role,
    subject: r.subject as string,
    identity: (r.identity as string | null) ?? undefined,
    names: names as StoredCertificate['names'],
    notBefore: time('not_before'),
    notAfter: time('not_after'),
    fingerprint: crypto.hash('sha256', der, 'hex'),
    der,
    renewedFrom: (r.renewed_from as string | null) ?? undefined,
    issuedAt: time('issued_at'),
    issuedBy: r.issued_by as string,
    status: r.status as 'valid' | 'revoked',
    revokedAt: r.revoked_at === null || r.revoked_at === undefined ? undefined : time('revoked_at'),
    reason: r.reason === null ? undefined : reasonName(Number(r.reason)),
  };
}

function corrupt(serial: string | undefined, what: string): MutualError {
  return new MutualError('STORE_CORRUPT', { detail: `certificate ${serial ?? '(serial unreadable)'}: ${what}`, ...(serial === undefined ? {} : { serial }) });
}

/** The largest time a JavaScript Date holds, in seconds (ECMA-262 21.4.1.1: 8.64e15 ms). */
const MAX_DATE_SECONDS = 8.64e12;

/**
 * An audit row, checked as it is read: every field must have the type mutual writes. A row edited
 * by hand (details that are no longer JSON, a time that is text, a NULL hash) is tampering, reported
 * as AUDIT_TAMPERED naming the entry, never a parse error: `audit verify` exists to say this.
 */
export function toAuditEntry(r: Row): AuditEntry {
  const seq = Number(r.seq);
  if (!Number.isSafeInteger(seq)) throw tampered(`an audit entry has the sequence number ${JSON.stringify(String(r.seq)).slice(0, 40)}`, undefined);
  const text = (field: string): string => {
    const v = r[field];
    if (typeof v !== 'string') throw tampered(`entry ${seq}: ${field} is not text`, seq);
    return v;
  };
  // SQLite gives a number (or anything an editor put there), PostgreSQL's bigint a string of digits.
  const numeric = typeof r.at === 'number' || typeof r.at === 'bigint' || (typeof r.at === 'string' && /^-?\d{1,16}$/.test(r.at));
  const at = numeric ? Number(r.at) : NaN;
  if (!Number.isSafeInteger(at) || Math.abs(at) > MAX_DATE_SECONDS) throw tampered(`entry ${seq}: its time is not a number of seconds a date can hold`, seq);
  const detailsJson = text('details');
  let details: unknown;
  try {
    details = JSON.parse(detailsJson);
  } catch {
    throw tampered(`entry ${seq}: its details are not JSON`, seq);
  }
  if (details === null || typeof details !== 'object' || Array.isArray(details)) throw tampered(`entry ${seq}: its details are not a JSON object`, seq);
  return {
    seq,
    at: date(at)!,
    actor: text('actor'),
    action: text('action'),
    target: text('target'),
    details: details as Record<string, unknown>,
    detailsJson,
    prevHash: text('prev_hash'),
    hash: text('hash'),
  };
}

function tampered(detail: string, seq: number | undefined): MutualError {
  return new MutualError('AUDIT_TAMPERED', { detail, ...(seq === undefined ? {} : { seq }) });
}
