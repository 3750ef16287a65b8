/**
 * `mutual init`: the three-tier hierarchy of DESIGN.md. The root key is written, encrypted, to the
 * offline folder only; the intermediates' keys, encrypted, to the state folder; then the root
 * signs an (empty) CRL for the intermediates and the client CA issues the first admin certificate.
 * With a key store (`keyStore`, `rootKeyStore`: a PKCS#11 token), those keys are made on the token
 * instead and their files hold key references (keys/key-store.ts).
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import { keyIdentifier, spkiDer, type KeyType } from '../core/algorithms.ts';
import { createCertificateTemplate, newSerial, subjectFor, type Role } from '../core/certificate-template.ts';
import { buildCrl, encodeRevokedEntry, parseRevocationReason } from '../core/crl.ts';
import { floorSeconds } from '../core/der.ts';
import { MutualError } from '../core/errors.ts';
import { toPem } from '../core/pem.ts';
import { defaultNamePolicy, type NamePolicy } from '../core/policy.ts';
import type { Signer } from '../core/signer.ts';
import { MIN_PASSPHRASE_LENGTH, generateSigner, type GeneratedSigner, type KeyStoreSpec } from '../keys/index.ts';
import { writeFileAtomic } from '../io/index.ts';
import { writeIssued } from './write-issued.ts';
import { CertificateAuthority, type IssueResult } from './authority.ts';
import { distributionUrls } from './load-intermediates.ts';
import { renderConfig, validateConfig, type CaConfig } from './config.ts';
import { defaultOfflineDir, homeLayout, offlineLayout, type OfflineLayout } from './home.ts';
import { openCaStore } from './open-ca-store.ts';
import { createTokenKey, tokenKeyFile } from './tokens.ts';
import { newKeyOptions, tokenKeyStore } from './key-store-choice.ts';

/** Root lifetime. */
export const ROOT_DAYS = 3650;
/** Intermediate lifetime. */
export const INTERMEDIATE_DAYS = 730;
/** Lifetime of the root-signed CRL for the intermediates (renewed with `mutual offline crl`). */
export const ROOT_CRL_DAYS = 365;

/** Options for {@link initCa}. */
export interface InitCaOptions {
  home: string;
  /** Default: `<home>-offline` beside the state folder. */
  offlineDir?: string;
  trustDomain: string;
  name: string;
  /** Passphrase for the intermediates' keys. */
  passphrase: string;
  /** Passphrase for the root key (default: the same). */
  rootPassphrase?: string;
  permitDns?: string[];
  permitIp?: string[];
  url?: string;
  keyTypes?: { root?: KeyType; intermediate?: KeyType; leaf?: KeyType };
  /**
   * Where the intermediates' keys are made: encrypted files (default) or a PKCS#11 token, with key
   * references in keys/. Written to config.yaml as `keys.store`, where the OCSP responder and
   * enrollment token keys go when the config says `store` (see `keysConfig`).
   */
  keyStore?: KeyStoreSpec;
  /** Where the root key is made (default: an encrypted file in the offline folder); its reference goes to the offline folder. */
  rootKeyStore?: KeyStoreSpec;
  /**
   * config.yaml's `keys.ocspResponderKeys` and `keys.enrollmentTokenKey` (default memory and file);
   * `store` needs `keyStore` to be a token.
   */
  keysConfig?: { ocspResponderKeys?: 'memory' | 'store'; enrollmentTokenKey?: 'file' | 'store' };
  /** Name of the first admin (identity spiffe://<td>/admin/<name>). Default `admin`. */
  adminName?: string;
  /**
   * Encrypt the admin's key.pem with this passphrase (as the CA keys are; `mutual init` always
   * gives one). Default: none, an unencrypted key.pem (0600).
   */
  adminKeyPassphrase?: string;
  /** The shared inventory, written to config.yaml (a URL without a password). Default: SQLite in the state folder. */
  database?: { url: string; schema?: string };
  /** A database for this run only, not written to config.yaml (MUTUAL_DATABASE_URL, which may hold a password). */
  databaseUrl?: string;
  /** Its schema. */
  databaseSchema?: string;
  now?: Date;
}

/** What init made. */
export interface InitCaResult {
  config: CaConfig;
  offline: OfflineLayout;
  rootPem: string;
  serverCaPem: string;
  clientCaPem: string;
  admin: IssueResult;
}

