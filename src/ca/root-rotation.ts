/**
 * `mutual root rotate`: the offline half of replacing the root (docs/operations.md, "Replacing the
 * root"). In the offline folder, a new root key and self-signed certificate, and the two
 * cross-certificates that join the old and the new root both ways, so that a relying party that
 * trusts either root builds a path to what the other issued during the overlap:
 * - `cross/new-by-old.pem`: the new root's subject and key, signed by the old root;
 * - `cross/old-by-new.pem`: the old root's subject and key, signed by the new root.
 * The old root's files become `root.prev.*`; `root.*` is the new root, so `mutual offline
 * sign-intermediate` signs with the newest root unless told `--root old`.
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import { describeSpki, keyIdentifier, spkiDer, type KeyType } from '../core/algorithms.ts';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { createCertificateTemplate, newSerial, ROOT_PATH_LEN } from '../core/certificate-template.ts';
import { floorSeconds } from '../core/der.ts';
import { MutualError } from '../core/errors.ts';
import { lintCertificate } from '../core/lint.ts';
import { readPemOrDer, toPem } from '../core/pem.ts';
import type { Signer } from '../core/signer.ts';
import { generateSigner, keyStoreOf, openSigner, type KeyStoreSpec } from '../keys/index.ts';
import { writeFileAtomic } from '../io/index.ts';
import { newKeyOptions } from './key-store-choice.ts';
import { offlineLayout, type OfflineLayout } from './home.ts';
import { ROOT_DAYS, buildRootCrl, type RootState } from './init-ca.ts';

/** pathLenConstraint of a root made by a rotation: a root's, as `init` makes it (see ROOT_PATH_LEN). */
export const ROTATED_ROOT_PATH_LEN = ROOT_PATH_LEN;

/** Default overlap before the old root is retired, in days. */
export const DEFAULT_RETIRE_AFTER_DAYS = 90;

/** The offline folder's `rotation.json`: what `mutual root install` reads. */
export interface OfflineRotation {
  oldRoot: string;
  newRoot: string;
  startedAt: string;
  /** How long the overlap should last, in days (`--retire-after`). */
  retireAfterDays: number;
}

/** Options for {@link rotateRoot}. */
export interface RotateRootOptions {
  offlineDir: string;
  /** The old root key's passphrase; the new key is encrypted with it too. */
  rootPassphrase: string;
  /** The new root's key type (default: the old root's). */
  keyType?: KeyType;
  /**
   * Where the new root key is made (`--key-store`): default the old root's store (its token, with
   * the reference in the offline folder, or an encrypted file there).
   */
  keyStore?: KeyStoreSpec;
  retireAfterDays?: number;
  now?: Date;
}

/** What {@link rotateRoot} made. */
export interface RotateRootResult {
  oldRoot: { fingerprint: string; pem: string };
  newRoot: { fingerprint: string; pem: string };
  newByOld: string;
  oldByNew: string;
  rotation: OfflineRotation;
}

/** One issuing root: name, key id, Signer, validity. */
interface RootIssuer {
  info: CertificateInfo;
  keyId: Buffer;
  signer: Signer;
}

const fingerprintOf = (der: Uint8Array): string => crypto.hash('sha256', der, 'hex');

/** Signs a root-shaped certificate (self-signed or cross), linted first; validity within the issuer's. */
async function signRootCertificate(issuer: { name: Buffer; keyId: Buffer; signer: Signer; notBefore: Date; notAfter: Date }, subject: Buffer, spki: Buffer, notBefore: Date, notAfter: Date, pathLen: number): Promise<Buffer> {
  const fields = { serial: newSerial(), notBefore, notAfter, subject, spki };
  lintCertificate('root', fields, { role: 'root', notBefore: issuer.notBefore, notAfter: issuer.notAfter, signatureOid: issuer.signer.algorithm.oid });
  // The linter does not bound a root by its issuer (a self-signed root is its own); a cross-certificate must be.
  if (notBefore < issuer.notBefore || notAfter > issuer.notAfter) throw new MutualError('LINT_FAILED', { rule: 'validity-outside-issuer', detail: 'validity-outside-issuer: a cross-certificate must lie within its issuer\'s validity' });
  const template = createCertificateTemplate({ name: issuer.name, keyId: issuer.keyId, signer: issuer.signer }, { role: 'root', pathLen });
  return template.sign(fields);
}

function openRoot(l: OfflineLayout, passphrase: string): RootIssuer {
  if (!fs.existsSync(l.rootKey)) throw new MutualError('KEY_FILE_MISSING', { detail: `${l.rootKey} (is --offline-dir right?)` });
  const signer = openSigner(l.rootKey, passphrase);
  const info = parseCertificate(readPemOrDer(fs.readFileSync(l.rootCert), ['CERTIFICATE']));
  if (!spkiDer(signer.publicKey).equals(info.spki)) throw new MutualError('KEY_MISMATCH', { detail: `${l.rootKey} does not belong to ${l.rootCert}` });
  return { info, keyId: info.subjectKeyId ?? keyIdentifier(info.spki), signer };
}

