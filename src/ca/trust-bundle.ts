/**
 * The online side's view of the roots (docs/operations.md, "Replacing the root"): the trust bundle
 * `ca/roots.pem` (every root relying parties trust now, each block preceded by `# mutual-root`,
 * `# not-after` and, for a root being retired, `# retire-at` comment lines), the rotation state
 * `ca/rotation.json`, the cross-certificates in `ca/cross/`, and every root this CA ever had as
 * `ca/root-<first 16 hex of its fingerprint>.pem` with its CRL beside it. A CA created before
 * rotations existed has none of these: the bundle is then `ca/root.pem` alone.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { parseCrl, verifyCrlSignature, type CrlInfo } from '../core/crl-reader.ts';
import { MutualError } from '../core/errors.ts';
import { readPemOrDer, toPem } from '../core/pem.ts';
import { writeFileAtomic } from '../io/index.ts';
import type { HomeLayout } from './home.ts';

/** `ca/rotation.json` (the shared contract of issue 17). */
export interface RotationState {
  phase: 'none' | 'overlap' | 'retired';
  /** SHA-256 fingerprints (lowercase hex) of the roots. */
  oldRoot: string;
  newRoot: string;
  startedAt: string;
  retireAt: string;
  retiredAt?: string;
}

/** One root this CA has had. */
export interface KnownRoot {
  fingerprint: string;
  pem: string;
  info: CertificateInfo;
  x509: crypto.X509Certificate;
}

/** One root of the trust bundle. */
export interface BundleRoot {
  fingerprint: string;
  pem: string;
  notAfter: Date;
  /** Set for a root being retired. */
  retireAt?: Date;
}

/** One cross-certificate in `ca/cross/`. */
export interface CrossCertificate {
  name: string;
  pem: string;
  /** The root whose subject and key it carries, and the root that signed it (when known). */
  subjectFingerprint?: string;
  issuerFingerprint?: string;
}

/** Most roots and cross-certificates read from the CA home (a rotation adds one and two). */
const MAX_ROOT_FILES = 32;

/** `ca/root-<first 16 hex of the fingerprint>.pem`: a root's file, kept after it is retired. */
export const rootFile = (l: HomeLayout, fingerprint: string): string => path.join(l.caDir, `root-${fingerprint.slice(0, 16)}.pem`);
/** ... and its CRL, served as `/crl/root-<16 hex>.crl`. */
export const rootCrlFile = (l: HomeLayout, fingerprint: string): string => path.join(l.caDir, `root-${fingerprint.slice(0, 16)}.crl`);

const fingerprintOf = (der: Uint8Array): string => crypto.hash('sha256', der, 'hex');

/** The rotation state, or undefined when this CA never rotated its root. */
export function readRotation(l: HomeLayout): RotationState | undefined {
  if (!fs.existsSync(l.rotation)) return undefined;
  return JSON.parse(fs.readFileSync(l.rotation, 'utf8')) as RotationState;
}

/** Writes the rotation state. */
export function writeRotation(l: HomeLayout, s: RotationState): void {
  writeFileAtomic(l.rotation, JSON.stringify(s, null, 2) + '\n');
}

function known(pem: string): KnownRoot {
  const der = readPemOrDer(pem, ['CERTIFICATE']);
  return { fingerprint: fingerprintOf(der), pem: toPem(der, 'CERTIFICATE'), info: parseCertificate(der), x509: new crypto.X509Certificate(der) };
}

/** Every root this CA has had: `ca/root.pem` first, then the `ca/root-*.pem` files. */
export function knownRoots(l: HomeLayout): KnownRoot[] {
  const out = [known(fs.readFileSync(l.rootCert, 'utf8'))];
  for (const f of fs.readdirSync(l.caDir).filter((n) => /^root-[0-9a-f]{16}\.pem$/.test(n)).slice(0, MAX_ROOT_FILES)) {
    const r = known(fs.readFileSync(path.join(l.caDir, f), 'utf8'));
    if (!out.some((o) => o.fingerprint === r.fingerprint)) out.push(r);
  }
  return out;
}

/** The root among `roots` that signed a certificate (PEM or DER), if any. */
export function issuingRoot(roots: readonly KnownRoot[], cert: string | Uint8Array): KnownRoot | undefined {
  const x = new crypto.X509Certificate(typeof cert === 'string' ? cert : Buffer.from(cert));
  return roots.find((r) => x.checkIssued(r.x509) && x.verify(r.x509.publicKey));
}

/** Renders the trust bundle: each root with its comment lines (PEM readers skip them). */
export function renderBundle(roots: readonly BundleRoot[]): string {
  return roots.map((r) => [
    `# mutual-root ${r.fingerprint}`,
    `# not-after ${r.notAfter.toISOString()}`,
    ...(r.retireAt ? [`# retire-at ${r.retireAt.toISOString()}`] : []),
    r.pem.trimEnd(),
  ].join('\n') + '\n').join('');
}