/** The root's CRL state in the offline folder. */
export interface RootState {
  crlNumber: number;
  revoked: { serial: string; revokedAt: string; reason: string; notAfter: string }[];
}

const days = (d: number) => d * 86_400_000;

/** Signs a CA certificate (used by init and the offline re-signing step). */
export async function signCaCertificate(o: {
  role: Role; issuerName: Buffer; issuerKeyId: Buffer; signer: Signer; subject: Buffer; spki: Buffer;
  notBefore: Date; notAfter: Date; nameConstraints?: NamePolicy; crlUrl?: string;
}): Promise<Buffer> {
  const template = createCertificateTemplate({ name: o.issuerName, keyId: o.issuerKeyId, signer: o.signer }, {
    role: o.role, nameConstraints: o.nameConstraints, urls: o.crlUrl ? { crl: o.crlUrl } : undefined,
  });
  return template.sign({ serial: newSerial(), notBefore: o.notBefore, notAfter: o.notAfter, subject: o.subject, spki: o.spki });
}

/** Builds the root CRL from the offline state. */
export async function buildRootCrl(o: { rootSubject: Buffer; rootKeyId: Buffer; signer: Signer; state: RootState; now: Date }): Promise<Buffer> {
  const live = o.state.revoked.filter((r) => new Date(r.notAfter) > o.now);
  return buildCrl({
    issuerName: o.rootSubject,
    authorityKeyId: o.rootKeyId,
    crlNumber: BigInt(o.state.crlNumber),
    thisUpdate: floorSeconds(o.now),
    nextUpdate: floorSeconds(new Date(o.now.getTime() + days(ROOT_CRL_DAYS))),
    entries: live.map((r) => encodeRevokedEntry(Buffer.from(r.serial, 'hex'), new Date(r.revokedAt), parseRevocationReason(r.reason))),
    signer: o.signer,
  });
}

