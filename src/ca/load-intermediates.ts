/**
 * Loading the online CA's intermediates from a state folder: config.yaml, the current server and
 * client CAs, and those retired by a key rotation, each with its Signer (keys/open-signer.ts),
 * certificate template and lint profile. CertificateAuthority.open and reload() call it; a
 * failure anywhere leaves the caller with what it had.
 */
import fs, { readFileSync } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spkiDer } from '../core/algorithms.ts';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { createCertificateTemplate, type CertificateTemplate } from '../core/certificate-template.ts';
import { MutualError } from '../core/errors.ts';
import type { LintIssuer } from '../core/lint.ts';
import { readPemOrDer } from '../core/pem.ts';
import type { Signer } from '../core/signer.ts';
import { openSigner, parseKeyStore } from '../keys/index.ts';
import { readConfig, type CaConfig } from './config.ts';
import type { HomeLayout } from './home.ts';
import { crossCertificate, issuingRoot, knownRoots, readRotation, readTrustBundle, rootRevocations, type RotationState } from './trust-bundle.ts';

/** The leaf roles the online CA issues. */
export type LeafRole = 'server' | 'client';

/** One loaded intermediate. */
export interface IntermediateCa {
  role: 'server-ca' | 'client-ca';
  info: CertificateInfo;
  pem: string;
  /**
   * What issued leaves carry after themselves: the intermediate, and during a root rotation's
   * overlap, for one under the new root, the new root's cross-certificate by the old root
   * (`new-by-old`), so a relying party that trusts only the old root still builds a path.
   */
  chainPem: string;
  /** Fingerprint of the root it chains to (undefined: none this CA knows). */
  rootFingerprint?: string;
  /** Revoked in a root CRL (an emergency): its leaves should be replaced at once. */
  revokedAtRoot: boolean;
  /** Subject key identifier, hex: the issuer half of the inventory key. */
  keyId: string;
  template: CertificateTemplate;
  lint: LintIssuer;
  signer: Signer;
}

/** What {@link loadIntermediates} read. */
export interface LoadedIntermediates {
  config: CaConfig;
  server: IntermediateCa;
  client: IntermediateCa;
  /** Intermediates replaced by a key rotation: they no longer issue, but revoke and sign CRLs. */
  retired: IntermediateCa[];
  /** The current root (`ca/root.pem`) and every root of the trust bundle (PEM). */
  rootPem: string;
  trustRoots: string[];
  /** The root rotation, when one was ever installed. */
  rotation?: RotationState;
}

/** `server.<first 16 hex digits of the key id>`: see CertificateAuthority.keyedName. */
export function keyedName(which: LeafRole, keyIdHex: string): string {
  return `${which}.${keyIdHex.slice(0, 16)}`;
}

/** The URLs written into certificates, from the configured public base URL. */
export function distributionUrls(url: string | undefined): { base: string } | undefined {
  return url ? { base: url.replace(/\/+$/, '') } : undefined;
}

/**
 * Reads config.yaml and loads the current and retired intermediates of a state folder, each key
 * opened as a Signer (on the thread pool with `offloadCrypto`) and checked against its
 * certificate. `url` overrides config.yaml's for the URLs written into certificates.
 *
 * @throws MutualError `CA_NOT_INITIALIZED` without config.yaml; `KEY_MISMATCH` when a key is not
 *   its certificate's; the KEY_* errors of openSigner.
 */
export function loadIntermediates(layout: HomeLayout, passphrase: string, url: string | undefined, offloadCrypto: boolean): LoadedIntermediates {
  let config: CaConfig;
  try {
    config = readConfig(layout.config);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new MutualError('CA_NOT_INITIALIZED', { detail: `no ${layout.config}` });
    throw e;
  }
  // config.yaml's schema checks keys.store's shape only (see keys-config.ts): a URI that does not
  // parse is refused here, when the CA opens, not when the first OCSP responder key is made.
  if (config.keys?.store !== undefined) parseKeyStore(config.keys.store);
  const urls = distributionUrls(url ?? config.url);
  const roots = knownRoots(layout);
  const rotation = readRotation(layout);
  const newByOld = rotation?.phase === 'overlap' ? crossCertificate(layout, 'new-by-old') : undefined;
  const revoked = rootRevocations(layout, roots);
  const load = (role: 'server-ca' | 'client-ca', certPath: string, keyPath: string, leaf: LeafRole): IntermediateCa => {
    const pem = readFileSync(certPath, 'utf8');
    const info = parseCertificate(readPemOrDer(pem, ['CERTIFICATE']));
    const signer = openSigner(keyPath, passphrase, { offload: offloadCrypto });
    if (!spkiDer(signer.publicKey).equals(info.spki)) throw new MutualError('KEY_MISMATCH', { detail: `${keyPath} does not belong to ${certPath}` });
    const keyId = info.subjectKeyId ?? crypto.createHash('sha1').update(info.spki).digest();
    // The CRL and CA certificate URLs name the issuing key (keyedName): after a key rotation the
    // certificates the old key issued still lead to its CRL, not to the new key's.
    const keyed = keyedName(leaf, keyId.toString('hex'));
    const template = createCertificateTemplate({ name: info.subjectName, keyId, signer }, {
      role: leaf,
      urls: urls && { crl: `${urls.base}/crl/${keyed}.crl`, ocsp: `${urls.base}/ocsp`, caIssuers: `${urls.base}/ca/${keyed}.crt` },
    });
    const constraints = info.permitted && { trustDomain: info.permitted.uri[0] ?? config.trustDomain, permittedDns: info.permitted.dns, permittedIp: info.permitted.ip };
    const rootFingerprint = issuingRoot(roots, pem)?.fingerprint;
    const chainPem = newByOld && rootFingerprint === rotation?.newRoot ? pem + newByOld : pem;
    return {
      role, info, pem, chainPem, rootFingerprint, revokedAtRoot: revoked(info), keyId: keyId.toString('hex'), template, signer,
      lint: { role, notBefore: info.notBefore, notAfter: info.notAfter, signatureOid: signer.algorithm.oid, constraints },
    };
  };
  const server = load('server-ca', layout.serverCaCert, layout.serverCaKey, 'server');
  const client = load('client-ca', layout.clientCaCert, layout.clientCaKey, 'client');
  const retired: IntermediateCa[] = [];
  for (const f of fs.readdirSync(layout.caDir)) {
    const m = /^(server|client)-ca\.prev-(\d+)\.pem$/.exec(f);
    const key = m && path.join(layout.keysDir, `${m[1]}-ca.prev-${m[2]}.key.pem`);
    if (m && key && fs.existsSync(key)) retired.push(load(`${m[1]}-ca` as 'server-ca' | 'client-ca', path.join(layout.caDir, f), key, m[1] as LeafRole));
  }
  const trustRoots = readTrustBundle(layout).map((r) => r.pem);
  return { config, server, client, retired, rootPem: readFileSync(layout.rootCert, 'utf8'), trustRoots, ...(rotation ? { rotation } : {}) };
}