/**
 * Makes the new root and both cross-certificates in the offline folder. Refuses
 * (ROTATION_IN_PROGRESS) when the folder already holds a rotation.
 */
export async function rotateRoot(o: RotateRootOptions): Promise<RotateRootResult> {
  const l = offlineLayout(o.offlineDir);
  if (fs.existsSync(l.rotation) || fs.existsSync(l.prevRootKey)) throw new MutualError('ROTATION_IN_PROGRESS', { detail: `${l.dir} already holds a rotation (${l.rotation})` });
  const old = openRoot(l, o.rootPassphrase);
  const now = floorSeconds(o.now ?? new Date());
  if (now >= old.info.notAfter) throw new MutualError('CA_ISSUER_EXPIRED', { detail: `the old root expired ${old.info.notAfter.toISOString()}; a cross-certificate from it would not be valid` });
  const retireAfterDays = o.retireAfterDays ?? DEFAULT_RETIRE_AFTER_DAYS;

  const store = o.keyStore ?? keyStoreOf(l.rootKey);
  const signer = generateSigner(o.keyType ?? describeSpki(old.info.spki).type, newKeyOptions(store, 'root'));
  const spki = spkiDer(signer.publicKey);
  const keyId = keyIdentifier(spki);
  // The new root keeps the old root's name (RFC 4210 4.4, root CA key update): the
  // cross-certificates are then self-issued, and self-issued certificates do not count against a
  // pathLenConstraint (RFC 5280 6.1.4 (l)). With a new name, leaf -> intermediate -> new-by-old ->
  // old root would put two CA certificates under a root of pathLen 1 (as `init` made them before
  // ROOT_PATH_LEN was 2) and fail; the key
  // identifiers (AKI/SKI) and fingerprints tell the two roots apart.
  const subject = old.info.subjectName;
  const notAfter = new Date(now.getTime() + ROOT_DAYS * 86_400_000);
  const newIssuer = { name: subject, keyId, signer, notBefore: now, notAfter };
  const oldIssuer = { name: old.info.subjectName, keyId: old.keyId, signer: old.signer, notBefore: old.info.notBefore, notAfter: old.info.notAfter };
  const rootDer = await signRootCertificate(newIssuer, subject, spki, now, notAfter, ROTATED_ROOT_PATH_LEN);
  // Both cross-certificates live within both roots' validity (RFC 5280 6.1.3 checks each
  // certificate on the path against the time; one outliving a root would dangle).
  const crossEnd = new Date(Math.min(notAfter.getTime(), old.info.notAfter.getTime()));
  // Each carries the constraints of the root whose key it certifies.
  const newByOld = await signRootCertificate(oldIssuer, subject, spki, now, crossEnd, ROTATED_ROOT_PATH_LEN);
  const oldByNew = await signRootCertificate(newIssuer, old.info.subjectName, old.info.spki, now, crossEnd, old.info.pathLen ?? 1);
  const state: RootState = { crlNumber: 1, revoked: [] };
  const crl = await buildRootCrl({ rootSubject: subject, rootKeyId: keyId, signer, state, now });

  const rootPem = toPem(rootDer, 'CERTIFICATE');
  const oldPem = toPem(old.info.der, 'CERTIFICATE');
  const rotation: OfflineRotation = { oldRoot: fingerprintOf(old.info.der), newRoot: fingerprintOf(rootDer), startedAt: now.toISOString(), retireAfterDays };
  // The new key first, beside the old (save refuses to overwrite); then the old root's files move
  // to root.prev.*, the new ones take their names, and rotation.json, written last, marks it done.
  const nextKey = l.rootKey.replace(/\.key\.pem$/, '.next.key.pem');
  if (fs.existsSync(nextKey)) fs.rmSync(nextKey);
  signer.save(nextKey, o.rootPassphrase);
  fs.mkdirSync(l.crossDir, { recursive: true, mode: 0o700 });
  writeFileAtomic(`${l.crossDir}/new-by-old.pem`, toPem(newByOld, 'CERTIFICATE'));
  writeFileAtomic(`${l.crossDir}/old-by-new.pem`, toPem(oldByNew, 'CERTIFICATE'));
  fs.renameSync(l.rootKey, l.prevRootKey);
  fs.renameSync(l.rootCert, l.prevRootCert);
  fs.renameSync(l.state, l.prevState);
  if (fs.existsSync(l.rootCrl)) fs.renameSync(l.rootCrl, l.prevRootCrl);
  fs.renameSync(nextKey, l.rootKey);
  writeFileAtomic(l.rootCert, rootPem);
  writeFileAtomic(l.state, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  writeFileAtomic(l.rootCrl, crl);
  writeFileAtomic(l.rotation, JSON.stringify(rotation, null, 2) + '\n');
  return {
    oldRoot: { fingerprint: rotation.oldRoot, pem: oldPem }, newRoot: { fingerprint: rotation.newRoot, pem: rootPem },
    newByOld: toPem(newByOld, 'CERTIFICATE'), oldByNew: toPem(oldByNew, 'CERTIFICATE'), rotation,
  };
}
