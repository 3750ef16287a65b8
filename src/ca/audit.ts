/**
 * Verifying the audit log: every entry's hash must recompute and chain to the one before it, and
 * the inventory must agree with it (every certificate has its issue entry, every revoked one its
 * revoke entry), so cutting entries off the end of the log shows too.
 */
import { AUDIT_GENESIS, auditHash } from '../core/audit-hash.ts';
import { MutualError } from '../core/errors.ts';
import type { CaStore } from './store.ts';

/** Walks the whole log and the inventory; throws AUDIT_TAMPERED at the first disagreement. */
export async function verifyAuditLog(store: Pick<CaStore, 'auditEntries' | 'listCertificates'>): Promise<{ entries: number; head: string; certificates: number }> {
  let prev = AUDIT_GENESIS;
  let expected = 1;
  const issued = new Set<string>();
  const revoked = new Set<string>();
  for await (const e of store.auditEntries()) {
    if (e.seq !== expected) throw new MutualError('AUDIT_TAMPERED', { detail: `entry ${expected} is missing (found ${e.seq})`, seq: expected });
    if (e.prevHash !== prev) throw new MutualError('AUDIT_TAMPERED', { detail: `entry ${e.seq} does not chain to entry ${e.seq - 1}`, seq: e.seq });
    if (auditHash({ ...e, details: e.detailsJson }) !== e.hash) throw new MutualError('AUDIT_TAMPERED', { detail: `entry ${e.seq} (${e.action} ${e.target}) was changed`, seq: e.seq });
    if (e.action === 'issue') issued.add(e.target);
    else if (e.action === 'revoke') revoked.add(e.target);
    prev = e.hash;
    expected++;
  }
  const certs = await store.listCertificates({ limit: Number.MAX_SAFE_INTEGER });
  for (const c of certs) {
    if (!issued.has(c.serial)) throw new MutualError('AUDIT_TAMPERED', { detail: `certificate ${c.serial} is in the inventory but its issue entry is missing`, serial: c.serial });
    if (c.status === 'revoked' && !revoked.has(c.serial)) throw new MutualError('AUDIT_TAMPERED', { detail: `certificate ${c.serial} is revoked but its revoke entry is missing`, serial: c.serial });
  }
  return { entries: expected - 1, head: prev, certificates: certs.length };
}