/** The bundle's text: `ca/roots.pem`, else (a CA from before rotations) `ca/root.pem`. */
export function trustBundleText(l: HomeLayout): string {
  return fs.existsSync(l.rootsBundle) ? fs.readFileSync(l.rootsBundle, 'utf8') : fs.readFileSync(l.rootCert, 'utf8');
}

/** Parses the trust bundle into its roots (the comment lines give retire-at). */
export function readTrustBundle(l: HomeLayout): BundleRoot[] {
  const text = trustBundleText(l);
  const out: BundleRoot[] = [];
  const block = /((?:#[^\n]*\n)*)(-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----)/g;
  for (let m = block.exec(text); m && out.length < MAX_ROOT_FILES; m = block.exec(text)) {
    const r = known(m[2]);
    const retire = /^# retire-at (\S+)$/m.exec(m[1]);
    out.push({ fingerprint: r.fingerprint, pem: r.pem, notAfter: r.info.notAfter, ...(retire ? { retireAt: new Date(retire[1]) } : {}) });
  }
  if (out.length === 0) throw new MutualError('PEM_MALFORMED', { detail: `${l.rootsBundle}: no certificate` });
  return out;
}

/** The cross-certificates in `ca/cross/`, with the roots they join when these are known. */
export function readCrossCertificates(l: HomeLayout, roots: readonly KnownRoot[] = knownRoots(l)): CrossCertificate[] {
  if (!fs.existsSync(l.crossDir)) return [];
  return fs.readdirSync(l.crossDir).filter((n) => /^[a-z0-9-]{1,64}\.pem$/.test(n)).sort().slice(0, MAX_ROOT_FILES).map((f) => {
    const pem = fs.readFileSync(path.join(l.crossDir, f), 'utf8');
    const info = parseCertificate(readPemOrDer(pem, ['CERTIFICATE']));
    const subject = roots.find((r) => r.info.spki.equals(info.spki) && r.info.subjectName.equals(info.subjectName));
    return { name: f.slice(0, -4), pem, subjectFingerprint: subject?.fingerprint, issuerFingerprint: issuingRoot(roots, pem)?.fingerprint };
  });
}

/** A cross-certificate by name (`new-by-old`), or undefined. */
export function crossCertificate(l: HomeLayout, name: string): string | undefined {
  if (!/^[a-z0-9-]{1,64}$/.test(name)) return undefined;
  const f = path.join(l.crossDir, `${name}.pem`);
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : undefined;
}

/** The `/roots.json` document (the shared contract of issue 17). */
export function rootsDocument(l: HomeLayout): unknown {
  const roots = readTrustBundle(l);
  const rotation = readRotation(l);
  return {
    current: known(fs.readFileSync(l.rootCert, 'utf8')).fingerprint,
    roots: roots.map((r) => ({
      fingerprint: r.fingerprint, pem: r.pem, notAfter: r.notAfter.toISOString(),
      status: r.retireAt ? 'retiring' : 'active', ...(r.retireAt ? { retireAt: r.retireAt.toISOString() } : {}),
    })),
    cross: readCrossCertificates(l).map((c) => ({ name: c.name, pem: c.pem, subjectFingerprint: c.subjectFingerprint, issuerFingerprint: c.issuerFingerprint })),
    rotation: rotation ?? { phase: 'none' },
  };
}

/**
 * Whether an intermediate is revoked in a root CRL of this CA (`ca/root.crl` or a
 * `ca/root-*.crl`): the CRLs are read once, each kept only when the root it names signed it.
 */
export function rootRevocations(l: HomeLayout, roots: readonly KnownRoot[] = knownRoots(l)): (intermediate: CertificateInfo) => boolean {
  const crls: CrlInfo[] = [];
  for (const f of fs.readdirSync(l.caDir).filter((n) => n === 'root.crl' || /^root-[0-9a-f]{16}\.crl$/.test(n)).slice(0, MAX_ROOT_FILES)) {
    const crl = parseCrl(readPemOrDer(fs.readFileSync(path.join(l.caDir, f)), ['X509 CRL']));
    const root = roots.find((r) => r.info.subjectName.equals(crl.issuerName) && verifyCrlSignature(crl, r.x509.publicKey, r.info.subjectKeyId));
    if (root) crls.push(crl);
  }
  return (i) => crls.some((crl) => crl.issuerName.equals(i.issuerName) && (!crl.authorityKeyId || !i.authorityKeyId || crl.authorityKeyId.equals(i.authorityKeyId)) && crl.revoked.has(i.serial));
}

/** The root (of `roots`) that signed a CRL, if any. */
export function crlRoot(roots: readonly KnownRoot[], der: Uint8Array): KnownRoot | undefined {
  const crl = parseCrl(der);
  return roots.find((r) => r.info.subjectName.equals(crl.issuerName) && verifyCrlSignature(crl, r.x509.publicKey, r.info.subjectKeyId));
}
