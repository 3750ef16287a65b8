/**
 * The online authority: loads the two intermediates from a state folder and runs the issuance
 * pipeline of DESIGN.md (request -> policy -> build -> lint -> sign -> persist -> return), and
 * revocation (inventory + audit in one transaction -> that issuer's CRL regenerated).
 * Its parts live beside it: loading the intermediates and their Signers (load-intermediates.ts),
 * the request and its checks (issue-request.ts), group commit (group-commit.ts).
 */
import crypto from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { spkiDer } from '../core/algorithms.ts';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { createCertificateTemplate, newSerial, subjectFor, type CertificateTemplate, type DistributionUrls, type Role } from '../core/certificate-template.ts';
import { buildCrl, encodeRevokedEntry, type RevocationReason } from '../core/crl.ts';
import { floorSeconds } from '../core/der.ts';
import { isMutualError, MutualError } from '../core/errors.ts';
import { lintCertificate } from '../core/lint.ts';
import { readPemOrDer, toPem } from '../core/pem.ts';
import { checkNames, defaultNamePolicy, type NamePolicy } from '../core/policy.ts';
import { encodeName } from '../core/names.ts';
import type { Signer } from '../core/signer.ts';
import { generateSigner } from '../keys/index.ts';
import { writeFileAtomic } from '../io/index.ts';
import { profileLifetimes, type CaConfig } from './config.ts';
import { newKeyOptions, ocspKeyStore } from './key-store-choice.ts';
import { homeLayout, type HomeLayout } from './home.ts';
import type { CaStore, CertificateRecord, ListFilter, StoredCertificate } from './store.ts';
import { GroupCommit } from './group-commit.ts';
import type { RotationState } from './trust-bundle.ts';
import { keyedName, loadIntermediates, type IntermediateCa, type LeafRole } from './load-intermediates.ts';
import {
  BACKDATE_MS, MAX_RENEWAL_GRACE_SECONDS, RENEWAL_WINDOW_SECONDS, RENEWALS_PER_WINDOW, leafCommonName, leafLifetimeMs, subjectKey,
  type IssueRequest, type IssueResult, type RenewRequest, type RevokeResult,
} from './issue-request.ts';

// What moved out of this file, still exported from here for its callers.
export { MAX_COMMIT_BATCH } from './group-commit.ts';
export { distributionUrls, type IntermediateCa, type LeafRole } from './load-intermediates.ts';
export {
  BACKDATE_MS, MAX_RENEWAL_GRACE_SECONDS, MIN_CERT_LIFETIME_SECONDS, RENEWAL_WINDOW_SECONDS, RENEWALS_PER_WINDOW, checkLifetime, leafCommonName,
  type IssueRequest, type IssueResult, type RenewRequest, type RevokeResult,
} from './issue-request.ts';

/** Lifetime of the CRLs the intermediates sign (regenerated on every revocation and long before this). */
export const CRL_LIFETIME_MS = 7 * 86_400_000;

const issuedChannel = diagnostics.channel('mutual:ca:issued');
const revokedChannel = diagnostics.channel('mutual:ca:revoked');

/** Options for {@link CertificateAuthority.open}. */
export interface OpenAuthorityOptions {
  home: string;
  /** Passphrase of the intermediates' keys. */
  passphrase: string;
  /**
   * The inventory: a store, or how to open one. A function is called once the keys are unlocked,
   * so a wrong passphrase never touches the database. Which store (SQLite or PostgreSQL) is the
   * caller's choice: {@link openAuthority} (ca/open-authority.ts) makes it from the CA's config.
   */
  store: CaStore | (() => Promise<CaStore>);
  /** Public base URL for CRL Distribution Points and AIA; overrides the config's `url` (`mutual serve --url`). */
  url?: string;
  /**
   * Verify CSR signatures and sign certificates on libuv's thread pool, keeping the event loop for
   * requests (`mutual serve` on a machine with more than one core). Off: everything on the calling
   * thread, which is faster on one core.
   */
  offloadCrypto?: boolean;
  /** Clock (tests freeze it). */
  now?: () => Date;
}

/** The online certificate authority. */
export class CertificateAuthority {
  // config, policy and the intermediates change only through reload().
  config: CaConfig;
  readonly layout: HomeLayout;
  readonly store: CaStore;
  // The root, the trust bundle and the rotation change only through reload() (after `mutual root install/retire`).
  root: CertificateInfo;
  rootPem: string;
  /** Every root of the trust bundle (PEM): both during a root rotation's overlap. */
  trustRoots: string[];
  rotation: RotationState | undefined;
  server: IntermediateCa;
  client: IntermediateCa;
  policy: NamePolicy;
  readonly now: () => Date;
  readonly #offloadCrypto: boolean;
  readonly #commits: GroupCommit;

