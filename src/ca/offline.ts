/**
 * The offline root's two jobs, run on the machine (or from the media) that holds the root key:
 * re-signing an intermediate from its CSR (air-gapped: CSR out, certificate in), and renewing the
 * root-signed CRL for the intermediates. The online CA never loads the root key.
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import { keyIdentifier } from '../core/algorithms.ts';
import { parseCertificate } from '../core/certificate.ts';
import { parseCsr, verifyCsr } from '../core/csr.ts';
import { parseRevocationReason, type RevocationReason } from '../core/crl.ts';
import { floorSeconds } from '../core/der.ts';
import { MutualError } from '../core/errors.ts';
import { readPemOrDer, toPem } from '../core/pem.ts';
import { encodeName } from '../core/names.ts';
import type { NamePolicy } from '../core/policy.ts';
import { openSigner } from '../keys/index.ts';
import { writeFileAtomic } from '../io/index.ts';
import { offlineLayout } from './home.ts';
import { INTERMEDIATE_DAYS, buildRootCrl, signCaCertificate, type RootState } from './init-ca.ts';

/** Which root of the offline folder: the newest (`root.*`) or, after `mutual root rotate`, the old one (`root.prev.*`). */
export type OfflineRoot = 'new' | 'old';

function loadRoot(offlineDir: string, passphrase: string, which: OfflineRoot = 'new') {
  const o = offlineLayout(offlineDir);
  if (which === 'old' && !fs.existsSync(o.prevRootKey)) throw new MutualError('ROTATION_NOT_STARTED', { detail: `${o.dir} holds one root (no \`mutual root rotate\` was made there)` });
  const l = which === 'new' ? o : { ...o, rootKey: o.prevRootKey, rootCert: o.prevRootCert, state: o.prevState, rootCrl: o.prevRootCrl };
  if (!fs.existsSync(l.rootKey)) throw new MutualError('KEY_FILE_MISSING', { detail: `${l.rootKey} (is --offline-dir right?)` });
  const signer = openSigner(l.rootKey, passphrase);
  const info = parseCertificate(readPemOrDer(fs.readFileSync(l.rootCert), ['CERTIFICATE']));
  const keyId = info.subjectKeyId ?? keyIdentifier(info.spki);
  const state = JSON.parse(fs.readFileSync(l.state, 'utf8')) as RootState;
  // After a rotation each root has its own CRL, named by its fingerprint (`/crl/root-<16 hex>.crl`).
  const crlName = fs.existsSync(o.rotation) ? `root-${crypto.hash('sha256', info.der, 'hex').slice(0, 16)}` : 'root';
  return { l, signer, info, keyId, state, crlName };
}

/** Options for {@link signIntermediate}. */
export interface SignIntermediateOptions {
  offlineDir: string;
  rootPassphrase: string;
  /** The intermediate's CSR (PEM or DER). */
  csr: Uint8Array | string;
  role: 'server-ca' | 'client-ca';
  /** Name constraints for the intermediate (from the CA's config). */
  policy: NamePolicy;
  /** Subject CN; default: the CSR's. */
  commonName?: string;
  organization?: string;
  days?: number;
  /** Public base URL, for the CRL Distribution Point of the root CRL. */
  url?: string;
  /** Which root signs (default: the newest). */
  root?: OfflineRoot;
  now?: Date;
}

/** Signs an intermediate certificate from a CSR with the offline root key; returns PEM. */
export async function signIntermediate(o: SignIntermediateOptions): Promise<string> {
  const root = loadRoot(o.offlineDir, o.rootPassphrase, o.root);
  const csr = parseCsr(readPemOrDer(o.csr, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']));
  verifyCsr(csr);
  const cn = o.commonName ?? csr.commonName;
  if (!cn) throw new MutualError('CSR_MALFORMED', { detail: 'the CSR has no CN; pass --cn' });
  const now = floorSeconds(o.now ?? new Date());
  const notAfter = new Date(Math.min(now.getTime() + (o.days ?? INTERMEDIATE_DAYS) * 86_400_000, root.info.notAfter.getTime()));
  const der = await signCaCertificate({
    role: o.role, issuerName: root.info.subjectName, issuerKeyId: root.keyId, signer: root.signer,
    subject: encodeName({ commonName: cn, organization: o.organization }), spki: csr.spki, notBefore: now, notAfter,
    nameConstraints: o.policy, crlUrl: o.url && `${o.url.replace(/\/+$/, '')}/crl/${root.crlName}.crl`,
  });
  return toPem(der, 'CERTIFICATE');
}

/** Options for {@link renewRootCrl}. */
export interface RenewRootCrlOptions {
  offlineDir: string;
  rootPassphrase: string;
  /** An intermediate certificate to add to the CRL (of the root that issued it). */
  revoke?: { certificate: Uint8Array | string; reason?: string };
  /** Without `revoke`: which root's CRL (default: the newest). */
  root?: OfflineRoot;
  now?: Date;
}

/** Renews (and optionally extends) the root CRL; writes it to the offline folder; returns its DER. */
export async function renewRootCrl(o: RenewRootCrlOptions): Promise<Buffer> {
  // The CRL of the root that issued the intermediate to revoke: after a rotation, either root's.
  const which = o.revoke && fs.existsSync(offlineLayout(o.offlineDir).prevRootCert) ? issuedBy(o.offlineDir, o.revoke.certificate) : o.root;
  const root = loadRoot(o.offlineDir, o.rootPassphrase, which);
  const now = floorSeconds(o.now ?? new Date());
  const state: RootState = { crlNumber: root.state.crlNumber + 1, revoked: [...root.state.revoked] };
  if (o.revoke) {
    const info = parseCertificate(readPemOrDer(o.revoke.certificate, ['CERTIFICATE']));
    if (!info.issuerName.equals(root.info.subjectName) || (info.authorityKeyId && !info.authorityKeyId.equals(root.keyId))) {
      throw new MutualError('CERT_WRONG_ISSUER', { detail: `${info.subject} was not issued by this root` });
    }
    if (state.revoked.some((r) => r.serial === info.serial)) throw new MutualError('CERT_ALREADY_REVOKED', { detail: info.serial });
    const reason: RevocationReason = parseRevocationReason(o.revoke.reason ?? 'cessationOfOperation');
    state.revoked.push({ serial: info.serial, revokedAt: now.toISOString(), reason, notAfter: info.notAfter.toISOString() });
  }
  const der = await buildRootCrl({ rootSubject: root.info.subjectName, rootKeyId: root.keyId, signer: root.signer, state, now });
  writeFileAtomic(root.l.rootCrl, der);
  writeFileAtomic(root.l.state, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  return der;
}

/** Which root of a rotated offline folder signed a certificate ('new' when neither: the check that follows refuses it). */
function issuedBy(offlineDir: string, cert: Uint8Array | string): OfflineRoot {
  const l = offlineLayout(offlineDir);
  const x = new crypto.X509Certificate(readPemOrDer(cert, ['CERTIFICATE']));
  const old = new crypto.X509Certificate(fs.readFileSync(l.prevRootCert));
  return x.checkIssued(old) && x.verify(old.publicKey) ? 'old' : 'new';
}

/** A stable short fingerprint for messages. */
export const shortFingerprint = (der: Uint8Array): string => crypto.createHash('sha256').update(der).digest('hex').slice(0, 16);
