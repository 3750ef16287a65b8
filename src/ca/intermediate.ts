/**
 * The online half of re-signing an intermediate: make its CSR (with the current key, or a new one
 * kept beside it as `<role>.next.key.pem`), and install the certificate the offline root signed.
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import { generateKeyPair, spkiDer } from '../core/algorithms.ts';
import { parseCertificate } from '../core/certificate.ts';
import { buildCsr } from '../core/csr.ts';
import { MutualError } from '../core/errors.ts';
import { OID } from '../core/oids.ts';
import { readPemOrDer, toPem } from '../core/pem.ts';
import { readEncryptedKey, writeEncryptedKey } from '../keys/encrypted-key-file.ts';
import { writeFileAtomic } from '../io/atomic-file.ts';
import { readConfig } from './config.ts';
import { homeLayout } from './home.ts';
import { openCaStore } from './open-ca-store.ts';
import type { AuditStore } from './store.ts';

const paths = (home: string, role: 'server-ca' | 'client-ca') => {
  const l = homeLayout(home);
  const cert = role === 'server-ca' ? l.serverCaCert : l.clientCaCert;
  const key = role === 'server-ca' ? l.serverCaKey : l.clientCaKey;
  return { l, cert, key, nextKey: key.replace(/\.key\.pem$/, '.next.key.pem') };
};

/** Makes the CSR the offline root signs. With `newKey`, a new key is made and kept as the next key. */
export function intermediateCsr(o: { home: string; role: 'server-ca' | 'client-ca'; passphrase: string; newKey?: boolean }): string {
  const p = paths(o.home, o.role);
  const config = readConfig(p.l.config);
  const current = parseCertificate(readPemOrDer(fs.readFileSync(p.cert), ['CERTIFICATE']));
  let key;
  if (o.newKey) {
    if (fs.existsSync(p.nextKey)) fs.rmSync(p.nextKey);
    key = generateKeyPair(config.keyTypes.intermediate).privateKey;
    writeEncryptedKey(p.nextKey, key, o.passphrase);
  } else {
    key = readEncryptedKey(p.key, o.passphrase);
  }
  return toPem(buildCsr({ privateKey: key, commonName: current.commonName ?? o.role, organization: config.name, ca: true }), 'CERTIFICATE REQUEST');
}

/**
 * Installs a re-signed intermediate after checking it: signed by our root, a CA, the right role, our
 * key; then records it in the audit log of `store` (default: the CA's configured store, see
 * openCaStore; a store passed in stays open).
 */
export async function installIntermediate(o: { home: string; role: 'server-ca' | 'client-ca'; certificate: Uint8Array | string; passphrase: string; store?: Pick<AuditStore, 'audit'> }): Promise<void> {
  const p = paths(o.home, o.role);
  const der = readPemOrDer(o.certificate, ['CERTIFICATE']);
  const info = parseCertificate(der);
  const root = new crypto.X509Certificate(fs.readFileSync(p.l.rootCert));
  if (!new crypto.X509Certificate(der).verify(root.publicKey)) throw new MutualError('CERT_WRONG_ISSUER', { detail: 'not signed by this CA\'s root' });
  const wantEku = o.role === 'server-ca' ? OID.serverAuth : OID.clientAuth;
  if (!info.isCa || info.eku.length !== 1 || info.eku[0] !== wantEku) throw new MutualError('CERT_WRONG_EKU', { detail: `not a ${o.role} certificate` });
  const current = readEncryptedKey(p.key, o.passphrase);
  if (spkiDer(crypto.createPublicKey(current)).equals(info.spki)) {
    writeFileAtomic(p.cert, toPem(der, 'CERTIFICATE'));
  } else if (fs.existsSync(p.nextKey) && spkiDer(crypto.createPublicKey(readEncryptedKey(p.nextKey, o.passphrase))).equals(info.spki)) {
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
  const own = o.store ? undefined : await openCaStore({ home: o.home });
  try {
    await (o.store ?? own!).audit({ actor: 'cli', action: 'install-intermediate', target: o.role, details: { serial: info.serial, notAfter: info.notAfter.toISOString() } });
  } finally {
    await own?.close();
  }
}
