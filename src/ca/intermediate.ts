/**
 * The online half of re-signing an intermediate: make its CSR (with the current key, or a new one
 * kept beside it as `<role>.next.key.pem`), and install the certificate the offline root signed.
 * A new key is made where the current one lives (a file, or the current key's token), unless told
 * otherwise; a token key's reference file is renamed and retired exactly as a key file is.
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import { spkiDer } from '../core/algorithms.ts';
import { parseCertificate } from '../core/certificate.ts';
import { signCsr } from '../core/csr.ts';
import { MutualError } from '../core/errors.ts';
import { OID } from '../core/oids.ts';
import { readPemOrDer, toPem } from '../core/pem.ts';
import type { Signer } from '../core/signer.ts';
import { generateSigner, keyStoreOf, openSigner, type KeyStoreSpec } from '../keys/index.ts';
import { writeFileAtomic } from '../io/index.ts';
import { readConfig } from './config.ts';
import { newKeyOptions } from './key-store-choice.ts';
import { homeLayout } from './home.ts';
import { openCaStore } from './open-ca-store.ts';
import { installableRoots, promoteRootIfReady } from './root-install.ts';
import type { AuditStore } from './store.ts';

const paths = (home: string, role: 'server-ca' | 'client-ca') => {
  const l = homeLayout(home);
  const cert = role === 'server-ca' ? l.serverCaCert : l.clientCaCert;
  const key = role === 'server-ca' ? l.serverCaKey : l.clientCaKey;
  return { l, cert, key, nextKey: key.replace(/\.key\.pem$/, '.next.key.pem') };
};

/**
 * Makes the CSR the offline root signs (PEM). With `newKey`, a new key is made and kept as the next
 * key: in `keyStore` when given (`--key-store`), else in the current key's store (keyStoreOf: the
 * same token, or a file). Async: the intermediate's key signs through its Signer.
 */
export async function intermediateCsr(o: { home: string; role: 'server-ca' | 'client-ca'; passphrase: string; newKey?: boolean; keyStore?: KeyStoreSpec }): Promise<string> {
  if (o.keyStore && !o.newKey) throw new TypeError('keyStore is for a new key');
  const p = paths(o.home, o.role);
  const config = readConfig(p.l.config);
  const current = parseCertificate(readPemOrDer(fs.readFileSync(p.cert), ['CERTIFICATE']));
  let signer: Signer;
  if (o.newKey) {
    const store = o.keyStore ?? keyStoreOf(p.key);
    // Made before the old next key is dropped: a token that is away leaves the folder as it was.
    const made = generateSigner(config.keyTypes.intermediate, newKeyOptions(store, o.role));
    if (fs.existsSync(p.nextKey)) fs.rmSync(p.nextKey);
    made.save(p.nextKey, o.passphrase);
    signer = made;
  } else {
    signer = openSigner(p.key, o.passphrase);
  }
  return toPem(await signCsr({ signer, commonName: current.commonName ?? o.role, organization: config.name, ca: true }), 'CERTIFICATE REQUEST');
}

/**
 * Installs a re-signed intermediate after checking it: signed by our root, a CA, the right role, our
 * key; then records it in the audit log of `store` (default: the CA's configured store, see
 * openCaStore; a store passed in stays open).
 */
export async function installIntermediate(o: { home: string; role: 'server-ca' | 'client-ca'; certificate: Uint8Array | string; passphrase: string; store?: Pick<AuditStore, 'audit'> }): Promise<{ rootPromoted: boolean }> {
  const p = paths(o.home, o.role);
  const der = readPemOrDer(o.certificate, ['CERTIFICATE']);
  const info = parseCertificate(der);
  // The current root, or during a root rotation's overlap the new one (installRoot staged it).
  const x = new crypto.X509Certificate(der);
  if (!installableRoots(p.l).some((root) => x.verify(root.publicKey))) throw new MutualError('CERT_WRONG_ISSUER', { detail: 'not signed by this CA\'s root' });
  const wantEku = o.role === 'server-ca' ? OID.serverAuth : OID.clientAuth;
  if (!info.isCa || info.eku.length !== 1 || info.eku[0] !== wantEku) throw new MutualError('CERT_WRONG_EKU', { detail: `not a ${o.role} certificate` });
  // Decrypting is the only way to the public half: an encrypted PKCS#8 file does not carry it.
  if (spkiDer(openSigner(p.key, o.passphrase).publicKey).equals(info.spki)) {
    writeFileAtomic(p.cert, toPem(der, 'CERTIFICATE'));
  } else if (fs.existsSync(p.nextKey) && spkiDer(openSigner(p.nextKey, o.passphrase).publicKey).equals(info.spki)) {
    // The old key and certificate are kept (as .prev-<time>) so the retired intermediate can still
    // revoke what it issued and sign CRLs for it (CertificateAuthority.open loads them).
    const stamp = Date.now();
    fs.copyFileSync(p.cert, p.cert.replace(/\.pem$/, `.prev-${stamp}.pem`));
    fs.renameSync(p.key, p.key.replace(/\.key\.pem$/, `.prev-${stamp}.key.pem`));
    fs.renameSync(p.nextKey, p.key);
    writeFileAtomic(p.cert, toPem(der, 'CERTIFICATE'));
  } else {
    throw new MutualError('KEY_MISMATCH', { detail: 'the certificate is for neither the current nor the next intermediate key' });
  }
  // Once both intermediates are under the new root, it becomes the current root.
  const promoted = promoteRootIfReady(p.l);
  const own = o.store ? undefined : await openCaStore({ home: o.home });
  try {
    await (o.store ?? own!).audit({ actor: 'cli', action: 'install-intermediate', target: o.role, details: { serial: info.serial, notAfter: info.notAfter.toISOString(), ...(promoted ? { rootPromoted: true } : {}) } });
  } finally {
    await own?.close();
  }
  return { rootPromoted: promoted };
}