/** Creates a new CA. Throws CA_ALREADY_INITIALIZED when the state or offline folder already holds one. */
export async function initCa(o: InitCaOptions): Promise<InitCaResult> {
  const layout = homeLayout(o.home);
  const offline = offlineLayout(o.offlineDir ?? defaultOfflineDir(o.home));
  for (const f of [layout.config, layout.serverCaKey, offline.rootKey]) {
    if (fs.existsSync(f)) throw new MutualError('CA_ALREADY_INITIALIZED', { detail: `${f} exists` });
  }
  const config = validateConfig({
    trustDomain: o.trustDomain, name: o.name, url: o.url,
    policy: { permitDns: o.permitDns ?? [], permitIp: o.permitIp ?? [] },
    keyTypes: o.keyTypes ?? {},
    ...(o.database ? { database: o.database } : {}),
    ...(o.keyStore?.kind === 'pkcs11' || o.keysConfig ? { keys: { ...(o.keyStore?.kind === 'pkcs11' ? { store: o.keyStore.uri } : {}), ...o.keysConfig } } : {}),
  });
  const tokenStore = tokenKeyStore(config);
  // Checked before anything is written: a CA must not end up half made for a short passphrase.
  if (o.adminKeyPassphrase !== undefined && [...o.adminKeyPassphrase].length < MIN_PASSPHRASE_LENGTH) {
    throw new MutualError('KEY_PASSPHRASE_WEAK', { detail: `the admin key passphrase has fewer than ${MIN_PASSPHRASE_LENGTH} characters` });
  }
  // A PostgreSQL inventory is opened before anything is written: one that cannot be reached leaves
  // no half-made CA behind.
  const pgUrl = o.databaseUrl ?? o.database?.url;
  const store = pgUrl ? await openCaStore({ home: o.home, databaseUrl: pgUrl, databaseSchema: o.databaseSchema ?? o.database?.schema }) : undefined;
  let handed = false;
  try {
    const policy = defaultNamePolicy(config.trustDomain, { dns: config.policy.permitDns, ip: config.policy.permitIp });
    const now = floorSeconds(o.now ?? new Date());
    const urls = distributionUrls(config.url);

    // The keys are made before any folder: a token that is missing, or refuses the PIN, leaves
    // nothing behind on disk. The intermediates' first, so a bad intermediate store does not leave
    // a root key on the root's token. (A key made on a token before a later failure stays there,
    // unreferenced: PKCS#11 keys are not removed on a guess.)
    const serverKey = generateSigner(config.keyTypes.intermediate, newKeyOptions(o.keyStore, 'server-ca'));
    const clientKey = generateSigner(config.keyTypes.intermediate, newKeyOptions(o.keyStore, 'client-ca'));
    const tokenKey = tokenStore ? generateSigner('p256', newKeyOptions(tokenStore, 'token')) : undefined;
    // Root: self-signed, pathLen 2 (ROOT_PATH_LEN), no EKU.
    const rootSigner = generateSigner(config.keyTypes.root, newKeyOptions(o.rootKeyStore, 'root'));
    for (const d of [layout.home, layout.keysDir, offline.dir]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    fs.chmodSync(layout.home, 0o700);

    const rootSpki = spkiDer(rootSigner.publicKey);
    const rootKeyId = keyIdentifier(rootSpki);
    const rootSubject = subjectFor(`${config.name} Root CA`, config.name);
    const rootDer = await signCaCertificate({
      role: 'root', issuerName: rootSubject, issuerKeyId: rootKeyId, signer: rootSigner, subject: rootSubject, spki: rootSpki,
      notBefore: now, notAfter: new Date(now.getTime() + days(ROOT_DAYS)),
    });

    const intermediate = async (role: 'server-ca' | 'client-ca', label: string, key: GeneratedSigner): Promise<{ pem: string; key: GeneratedSigner }> => {
      const der = await signCaCertificate({
        role, issuerName: rootSubject, issuerKeyId: rootKeyId, signer: rootSigner,
        subject: subjectFor(`${config.name} ${label}`, config.name), spki: spkiDer(key.publicKey),
        notBefore: now, notAfter: new Date(now.getTime() + days(INTERMEDIATE_DAYS)), nameConstraints: policy,
        crlUrl: urls && `${urls.base}/crl/root.crl`,
      });
      return { pem: toPem(der, 'CERTIFICATE'), key };
    };
    const server = await intermediate('server-ca', 'Server CA', serverKey);
    const client = await intermediate('client-ca', 'Client CA', clientKey);

    const state: RootState = { crlNumber: 1, revoked: [] };
    const rootCrl = await buildRootCrl({ rootSubject, rootKeyId, signer: rootSigner, state, now });
    const rootPem = toPem(rootDer, 'CERTIFICATE');

    // Keys first (they refuse to overwrite), then the public files, then config last: a CA is
    // "initialized" only once config.yaml exists.
    rootSigner.save(offline.rootKey, o.rootPassphrase ?? o.passphrase);
    server.key.save(layout.serverCaKey, o.passphrase);
    client.key.save(layout.clientCaKey, o.passphrase);
    // Made here, not on first use: replicas started from copies of this folder, or started
    // together on it, must all verify the tokens any of them (or `mutual token`) signs.
    if (tokenKey) tokenKey.save(tokenKeyFile(layout.keysDir), o.passphrase);
    else createTokenKey(layout.keysDir, o.passphrase);
    writeFileAtomic(offline.rootCert, rootPem);
    writeFileAtomic(offline.state, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
    writeFileAtomic(offline.rootCrl, rootCrl);
    writeFileAtomic(layout.rootCert, rootPem);
    writeFileAtomic(layout.rootCrl, rootCrl);
    writeFileAtomic(layout.serverCaCert, server.pem);
    writeFileAtomic(layout.clientCaCert, client.pem);
    writeFileAtomic(layout.config, renderConfig(config), { mode: 0o600 });

    const ca = await CertificateAuthority.open({ home: o.home, passphrase: o.passphrase, now: () => now, store: store ?? (() => openCaStore({ home: o.home })) });
    handed = true;
    try {
      await ca.writeCrl('server', now);
      await ca.writeCrl('client', now);
      const admin = await ca.issue({
        role: 'client', names: { dns: [], ip: [], uri: [`spiffe://${config.trustDomain}/admin/${o.adminName ?? 'admin'}`] }, actor: 'init', now,
      });
      writeIssued(layout.adminDir, admin, { keyPassphrase: o.adminKeyPassphrase });
      await ca.store.audit({ actor: 'init', action: 'init', target: config.trustDomain, at: now, details: {
        root: crypto.createHash('sha256').update(rootDer).digest('hex'), offlineDir: offline.dir,
      } });
      return { config, offline, rootPem, serverCaPem: server.pem, clientCaPem: client.pem, admin };
    } finally {
      await ca.close();
    }
  } finally {
    // Once the authority has it, the authority closes it.
    if (!handed) await store?.close();
  }
}
