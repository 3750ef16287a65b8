/**
 * The audit log's hash chain: each entry's hash covers its content and the previous entry's hash,
 * so changing or removing an entry breaks every hash after it.
 */
import crypto from 'node:crypto';

/** The hash before the first entry. */
export const AUDIT_GENESIS = '0'.repeat(64);

/** The fields an audit hash covers. */
export interface AuditHashInput {
  seq: number;
  at: Date;
  actor: string;
  action: string;
  target: string;
  /** The details as stored (JSON text): hashing the stored text needs no canonical form. */
  details: string;
  prevHash: string;
}

/** SHA-256 over the canonical form of an entry and the previous hash, hex. */
export function auditHash(e: AuditHashInput): string {
  const text = JSON.stringify([e.seq, e.at.toISOString(), e.actor, e.action, e.target, e.details, e.prevHash]);
  return crypto.hash('sha256', text, 'hex');
}