  /** Intermediates retired by a key rotation (revocation and CRLs only). */
  retired: IntermediateCa[];
  readonly #url: string | undefined;

  private constructor(o: { config: CaConfig; layout: HomeLayout; store: CaStore; root: string; trustRoots: string[]; rotation?: RotationState; server: IntermediateCa; client: IntermediateCa; retired: IntermediateCa[]; now: () => Date; offloadCrypto: boolean; url?: string }) {
    this.#offloadCrypto = o.offloadCrypto;
    this.#url = o.url;
    this.config = o.config;
    this.layout = o.layout;
    this.store = o.store;
    this.#commits = new GroupCommit(o.store);
    this.rootPem = o.root;
    this.root = parseCertificate(readPemOrDer(o.root, ['CERTIFICATE']));
    this.trustRoots = o.trustRoots;
    this.rotation = o.rotation;
    this.server = o.server;
    this.client = o.client;
    this.retired = o.retired;
    this.now = o.now;
    this.policy = defaultNamePolicy(o.config.trustDomain, { dns: o.config.policy.permitDns, ip: o.config.policy.permitIp });
  }

  /** Opens the CA in a state folder. Throws CA_NOT_INITIALIZED, KEY_* errors. */
  static async open(o: OpenAuthorityOptions): Promise<CertificateAuthority> {
    const layout = homeLayout(o.home);
    const { config, server, client, retired, rootPem, trustRoots, rotation } = loadIntermediates(layout, o.passphrase, o.url, o.offloadCrypto === true);
    const store = typeof o.store === 'function' ? await o.store() : o.store;
    return new CertificateAuthority({ config, layout, store, root: rootPem, trustRoots, rotation, server, client, retired, now: o.now ?? (() => new Date()), offloadCrypto: o.offloadCrypto === true, url: o.url });
  }

