/**
 * Verifying the audit log: every entry's hash must recompute, and chain to the one before it.
 */
import { AUDIT_GENESIS, auditHash } from '../core/audit-hash.ts';
import { MutualError } from '../core/errors.ts';
import type { CaStore } from './store.ts';

/** Walks the whole log; throws AUDIT_TAMPERED at the first broken link. */
export async function verifyAuditLog(store: Pick<CaStore, 'auditEntries'>): Promise<{ entries: number; head: string }> {
  let prev = AUDIT_GENESIS;
  let expected = 1;
  for await (const e of store.auditEntries()) {
    if (e.seq !== expected) throw new MutualError('AUDIT_TAMPERED', { detail: `entry ${expected} is missing (found ${e.seq})`, seq: expected });
    if (e.prevHash !== prev) throw new MutualError('AUDIT_TAMPERED', { detail: `entry ${e.seq} does not chain to entry ${e.seq - 1}`, seq: e.seq });
    if (auditHash({ ...e, details: e.detailsJson }) !== e.hash) throw new MutualError('AUDIT_TAMPERED', { detail: `entry ${e.seq} (${e.action} ${e.target}) was changed`, seq: e.seq });
    prev = e.hash;
    expected++;
  }
  return { entries: expected - 1, head: prev };
}
