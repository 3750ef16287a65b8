/**
 * `mutual rotation status`: where a root rollover stands, read from the CA home and the inventory
 * without any key. For each intermediate this CA has (current, and retired by a key rotation):
 * the root it chains to, whether a root CRL revokes it, and the valid leaves it issued; from these,
 * the leaves that chain only to the old root (what `mutual root retire` waits for) and those under
 * a revoked intermediate (the progress of an emergency's mass renewal).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { readPemOrDer } from '../core/pem.ts';
import { homeLayout } from './home.ts';
import type { InventoryQueries } from './store.ts';
import { issuingRoot, knownRoots, readRotation, readTrustBundle, rootRevocations, type RotationState } from './trust-bundle.ts';

/** Most leaves listed per group in a status (the counts are exact). */
export const STATUS_LIST_CAP = 50;
/**
 * Most valid certificates read from the inventory for one status. The store lists without an
 * issuer filter, so status reads them all; beyond this the counts are marked `truncated`.
 */
export const STATUS_SCAN_LIMIT = 1_000_000;

/** One intermediate in a status. */
export interface IntermediateStatus {
  name: string;
  role: 'server-ca' | 'client-ca';
  keyId: string;
  serial: string;
  notAfter: string;
  current: boolean;
  /** Fingerprint of the root it chains to (undefined: none this CA knows). */
  root?: string;
  revokedAtRoot: boolean;
  /** Valid (unrevoked, unexpired) leaves it issued. */
  leaves: number;
}

/** A group of leaves: the count and the first {@link STATUS_LIST_CAP} serials. */
export interface LeafGroup {
  count: number;
  serials: { serial: string; intermediate: string; notAfter: string; identity?: string }[];
}

/** What {@link rotationStatus} reports. */
export interface RotationStatus {
  rotation: RotationState | { phase: 'none' };
  roots: { fingerprint: string; subject: string; notBefore: string; notAfter: string; current: boolean; inBundle: boolean; retireAt?: string }[];
  intermediates: IntermediateStatus[];
  oldRootLeaves: LeafGroup;
  revokedIntermediateLeaves: LeafGroup;
  truncated: boolean;
}

function intermediateFiles(caDir: string): { name: string; file: string; current: boolean }[] {
  const out = [{ name: 'server-ca', file: path.join(caDir, 'server-ca.pem'), current: true }, { name: 'client-ca', file: path.join(caDir, 'client-ca.pem'), current: true }];
  for (const f of fs.readdirSync(caDir).sort()) {
    if (/^(server|client)-ca\.prev-\d+\.pem$/.test(f)) out.push({ name: f.slice(0, -4), file: path.join(caDir, f), current: false });
  }
  return out;
}

/** Reads the rollover's state. */
export async function rotationStatus(o: { home: string; store: InventoryQueries; now?: Date }): Promise<RotationStatus> {
  const l = homeLayout(o.home);
  const now = o.now ?? new Date();
  const roots = knownRoots(l);
  const bundle = readTrustBundle(l);
  const rotation = readRotation(l);
  const revoked = rootRevocations(l, roots);
  const inters: (IntermediateStatus & { info: CertificateInfo })[] = intermediateFiles(l.caDir).map((f) => {
    const pem = fs.readFileSync(f.file, 'utf8');
    const info = parseCertificate(readPemOrDer(pem, ['CERTIFICATE']));
    return {
      name: f.name, role: f.name.startsWith('server') ? 'server-ca' : 'client-ca', keyId: (info.subjectKeyId ?? Buffer.alloc(0)).toString('hex'), serial: info.serial,
      notAfter: info.notAfter.toISOString(), current: f.current, root: issuingRoot(roots, pem)?.fingerprint, revokedAtRoot: revoked(info), leaves: 0, info,
    };
  });
  const rows = await o.store.listCertificates({ status: 'valid', notExpiredAt: now, limit: STATUS_SCAN_LIMIT });
  const oldRootLeaves: LeafGroup = { count: 0, serials: [] };
  const revokedLeaves: LeafGroup = { count: 0, serials: [] };
  const add = (g: LeafGroup, r: (typeof rows)[number], inter: string) => {
    g.count++;
    if (g.serials.length < STATUS_LIST_CAP) g.serials.push({ serial: r.serial, intermediate: inter, notAfter: r.notAfter.toISOString(), ...(r.identity ? { identity: r.identity } : {}) });
  };
  for (const r of rows) {
    // Leaves only (not OCSP responders), and not the CA servers' own TLS certificates (`serve`):
    // each server replaces its own at the reload that follows new intermediates (runbook step 4),
    // so an old one left valid in the inventory is no longer in use and must not hold up retirement.
    if ((r.role !== 'server' && r.role !== 'client') || r.issuedBy === 'serve') continue;
    const inter = inters.find((i) => i.keyId === r.issuerKeyId);
    if (!inter) continue;
    inter.leaves++;
    if (rotation && rotation.phase !== 'retired' && inter.root === rotation.oldRoot) add(oldRootLeaves, r, inter.name);
    if (inter.revokedAtRoot) add(revokedLeaves, r, inter.name);
  }
  const current = roots[0].fingerprint;
  return {
    rotation: rotation ?? { phase: 'none' },
    roots: roots.map((r) => {
      const b = bundle.find((x) => x.fingerprint === r.fingerprint);
      return {
        fingerprint: r.fingerprint, subject: r.info.subject, notBefore: r.info.notBefore.toISOString(), notAfter: r.info.notAfter.toISOString(),
        current: r.fingerprint === current, inBundle: b !== undefined, ...(b?.retireAt ? { retireAt: b.retireAt.toISOString() } : {}),
      };
    }),
    intermediates: inters.map(({ info: _info, ...i }) => i),
    oldRootLeaves,
    revokedIntermediateLeaves: revokedLeaves,
    truncated: rows.length >= STATUS_SCAN_LIMIT,
  };
}
