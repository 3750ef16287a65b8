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
  details: Record<string, unknown>;
  prevHash: string;
}

/** SHA-256 over the canonical form of an entry and the previous hash, hex. */
export function auditHash(e: AuditHashInput): string {
  const canonical = JSON.stringify([e.seq, e.at.toISOString(), e.actor, e.action, e.target, canonicalize(e.details), e.prevHash]);
  return crypto.createHash('sha256').update(canonical).digest('hex');
}

function canonicalize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonicalize);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonicalize((v as Record<string, unknown>)[k])]));
  }
  return v;
}