  /**
   * Reads config.yaml and the intermediates again (after `mutual intermediate install`, or a
   * widened policy): everything is loaded and checked before anything changes, so a failure
   * (wrong passphrase, a key that does not match) leaves the CA as it was. Requests already past
   * their issuer lookup finish with the intermediate they started with. Returns an undo.
   */
  reload(passphrase: string): () => void {
    const { config, server, client, retired, rootPem, trustRoots, rotation } = loadIntermediates(this.layout, passphrase, this.#url, this.#offloadCrypto);
    const before = { config: this.config, server: this.server, client: this.client, retired: this.retired, policy: this.policy, root: this.root, rootPem: this.rootPem, trustRoots: this.trustRoots, rotation: this.rotation };
    const root = parseCertificate(readPemOrDer(rootPem, ['CERTIFICATE']));
    Object.assign(this, { config, server, client, retired, rootPem, root, trustRoots, rotation, policy: defaultNamePolicy(config.trustDomain, { dns: config.policy.permitDns, ip: config.policy.permitIp }) });
    /** Puts back what was loaded before (for a caller whose own part of the reload failed). */
    return () => Object.assign(this, before);
  }

  /** The intermediate that issues a leaf role. */
  issuerFor(role: LeafRole): IntermediateCa {
    return role === 'server' ? this.server : this.client;
  }

  /**
   * Whether what an intermediate issued should be replaced now (ACME ARI's window in the past):
   * it was retired by a key rotation, a root CRL revokes it, or its root is being retired.
   */
  replaceNow(issuerKeyId: string): boolean {
    if (this.retired.some((r) => r.keyId === issuerKeyId)) return true;
    const ca = this.issuerByKeyId(issuerKeyId);
    if (!ca) return false;
    return ca.revokedAtRoot || (this.rotation?.phase === 'overlap' && ca.rootFingerprint === this.rotation.oldRoot);
  }

  /** The intermediate with this key id, if it is one of ours. */
  issuerByKeyId(keyId: string): IntermediateCa | undefined {
    return [this.server, this.client, ...this.retired].find((ca) => ca.keyId === keyId);
  }

  /**
   * Issues a certificate. Nothing is returned before the certificate and its audit entry are
   * committed; requests that arrive together share one transaction (group commit).
   */
  async issue(req: IssueRequest): Promise<IssueResult> {
    if (req.spendToken && req.renewedFrom !== undefined) throw new TypeError('a renewal spends no token');
    if (req.persist && (req.spendToken || req.renewedFrom !== undefined)) throw new TypeError('persist is for plain issuance');
    const now = req.now ?? this.now();
    const ca = this.issuerFor(req.role);
    const profile = this.config.profiles[req.role];
    const key = subjectKey(req, req.keyType ?? this.config.keyTypes.leaf, this.#offloadCrypto);
    const { spki, privateKey, csrNames } = key instanceof Promise ? await key : key;
    const checked = checkNames(this.policy, req.names ?? csrNames ?? { dns: [], ip: [], uri: [] }, req.role);
    const lifetimeMs = leafLifetimeMs(req, profile);
    const notBefore = floorSeconds(new Date(Math.max(now.getTime() - BACKDATE_MS, ca.info.notBefore.getTime())));
    const notAfter = floorSeconds(new Date(Math.min(now.getTime() + lifetimeMs, ca.info.notAfter.getTime())));
    if (now < ca.info.notBefore || now >= ca.info.notAfter) throw new MutualError('CA_ISSUER_EXPIRED', { detail: `${ca.role} is valid ${ca.info.notBefore.toISOString()} to ${ca.info.notAfter.toISOString()}` });
    const identity = checked.uri[0];
    const commonName = leafCommonName(req.role, checked);
    const subject = commonName ? subjectFor(commonName) : encodeName({ organization: this.config.name });
    const fields = { serial: newSerial(), notBefore, notAfter, subject, spki, names: checked };
    try {
      lintCertificate(req.role, fields, ca.lint);
    } catch (e) {
      // Names config.yaml permits but the intermediate's name constraints (fixed when it was
      // signed) do not: the policy passed them, so say what to re-sign rather than "a bug".
      if (!isMutualError(e, 'LINT_FAILED') || e.fields.rule !== 'name-constraints') throw e;
      throw new MutualError('POLICY_NAME_NOT_ALLOWED', { detail: `${e.fields.detail} (config.yaml permits it, but the ${ca.role} certificate's name constraints do not: re-sign it with \`mutual intermediate csr --role ${req.role}\`, \`mutual offline sign-intermediate\` and \`mutual intermediate install\`)` });
    }
    const der = await ca.template.sign(fields);
    // newSerial sets the second-highest bit, so the hex has no leading zeros to strip.
    const serial = fields.serial.toString('hex');
    const rec: CertificateRecord = {
      issuerKeyId: ca.keyId, serial, role: req.role, subject: commonName ? `CN=${commonName}` : `O=${this.config.name}`, identity, names: checked,
      notBefore, notAfter, fingerprint: crypto.hash('sha256', der, 'hex'), der, renewedFrom: req.renewedFrom, issuedAt: floorSeconds(now), issuedBy: req.actor ?? 'cli',
    };
    let superseded: StoredCertificate[] | undefined;
    if (req.persist) await req.persist(rec);
    else if (req.spendToken) {
      // The token is spent in the transaction that records the certificate: never one without
      // the other. A replay is refused there; what was signed for it is dropped unseen.
      if (!(await this.store.recordEnrollment(rec, req.spendToken))) throw new MutualError('TOKEN_REPLAYED');
    } else if (req.renewedFrom === undefined) await this.#commits.add(rec);
    else {
      // A renewal has its own transaction (not group commit): the checks and the lineage bound
      // must see what other replicas committed, and a refusal must not fail a whole batch.
      const grace = req.renewalGraceSeconds ?? 0;
      if (!(grace >= 0 && grace <= MAX_RENEWAL_GRACE_SECONDS)) throw new TypeError(`renewalGraceSeconds must be 0 to ${MAX_RENEWAL_GRACE_SECONDS}`);
      ({ superseded } = await this.store.recordRenewal({
        record: { ...rec, renewedFrom: req.renewedFrom }, limit: { max: RENEWALS_PER_WINDOW, windowSeconds: RENEWAL_WINDOW_SECONDS },
        supersedeExpiringAfter: new Date(rec.issuedAt.getTime() - grace * 1000),
      }));
      await this.#afterRevocations(superseded, rec.issuedAt);
    }
    if (issuedChannel.hasSubscribers) issuedChannel.publish({ serial, role: req.role, identity, names: checked, notAfter });
    const certificatePem = toPem(der, 'CERTIFICATE');
    return { serial, certificate: der, certificatePem, chainPem: ca.chainPem, fullchainPem: certificatePem + ca.chainPem, privateKey, notAfter, identity, ...(superseded ? { superseded } : {}) };
  }

  /**
   * Renews a certificate this CA issued, for a caller that proved it holds the key (mTLS): the
   * presented certificate must be in the inventory byte for byte (RENEW_NOT_ALLOWED), unrevoked
   * (CERT_REVOKED) and unexpired or inside the grace period (CERT_EXPIRED). The renewal keeps the
   * names and role; it is recorded with the lineage bound (see {@link IssueRequest.renewedFrom}):
   * a lineage holds at most two valid certificates, the current one and its successor.
   */
  async renew(req: RenewRequest): Promise<IssueResult> {
    const now = req.now ?? this.now();
    const graceSeconds = req.graceSeconds ?? 0;
    if (!(graceSeconds >= 0 && graceSeconds <= MAX_RENEWAL_GRACE_SECONDS)) throw new TypeError(`graceSeconds must be 0 to ${MAX_RENEWAL_GRACE_SECONDS}`);
    const cur = parseCertificate(req.certificate);
    const stored = await this.store.getCertificate(cur.serial);
    if (!stored || !stored.der.equals(cur.der)) throw new MutualError('RENEW_NOT_ALLOWED', { detail: 'the certificate was not issued by this CA' });
    if (stored.role !== 'server' && stored.role !== 'client') throw new MutualError('RENEW_NOT_ALLOWED', { detail: `a ${stored.role} certificate is not renewed this way` });
    if (stored.status === 'revoked') throw new MutualError('CERT_REVOKED', { serial: stored.serial, detail: `revoked ${stored.revokedAt?.toISOString() ?? ''} (${stored.reason ?? 'unspecified'})` });
    if (now.getTime() > stored.notAfter.getTime() + graceSeconds * 1000) {
      throw new MutualError('CERT_EXPIRED', { serial: stored.serial, detail: `expired ${stored.notAfter.toISOString()}${graceSeconds ? `, beyond the ${graceSeconds} s grace period` : ''}; enroll again with a token` });
    }
    // The lifetime of the certificate renewed (notAfter - issuedAt: exact, unlike notBefore, which
    // is backdated and clamped to the issuer's), not the profile default: a short-lived
    // certificate stays short-lived through its renewals.
    // One cut short by its issuer's expiry (since re-signed) gets the profile default again.
    const clamped = this.issuerByKeyId(stored.issuerKeyId)?.info.notAfter.getTime() === stored.notAfter.getTime();
    const lifetimeSeconds = clamped ? undefined : Math.max(1, Math.min(Math.round((stored.notAfter.getTime() - stored.issuedAt.getTime()) / 1000), profileLifetimes(this.config.profiles[stored.role]).maxSeconds));
    return this.issue({
      role: stored.role, names: stored.names, actor: `renew:${stored.serial}`, renewedFrom: stored.serial, renewalGraceSeconds: graceSeconds, now,
      ...(lifetimeSeconds !== undefined ? { lifetimeSeconds } : {}),
      // Without a CSR the same key is certified again.
      ...(req.csr !== undefined ? { csr: req.csr } : { spki: cur.spki }),
    });
  }

  /**
   * Issues a delegated OCSP responder certificate (EKU OCSPSigning, ocsp-nocheck, RFC 6960
   * 4.2.2.2) for one intermediate, with a new key; recorded in the inventory like every other.
   */
  async issueOcspResponder(ca: IntermediateCa, lifetimeSeconds: number, now: Date = this.now()): Promise<{ certificate: Buffer; signer: Signer; notAfter: Date }> {
    const which = ca.role === 'server-ca' ? 'server' : 'client';
    // A new key comes with every responder certificate. It lives only in memory, or with
    // `keys.ocspResponderKeys: store` on the token as a session object: either way it is gone when
    // this process is, and nothing on disk names it.
    const signer = generateSigner('p256', newKeyOptions(ocspKeyStore(this.config), 'ocsp', true));
    const notBefore = floorSeconds(new Date(Math.max(now.getTime() - BACKDATE_MS, ca.info.notBefore.getTime())));
    const notAfter = floorSeconds(new Date(Math.min(now.getTime() + lifetimeSeconds * 1000, ca.info.notAfter.getTime())));
    let template = this.#ocspTemplates.get(ca.keyId);
    if (!template) this.#ocspTemplates.set(ca.keyId, (template = createCertificateTemplate(ca.template.issuer, { role: 'ocsp' })));
    const fields = { serial: newSerial(), notBefore, notAfter, subject: subjectFor(`${this.config.name} ${which} OCSP responder`), spki: spkiDer(signer.publicKey) };
    lintCertificate('ocsp', fields, ca.lint);
    const der = await template.sign(fields);
    await this.#commits.add({
      issuerKeyId: ca.keyId, serial: fields.serial.toString('hex'), role: 'ocsp', subject: `CN=${this.config.name} ${which} OCSP responder`, names: { dns: [], ip: [], uri: [] },
      notBefore, notAfter, fingerprint: crypto.hash('sha256', der, 'hex'), der, issuedAt: floorSeconds(now), issuedBy: 'ocsp-responder',
    });
    return { certificate: der, signer, notAfter };
  }

