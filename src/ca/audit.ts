/**
 * Verifying the audit log: every entry's hash must recompute and chain to the one before it, and
 * the inventory must agree with it (every certificate has its issue entry, with the fingerprint
 * that entry records, and every revoked one its revoke entry), so cutting entries off the end of
 * the log, or swapping a certificate in the inventory, shows too.
 */
import { AUDIT_GENESIS, auditHash } from '../core/audit-hash.ts';
import { isMutualError, MutualError } from '../core/errors.ts';
import type { AuditStore, InventoryQueries } from './store.ts';
import { MIN_HEAD_PREFIX } from './limits.ts';

/** Shortest hash prefix {@link VerifyAuditOptions.head} takes (64 bits: no accidental match; defined in ./limits.ts). */
export { MIN_HEAD_PREFIX };

/** Options of {@link verifyAuditLog}. */
export interface VerifyAuditOptions {
  /**
   * A head recorded earlier (a full hash, or its first {@link MIN_HEAD_PREFIX}+ hex digits, as
   * `mutual audit verify` prints it). A hash chain cannot show that its newest entries were cut
   * off, and the inventory check covers only certificate entries: with this, the log must still
   * hold an entry with that hash, so entries cut off or rewritten since it was recorded show.
   * Default: none.
   */
  head?: string;
}

/**
 * Walks the whole log and the inventory; throws AUDIT_TAMPERED at the first disagreement (with
 * `seq` naming the entry where it knows one). A row that cannot be read as an entry is tampering
 * too (see the store's row reader).
 */
export async function verifyAuditLog(store: Pick<AuditStore, 'auditEntries'> & Pick<InventoryQueries, 'listCertificates'>, o: VerifyAuditOptions = {}): Promise<{ entries: number; head: string; certificates: number }> {
  const wanted = o.head?.toLowerCase();
  if (wanted !== undefined && !new RegExp(`^[0-9a-f]{${MIN_HEAD_PREFIX},64}$`).test(wanted)) {
    throw new TypeError(`head must be ${MIN_HEAD_PREFIX} to 64 hex digits`);
  }
  let headSeen = wanted === undefined;
  let prev = AUDIT_GENESIS;
  let expected = 1;
  /** Serial -> the fingerprint its issue entry records (undefined for an entry that records none). */
  const issued = new Map<string, string | undefined>();
  const revoked = new Set<string>();
  for await (const e of store.auditEntries()) {
    if (e.seq !== expected) throw new MutualError('AUDIT_TAMPERED', { detail: `entry ${expected} is missing (found ${e.seq})`, seq: expected });
    if (e.prevHash !== prev) throw new MutualError('AUDIT_TAMPERED', { detail: `entry ${e.seq} does not chain to entry ${e.seq - 1}`, seq: e.seq });
    if (auditHash({ ...e, details: e.detailsJson }) !== e.hash) throw new MutualError('AUDIT_TAMPERED', { detail: `entry ${e.seq} (${e.action} ${e.target}) was changed`, seq: e.seq });
    if (e.action === 'issue') issued.set(e.target, typeof e.details.fingerprint === 'string' ? e.details.fingerprint : undefined);
    else if (e.action === 'revoke') revoked.add(e.target);
    if (!headSeen && e.hash.startsWith(wanted!)) headSeen = true;
    prev = e.hash;
    expected++;
  }
  if (!headSeen) {
    throw new MutualError('AUDIT_TAMPERED', { detail: `no entry has the recorded head ${wanted}: entries after it were cut off or rewritten (the log now ends at entry ${expected - 1})`, seq: expected });
  }
  let certs;
  try {
    certs = await store.listCertificates({ limit: Number.MAX_SAFE_INTEGER });
  } catch (e) {
    // A certificate row that cannot be read was edited too: tampering, named by its serial.
    if (isMutualError(e, 'STORE_CORRUPT')) throw new MutualError('AUDIT_TAMPERED', { detail: e.fields.detail, serial: e.fields.serial ?? '' }, { cause: e });
    throw e;
  }
  for (const c of certs) {
    if (!issued.has(c.serial)) throw new MutualError('AUDIT_TAMPERED', { detail: `certificate ${c.serial} is in the inventory but its issue entry is missing`, serial: c.serial });
    // The hash chain covers the log, not the inventory: the issue entry's fingerprint ties the two.
    const recorded = issued.get(c.serial);
    if (recorded !== undefined && recorded !== c.fingerprint) throw new MutualError('AUDIT_TAMPERED', { detail: `certificate ${c.serial} in the inventory is not the one its issue entry records`, serial: c.serial });
    if (c.status === 'revoked' && !revoked.has(c.serial)) throw new MutualError('AUDIT_TAMPERED', { detail: `certificate ${c.serial} is revoked but its revoke entry is missing`, serial: c.serial });
  }
  return { entries: expected - 1, head: prev, certificates: certs.length };
}
