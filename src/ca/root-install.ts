/**
 * The online half of replacing the root (docs/operations.md, "Replacing the root"), in the CA home:
 * `mutual root install --from D` stages the new root and the cross-certificates and starts the
 * overlap (both roots in `ca/roots.pem`, the old one marked retire-at); `ca/root.pem` becomes the
 * new root once the current server and client intermediates are both under it
 * ({@link promoteRootIfReady}, run by `mutual intermediate install`); `mutual root retire` ends the
 * overlap. The shared file formats are in trust-bundle.ts.
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import { parseCertificate } from '../core/certificate.ts';
import { floorSeconds } from '../core/der.ts';
import { MutualError } from '../core/errors.ts';
import { readPemOrDer, toPem } from '../core/pem.ts';
import { writeFileAtomic } from '../io/index.ts';
import { homeLayout, offlineLayout, type HomeLayout } from './home.ts';
import { openCaStore } from './open-ca-store.ts';
import type { OfflineRotation } from './root-rotation.ts';
import type { AuditStore, InventoryQueries } from './store.ts';
import {
  crlRoot, knownRoots, readRotation, renderBundle, rootCrlFile, rootFile, writeRotation, type KnownRoot, type RotationState,
} from './trust-bundle.ts';
import { rotationStatus } from './rotation-status.ts';

const fingerprintOf = (der: Uint8Array): string => crypto.hash('sha256', der, 'hex');

async function audit(home: string, store: Pick<AuditStore, 'audit'> | undefined, action: string, target: string, details: Record<string, unknown>, at: Date): Promise<void> {
  const own = store ? undefined : await openCaStore({ home });
  try {
    await (store ?? own!).audit({ actor: 'cli', action, target, at, details });
  } finally {
    await own?.close();
  }
}

/**
 * Checks that a cross-certificate carries `subject`'s name and key and verifies under `issuer`,
 * now. ROTATION_CROSS_INVALID otherwise.
 */
export function checkCross(pem: string, subject: crypto.X509Certificate, issuer: crypto.X509Certificate, now: Date, what: string): void {
  const x = new crypto.X509Certificate(pem);
  const info = parseCertificate(x.raw);
  const want = parseCertificate(subject.raw);
  const fail = (why: string): never => {
    throw new MutualError('ROTATION_CROSS_INVALID', { detail: `${what}: ${why}` });
  };
  if (!info.spki.equals(want.spki)) fail('its key is not the root\'s it names');
  if (!info.subjectName.equals(want.subjectName)) fail('its subject is not the root\'s');
  if (!info.isCa) fail('it is not a CA certificate');
  if (!x.checkIssued(issuer) || !x.verify(issuer.publicKey)) fail('it does not verify under the other root');
  if (now < info.notBefore || now >= info.notAfter) fail(`it is valid ${info.notBefore.toISOString()} to ${info.notAfter.toISOString()}, not now`);
}

/**
 * Writes `ca/roots.pem` from the rotation state: both roots in the overlap (the old marked
 * retire-at), else the new one. The current root (`ca/root.pem`) comes first: a reader that
 * takes the first certificate (the SDK's pin check of a token's root, `openssl x509`) sees the
 * root that issues now, the one tokens pin.
 */
function writeBundle(l: HomeLayout, roots: readonly KnownRoot[], s: RotationState): void {
  const get = (fp: string) => roots.find((r) => r.fingerprint === fp)!;
  const list = s.phase === 'overlap'
    ? [{ r: get(s.oldRoot), retireAt: new Date(s.retireAt) }, { r: get(s.newRoot) }]
    : [{ r: get(s.newRoot) }];
  if (roots[0].fingerprint === s.newRoot) list.reverse();
  writeFileAtomic(l.rootsBundle, renderBundle(list.map(({ r, retireAt }) => ({ fingerprint: r.fingerprint, pem: r.pem, notAfter: r.info.notAfter, ...(retireAt ? { retireAt } : {}) }))));
}

/** Options for {@link installRoot}. */
export interface InstallRootOptions {
  home: string;
  /** The offline folder `mutual root rotate` wrote to (or a copy of its public files). */
  from: string;
  store?: Pick<AuditStore, 'audit'>;
  now?: Date;
}