  /** Responder certificate templates by issuer key id. */
  readonly #ocspTemplates = new Map<string, CertificateTemplate>();

  /** Finds a certificate by serial or by its PEM/DER. */
  async find(ref: { serial?: string; certificate?: Uint8Array | string }): Promise<StoredCertificate> {
    let serial = ref.serial;
    let issuerKeyId: string | undefined;
    if (ref.certificate !== undefined) {
      const info = parseCertificate(readPemOrDer(ref.certificate, ['CERTIFICATE']));
      const ca = info.authorityKeyId && this.issuerByKeyId(info.authorityKeyId.toString('hex'));
      if (!ca || !ca.info.subjectName.equals(info.issuerName)) throw new MutualError('CERT_WRONG_ISSUER', { detail: `issued by "${info.issuer}"` });
      serial = info.serial;
      issuerKeyId = ca.keyId;
    }
    // Malformed is not "not found": the caller typed something that cannot name any certificate.
    if (!serial || !/^(0x)?[0-9a-fA-F:]{1,64}$/.test(serial)) throw new MutualError('SERIAL_INVALID', { detail: `${JSON.stringify(String(serial ?? '').slice(0, 80))} is not a hex serial nor a certificate file` });
    const found = await this.store.getCertificate(serial.replace(/^0x/, '').replace(/:/g, ''), issuerKeyId);
    if (!found) throw new MutualError('CERT_NOT_FOUND', { serial, detail: serial });
    // A file that names one of our serials but is not byte for byte the certificate we issued
    // (a forged or altered copy) does not get to act on it.
    if (ref.certificate !== undefined && !found.der.equals(readPemOrDer(ref.certificate, ['CERTIFICATE']))) {
      throw new MutualError('CERT_WRONG_ISSUER', { detail: `the file is not the certificate ${found.serial} this CA issued` });
    }
    return found;
  }

  /**
   * Revokes a certificate and regenerates its issuer's CRL. A revocation for any reason but
   * `superseded` also revokes, in the same transaction and with the same time and reason, every
   * certificate renewed from it, directly or not (they were authorized by it), that is valid and
   * expired less than {@link MAX_RENEWAL_GRACE_SECONDS} ago; `covered` lists them, and their
   * issuers' CRLs are regenerated too. Revoking an already revoked certificate still covers its
   * renewals (CERT_ALREADY_REVOKED only when nothing is left to revoke).
   */
  async revoke(ref: { serial?: string; certificate?: Uint8Array | string; reason?: RevocationReason; actor?: string; now?: Date; /** Default true; the server coalesces instead. */ writeCrl?: boolean }): Promise<RevokeResult> {
    const cert = await this.find(ref);
    const ca = this.issuerByKeyId(cert.issuerKeyId);
    if (!ca) throw new MutualError('CERT_WRONG_ISSUER', { detail: 'the certificate was issued by an intermediate this CA no longer uses' });
    const revokedAt = floorSeconds(ref.now ?? this.now());
    const reason = ref.reason ?? 'unspecified';
    const recorded = await this.store.recordRevocation({
      issuerKeyId: cert.issuerKeyId, serial: cert.serial, revokedAt, reason,
      crlEntry: encodeRevokedEntry(Buffer.from(cert.serial.length % 2 ? '0' + cert.serial : cert.serial, 'hex'), revokedAt, reason),
      ...(reason === 'superseded' ? {} : { renewalsExpiringAfter: new Date(revokedAt.getTime() - MAX_RENEWAL_GRACE_SECONDS * 1000) }),
    }, ref.actor ?? 'cli');
    const { covered, ...stored } = recorded;
    // The certificate itself only when this call revoked it (not when it only covered renewals).
    const changed = cert.status === 'revoked' ? covered : [stored, ...covered];
    if (ref.writeCrl !== false) {
      for (const kid of new Set(changed.map((c) => c.issuerKeyId))) {
        const issuer = this.issuerByKeyId(kid);
        if (issuer) await this.writeCrlOf(issuer, revokedAt);
      }
    }
    await this.#afterRevocations(changed, revokedAt);
    return { ...stored, covered };
  }