/**
 * Installs the rotation made in an offline folder: the new root (`ca/root-<fp>.pem`) and its CRL,
 * the cross-certificates (`ca/cross/`), `ca/roots.pem` (both roots) and `ca/rotation.json`
 * (phase overlap). Needs no key. `ca/root.pem` stays the old root until the new intermediates are
 * installed. ROTATION_NOT_STARTED (no rotation there), ROTATION_WRONG_CA (not this CA's root),
 * ROTATION_IN_PROGRESS (a rotation is already installed), ROTATION_CROSS_INVALID.
 */
export async function installRoot(o: InstallRootOptions): Promise<RotationState> {
  const l = homeLayout(o.home);
  const d = offlineLayout(o.from);
  const now = floorSeconds(o.now ?? new Date());
  if (!fs.existsSync(d.rotation)) throw new MutualError('ROTATION_NOT_STARTED', { detail: `no rotation in ${d.dir}: run \`mutual root rotate --offline-dir ${d.dir}\` first` });
  const off = JSON.parse(fs.readFileSync(d.rotation, 'utf8')) as OfflineRotation;
  const current = readRotation(l);
  if (current?.phase === 'overlap') throw new MutualError('ROTATION_IN_PROGRESS', { detail: `a rotation to ${current.newRoot.slice(0, 16)} is installed; retire it first` });
  const oldX = new crypto.X509Certificate(fs.readFileSync(d.prevRootCert));
  const newX = new crypto.X509Certificate(fs.readFileSync(d.rootCert));
  const here = fingerprintOf(readPemOrDer(fs.readFileSync(l.rootCert), ['CERTIFICATE']));
  if (fingerprintOf(oldX.raw) !== here || off.oldRoot !== here) throw new MutualError('ROTATION_WRONG_CA', { detail: `${d.dir} rotates root ${fingerprintOf(oldX.raw).slice(0, 16)}, this CA's is ${here.slice(0, 16)}` });
  if (fingerprintOf(newX.raw) !== off.newRoot || !newX.verify(newX.publicKey)) throw new MutualError('ROTATION_WRONG_CA', { detail: `${d.rootCert} is not the new root ${off.newRoot.slice(0, 16)} of the rotation` });
  const newByOld = fs.readFileSync(`${d.crossDir}/new-by-old.pem`, 'utf8');
  const oldByNew = fs.readFileSync(`${d.crossDir}/old-by-new.pem`, 'utf8');
  checkCross(newByOld, newX, oldX, now, 'new-by-old.pem');
  checkCross(oldByNew, oldX, newX, now, 'old-by-new.pem');

  // Files first (each root under its fingerprint, its CRL beside it), then the bundle, then the state.
  writeFileAtomic(rootFile(l, off.oldRoot), toPem(oldX.raw, 'CERTIFICATE'));
  writeFileAtomic(rootFile(l, off.newRoot), toPem(newX.raw, 'CERTIFICATE'));
  if (fs.existsSync(l.rootCrl)) fs.copyFileSync(l.rootCrl, rootCrlFile(l, off.oldRoot));
  if (fs.existsSync(d.rootCrl)) fs.copyFileSync(d.rootCrl, rootCrlFile(l, off.newRoot));
  fs.mkdirSync(l.crossDir, { recursive: true });
  writeFileAtomic(`${l.crossDir}/new-by-old.pem`, newByOld);
  writeFileAtomic(`${l.crossDir}/old-by-new.pem`, oldByNew);
  const state: RotationState = {
    phase: 'overlap', oldRoot: off.oldRoot, newRoot: off.newRoot, startedAt: now.toISOString(),
    retireAt: new Date(now.getTime() + off.retireAfterDays * 86_400_000).toISOString(),
  };
  writeBundle(l, knownRoots(l), state);
  writeRotation(l, state);
  await audit(o.home, o.store, 'root-install', off.newRoot, { oldRoot: off.oldRoot, retireAt: state.retireAt }, now);
  return state;
}

/**
 * The roots an intermediate may be installed under: the current root, and during the overlap
 * the new one.
 */
export function installableRoots(l: HomeLayout): crypto.X509Certificate[] {
  const out = [new crypto.X509Certificate(fs.readFileSync(l.rootCert))];
  const s = readRotation(l);
  if (s?.phase === 'overlap' && fs.existsSync(rootFile(l, s.newRoot))) out.push(new crypto.X509Certificate(fs.readFileSync(rootFile(l, s.newRoot))));
  return out;
}

/**
 * Makes the new root the current one (`ca/root.pem`) once the current server and client
 * intermediates both chain to it. Returns true when it did.
 */