  /** Announces revocations on `mutual:ca:revoked` (CRLs are the caller's: see revoke()). */
  async #afterRevocations(list: StoredCertificate[], at: Date): Promise<void> {
    if (!revokedChannel.hasSubscribers) return;
    for (const c of list) revokedChannel.publish({ serial: c.serial, issuerKeyId: c.issuerKeyId, reason: c.reason ?? 'unspecified', revokedAt: c.revokedAt ?? at });
  }

  /** Builds a fresh CRL for an intermediate (DER). */
  async buildCrl(which: LeafRole, now: Date = this.now()): Promise<Buffer> {
    return this.#buildCrlOf(this.issuerFor(which), now);
  }

  async #buildCrlOf(ca: IntermediateCa, now: Date): Promise<Buffer> {
    const thisUpdate = floorSeconds(now);
    return buildCrl({
      issuerName: ca.info.subjectName,
      authorityKeyId: Buffer.from(ca.keyId, 'hex'),
      crlNumber: await this.store.nextCrlNumber(ca.keyId),
      thisUpdate,
      nextUpdate: new Date(Math.min(thisUpdate.getTime() + CRL_LIFETIME_MS, ca.info.notAfter.getTime())),
      entries: await this.store.crlEntries(ca.keyId, now),
      signer: ca.signer,
    });
  }

  /**
   * The name of an intermediate's CRL: `server` or `client` for the current ones, and
   * `<role>.prev-<first 16 hex of the key id>` for one retired by a key rotation. The CRL is
   * written to `<home>/ca/<name>.crl` and served at `/crl/<name>.crl`.
   */
  crlName(ca: IntermediateCa): string {
    const which = ca.role === 'server-ca' ? 'server' : 'client';
    return this.#isRetired(ca) ? `${which}.prev-${ca.keyId.slice(0, 16)}` : which;
  }

  /** By key, not object: an intermediate loaded before a reload() is still known. */
  #isRetired(ca: IntermediateCa): boolean {
    return this.retired.some((r) => r.keyId === ca.keyId);
  }

  /**
   * The name that stays with an intermediate's key, current or retired: `server.<first 16 hex of
   * the key id>`. Certificates name `/crl/<it>.crl` and `/ca/<it>.crt` in their CRL Distribution
   * Points and AIA, and the server answers under it as well as under {@link crlName}.
   */
  keyedName(ca: IntermediateCa): string {
    return keyedName(ca.role === 'server-ca' ? 'server' : 'client', ca.keyId);
  }

  /** Builds the CRL of any of our intermediates, current or retired, and writes it to `<home>/ca/<crlName>.crl`. */
  async writeCrlOf(ca: IntermediateCa, now: Date = this.now()): Promise<Buffer> {
    const der = await this.#buildCrlOf(ca, now);
    writeFileAtomic(`${this.layout.caDir}/${this.crlName(ca)}.crl`, der);
    return der;
  }

  /** Builds the CRL and writes it to `<home>/ca/<which>.crl` (DER). */
  writeCrl(which: LeafRole, now: Date = this.now()): Promise<Buffer> {
    return this.writeCrlOf(this.issuerFor(which), now);
  }

  /** Lists the inventory. */
  list(filter: ListFilter): Promise<StoredCertificate[]> {
    return this.store.listCertificates(filter);
  }

  /**
   * The inventory row of a serial (lowercase hex, as stored), of one issuer when `issuerKeyId` is
   * given; undefined when there is none. Unlike {@link find}, no parsing and no error: for callers
   * that decide themselves what a missing row means (an OCSP answer, an admin check).
   */
  getCertificate(serial: string, issuerKeyId?: string): Promise<StoredCertificate | undefined> {
    return this.store.getCertificate(serial, issuerKeyId);
  }

  /**
   * Intermediates retired by a key rotation that are still valid at `now`: they keep signing CRLs
   * and answering OCSP for what they issued, and stay trusted for client certificates, until
   * they expire.
   */
  liveRetired(now: Date = this.now()): IntermediateCa[] {
    return this.retired.filter((r) => now < r.info.notAfter);
  }

  /** Closes the store (after pending commits). */
  async close(): Promise<void> {
    await this.#commits.drain();
    await this.store.close();
  }
}

export type { DistributionUrls, Role };