export function promoteRootIfReady(l: HomeLayout): boolean {
  const s = readRotation(l);
  if (s?.phase !== 'overlap' || !fs.existsSync(rootFile(l, s.newRoot))) return false;
  const pem = fs.readFileSync(rootFile(l, s.newRoot), 'utf8');
  const root = new crypto.X509Certificate(pem);
  if (fingerprintOf(new crypto.X509Certificate(fs.readFileSync(l.rootCert)).raw) === s.newRoot) return false;
  const under = (f: string) => new crypto.X509Certificate(fs.readFileSync(f)).verify(root.publicKey);
  if (!under(l.serverCaCert) || !under(l.clientCaCert)) return false;
  writeFileAtomic(l.rootCert, pem);
  writeBundle(l, knownRoots(l), s);
  return true;
}

/**
 * Copies a root CRL renewed offline into the CA home: `ca/root-<fp>.crl` of the root that signed
 * it (when the CA knows it under that name), and `ca/root.crl`, which intermediates made before
 * the rotation name, while that root is the one it serves (the old root until it is retired).
 */
export function installRootCrl(home: string, der: Buffer): string[] {
  const l = homeLayout(home);
  if (!fs.existsSync(l.caDir)) return [];
  const roots = knownRoots(l);
  const root = crlRoot(roots, der);
  if (!root) throw new MutualError('CERT_WRONG_ISSUER', { detail: 'the CRL was not signed by a root of this CA' });
  const s = readRotation(l);
  const written: string[] = [];
  if (fs.existsSync(rootFile(l, root.fingerprint))) {
    writeFileAtomic(rootCrlFile(l, root.fingerprint), der);
    written.push(rootCrlFile(l, root.fingerprint));
  }
  const servesRootCrl = s ? (s.phase === 'overlap' ? s.oldRoot : s.newRoot) : roots[0].fingerprint;
  if (root.fingerprint === servesRootCrl) {
    writeFileAtomic(l.rootCrl, der);
    written.push(l.rootCrl);
  }
  return written;
}

/** Options for {@link retireRoot}. */
export interface RetireRootOptions {
  home: string;
  store: InventoryQueries & Pick<AuditStore, 'audit'>;
  /** Retire even with valid leaves under the old root (they stop being trusted). */
  force?: boolean;
  now?: Date;
}

/**
 * Ends the overlap: the old root leaves `ca/roots.pem`, the phase becomes retired, `ca/root.crl`
 * becomes the new root's. ROTATION_NOT_STARTED without an overlap; ROTATION_INTERMEDIATES_PENDING
 * before the new intermediates are installed; ROTATION_LEAVES_REMAIN while valid leaves chain
 * only to the old root (unless `force`).
 */
export async function retireRoot(o: RetireRootOptions): Promise<{ state: RotationState; remaining: number }> {
  const l = homeLayout(o.home);
  const now = floorSeconds(o.now ?? new Date());
  const s = readRotation(l);
  if (s?.phase !== 'overlap') throw new MutualError('ROTATION_NOT_STARTED', { detail: s ? `the rotation is ${s.phase}` : 'no rotation was installed (`mutual root install --from D`)' });
  if (fingerprintOf(new crypto.X509Certificate(fs.readFileSync(l.rootCert)).raw) !== s.newRoot) {
    throw new MutualError('ROTATION_INTERMEDIATES_PENDING', { detail: 'ca/root.pem is still the old root: install server and client intermediates signed by the new root first' });
  }
  const status = await rotationStatus({ home: o.home, store: o.store, now });
  const remaining = status.oldRootLeaves.count;
  if (remaining > 0 && !o.force) throw new MutualError('ROTATION_LEAVES_REMAIN', { count: remaining, detail: `${remaining} valid certificate(s) chain only to the old root; \`mutual rotation status\` lists them, --force retires anyway` });
  const state: RotationState = { ...s, phase: 'retired', retiredAt: now.toISOString() };
  writeBundle(l, knownRoots(l), state);
  if (fs.existsSync(rootCrlFile(l, s.newRoot))) fs.copyFileSync(rootCrlFile(l, s.newRoot), l.rootCrl);
  writeRotation(l, state);
  await o.store.audit({ actor: 'cli', action: 'root-retire', target: s.oldRoot, at: now, details: { newRoot: s.newRoot, remaining, forced: remaining > 0 } });
  return { state, remaining };
}
