/**
 * The ACME lifecycle (RFC 8555, RFC 8737, RFC 8738, RFC 9773) behind the transport's contract
 * ({@link AcmeService}, acme-api.ts): accounts with their key and EAB checks, orders checked
 * against the CA's policy, authorizations and their challenges validated in the background,
 * finalize through the authority's issuance pipeline (the certificate and the valid order commit
 * in one transaction), download, revocation through the authority (CRL and OCSP follow) and
 * renewal information. All state is in the store, shared by replicas; nothing here is per process
 * but the validations this process runs ({@link AcmeAuthority.settle}).
 */
import crypto from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { parseCertificate } from '../../core/certificate.ts';
import { parseCsr } from '../../core/csr.ts';
import { parseDuration } from '../../core/duration.ts';
import { isMutualError, MutualError } from '../../core/errors.ts';
import { bytesToIp, ipToBytes, isIpAddress } from '../../core/names.ts';
import { toPem } from '../../core/pem.ts';
import { reasonName, type RevocationReason } from '../../core/revocation-reasons.ts';
import type { CertificateAuthority } from '../authority.ts';
import { acmeConfig, type AcmeConfig } from '../config.ts';
import type {
  AcmeAccount, AcmeAuthorization, AcmeCertificateChain, AcmeChallenge, AcmeChallengeType, AcmeIdentifier, AcmeMeta, AcmeOrder, AcmeService, FlattenedJws, RenewalInfo,
} from './acme-api.ts';
import { checkAccountKey, checkContacts, eabKeyId, verifyEab } from './acme-accounts.ts';
import { checkIdentifiers } from './acme-identifiers.ts';
import { AcmeNonces } from './acme-nonces.ts';
import { authorizationOfChallenge, type AcmeAuthorizationRecord, type AcmeOrderRecord, type AcmeStore, type ChallengeOutcome } from './acme-store.ts';
import { challengeValidators, type AcmeValidators, type ValidationOptions } from './acme-validators.ts';
import { keyAuthorization as keyAuthorizationOf } from './key-authorization.ts';
import { parseCertId, renewalWindow } from './renewal-window.ts';

/** Attempts of one challenge validation before it is invalid (RFC 8555 section 8.2 lets the server retry). */
export const VALIDATION_ATTEMPTS = 3;
/** Wait before the second attempt; the third waits twice as long. */
export const VALIDATION_BACKOFF_MS = 2000;
/** Most order ids listed for an account (RFC 8555 section 7.1.2.1 allows paging; one page here). */
export const MAX_LISTED_ORDERS = 1000;
/** Revocation reasons ACME clients may give (RFC 8555 section 7.6; certificateHold (6) is not supported). */
export const ACME_REVOCATION_REASONS: ReadonlySet<number> = new Set([0, 1, 3, 4, 5, 9]);
/**
 * Every validation's end: `{ authorizationId, challengeId, type, identifier, valid, error?, storeError? }`
 * (`storeError` when the outcome could not be recorded: the challenge stays processing until its
 * authorization expires).
 */
const validatedChannel = diagnostics.channel('mutual:acme:validated');

/** The rate-limit window: one hour (`acme.ordersPerHour`). */
const ORDER_WINDOW_SECONDS = 3600;

/** Options of {@link AcmeAuthority}. */
export interface AcmeAuthorityOptions {
  ca: CertificateAuthority;
  /** Default: the CA's store's (`ca.store.acme`). */
  store?: AcmeStore;
  /** Default: config.yaml's `acme:` section of the CA (`acmeConfig(ca.config)`). */
  config?: AcmeConfig;
  /** Default: {@link challengeValidators}, the real ones. */
  validators?: AcmeValidators;
  /** Default: the CA's clock. */
  now?: () => Date;
  /** Validation attempts and the backoff between them; default {@link VALIDATION_ATTEMPTS}, {@link VALIDATION_BACKOFF_MS}. */
  retry?: { attempts: number; backoffMs: number };
  /** Validators connect here instead of resolving the identifier (tests). Default: none. */
  hostOverride?: string;
}

const randomId = (): string => crypto.randomBytes(16).toString('base64url');

/** See the module comment. */
export class AcmeAuthority implements AcmeService {
  readonly #ca: CertificateAuthority;
  readonly #store: AcmeStore;
  readonly #config: AcmeConfig;
  readonly #validators: AcmeValidators;
  readonly #now: () => Date;
  readonly #nonces: AcmeNonces;
  readonly #retry: { attempts: number; backoffMs: number };
  readonly #hostOverride: string | undefined;
  /** Validations running in this process. */
  readonly #running = new Set<Promise<void>>();

  constructor(o: AcmeAuthorityOptions) {
    this.#ca = o.ca;
    this.#store = o.store ?? o.ca.store.acme;
    this.#config = o.config ?? acmeConfig(o.ca.config);
    this.#validators = o.validators ?? challengeValidators;
    this.#now = o.now ?? o.ca.now;
    this.#nonces = new AcmeNonces(this.#store, this.#now);
    this.#retry = o.retry ?? { attempts: VALIDATION_ATTEMPTS, backoffMs: VALIDATION_BACKOFF_MS };
    if (!(Number.isInteger(this.#retry.attempts) && this.#retry.attempts >= 1 && this.#retry.backoffMs >= 0)) throw new TypeError('retry needs attempts >= 1 and backoffMs >= 0');
    this.#hostOverride = o.hostOverride;
  }

  meta(): AcmeMeta {
    const c = this.#config;
    return { ...(c.termsOfService ? { termsOfService: c.termsOfService } : {}), ...(c.website ? { website: c.website } : {}), caaIdentities: c.caaIdentities, externalAccountRequired: c.externalAccountRequired };
  }

  newNonce(): Promise<string> {
    return this.#nonces.make();
  }

  spendNonce(nonce: string): Promise<boolean> {
    return this.#nonces.spend(nonce);
  }

  accountByKey(thumbprint: string): Promise<AcmeAccount | undefined> {
    return this.#store.accountByThumbprint(thumbprint);
  }

  account(id: string): Promise<AcmeAccount | undefined> {
    return this.#store.account(id);
  }

  async newAccount(o: { jwk: JsonWebKey; thumbprint: string; contact: string[]; termsOfServiceAgreed: boolean; eab?: FlattenedJws; accountUrl: string }): Promise<{ account: AcmeAccount; created: boolean }> {
    const existing = await this.#store.accountByThumbprint(o.thumbprint);
    if (existing) return { account: existing, created: false };
    await checkAccountKey(o.jwk, o.thumbprint);
    if (this.#config.termsOfService && o.termsOfServiceAgreed !== true) throw new MutualError('ACME_TERMS_NOT_AGREED', { detail: `agree to ${this.#config.termsOfService}` });
    const contact = checkContacts(o.contact ?? []);
    if (!o.eab && this.#config.externalAccountRequired) throw new MutualError('ACME_EXTERNAL_ACCOUNT_REQUIRED');
    const now = this.#now();
    let eab: { keyId: string; at: Date } | undefined;
    if (o.eab) {
      const keyId = eabKeyId(o.eab);
      const key = await this.#store.eabKey(keyId);
      if (!key) throw new MutualError('ACME_EAB_INVALID', { detail: `no EAB key ${JSON.stringify(keyId.slice(0, 64))}` });
      await verifyEab(o.eab, key, { accountJwk: o.jwk, accountThumbprint: o.thumbprint, accountUrl: o.accountUrl });
      eab = { keyId, at: now };
    }
    const account: AcmeAccount = { id: randomId(), status: 'valid', jwk: o.jwk, thumbprint: o.thumbprint, contact, termsOfServiceAgreed: o.termsOfServiceAgreed === true, createdAt: now };
    // The store binds the EAB key in the transaction that creates the account (a key binds one).
    return this.#store.createAccount(account, eab);
  }

  async updateAccount(accountId: string, o: { contact?: string[]; status?: 'deactivated' }): Promise<AcmeAccount> {
    await this.#activeAccount(accountId);
    if (o.status !== undefined && o.status !== 'deactivated') throw new MutualError('ACME_MALFORMED', { detail: 'status may only be set to "deactivated"' });
    const contact = o.contact === undefined ? undefined : checkContacts(o.contact);
    const updated = await this.#store.updateAccount(accountId, { ...(contact ? { contact } : {}), ...(o.status ? { status: o.status } : {}) });
    if (!updated) throw new MutualError('ACME_ACCOUNT_DOES_NOT_EXIST');
    return updated;
  }

  async changeKey(accountId: string, newJwk: JsonWebKey, newThumbprint: string): Promise<AcmeAccount> {
    await this.#activeAccount(accountId);
    await checkAccountKey(newJwk, newThumbprint);
    return this.#store.changeAccountKey(accountId, newJwk, newThumbprint);
  }

  async orders(accountId: string): Promise<string[]> {
    await this.#activeAccount(accountId);
    return this.#store.orderIds(accountId, MAX_LISTED_ORDERS);
  }

  /** The account, which must exist and be valid (ACME_ACCOUNT_DOES_NOT_EXIST, ACME_ACCOUNT_DEACTIVATED). */
  async #activeAccount(accountId: string): Promise<AcmeAccount> {
    const a = await this.#store.account(accountId);
    if (!a) throw new MutualError('ACME_ACCOUNT_DOES_NOT_EXIST');
    if (a.status !== 'valid') throw new MutualError('ACME_ACCOUNT_DEACTIVATED', { detail: `account ${accountId} is ${a.status}` });
    return a;
  }

  async newOrder(accountId: string, o: { identifiers: AcmeIdentifier[]; notBefore?: Date; notAfter?: Date; replaces?: string }): Promise<AcmeOrder> {
    const account = await this.#activeAccount(accountId);
    // The lifetime is the CA's (acme.certificateLifetime), as Boulder does: refused rather than ignored.
    if (o.notBefore !== undefined || o.notAfter !== undefined) throw new MutualError('ACME_MALFORMED', { detail: 'notBefore and notAfter are not supported: the CA sets the lifetime (acme.certificateLifetime)' });
    if (o.replaces !== undefined) parseCertId(o.replaces);
    const eabNames = account.eabKeyId ? (await this.#store.eabKey(account.eabKeyId))?.names ?? [] : undefined;
    const identifiers = checkIdentifiers(o.identifiers, this.#ca.policy, eabNames);
    const now = this.#now();
    const fresh: AcmeAuthorizationRecord[] = [];
    const ids: string[] = [];
    let expires = now.getTime() + parseDuration(this.#config.orderLifetime);
    for (const identifier of identifiers) {
      // A still-valid (or pending) authorization of this account for the name is reused (RFC 8555 section 7.4).
      const reuse = await this.#store.reusableAuthorization(accountId, identifier, now);
      const a = reuse ?? this.#newAuthorization(accountId, identifier, now);
      if (!reuse) fresh.push(a);
      ids.push(a.id);
      expires = Math.min(expires, a.expires.getTime());
    }
    const order: AcmeOrderRecord = {
      id: randomId(), accountId, status: 'pending', expires: new Date(expires), identifiers, authorizationIds: ids, createdAt: now, ...(o.replaces ? { replaces: o.replaces } : {}),
    };
    await this.#store.createOrder(order, fresh, { max: this.#config.ordersPerHour, windowSeconds: ORDER_WINDOW_SECONDS });
    return this.order(accountId, order.id);
  }

  #newAuthorization(accountId: string, identifier: AcmeIdentifier, now: Date): AcmeAuthorizationRecord {
    const id = randomId();
    const wildcard = identifier.value.startsWith('*.');
    // http-01 proves control of one host, not of a whole zone (RFC 8555 section 8.3).
    const types = this.#config.challenges.filter((t) => !(wildcard && t === 'http-01'));
    const challenges: AcmeChallenge[] = types.map((type: AcmeChallengeType, i) => ({ id: `${id}${i}`, type, status: 'pending', token: crypto.randomBytes(32).toString('base64url') }));
    return {
      id, accountId, identifier: wildcard ? { type: 'dns', value: identifier.value.slice(2) } : identifier, status: 'pending',
      expires: new Date(now.getTime() + parseDuration(this.#config.authorizationLifetime)), challenges, wildcard,
    };
  }

  async order(accountId: string, orderId: string): Promise<AcmeOrder> {
    return this.#orderView(await this.#ownOrder(accountId, orderId));
  }

  async #ownOrder(accountId: string, orderId: string): Promise<AcmeOrderRecord> {
    const o = await this.#store.order(orderId);
    if (!o) throw new MutualError('ACME_NOT_FOUND', { detail: `no order ${String(orderId).slice(0, 64)}` });
    if (o.accountId !== accountId) throw new MutualError('ACME_UNAUTHORIZED', { detail: 'the order belongs to another account' });
    return o;
  }

  /**
   * An order as the client sees it: past its expiry, an order not yet issued reads as invalid (one
   * left processing by a process killed while it issued included).
   */
  #orderView(o: AcmeOrderRecord): AcmeOrder {
    const { createdAt: _, ...order } = o;
    if (o.status !== 'valid' && o.status !== 'invalid' && o.expires.getTime() <= this.#now().getTime()) {
      return { ...order, status: 'invalid', error: { code: 'ACME_UNAUTHORIZED', detail: `the order expired at ${o.expires.toISOString()}` } };
    }
    return order;
  }

  async authorization(accountId: string, authzId: string): Promise<AcmeAuthorization> {
    return this.#authorizationView(await this.#ownAuthorization(accountId, authzId));
  }

  async #ownAuthorization(accountId: string, authzId: string): Promise<AcmeAuthorizationRecord> {
    const a = await this.#store.authorization(authzId);
    if (!a) throw new MutualError('ACME_NOT_FOUND', { detail: `no authorization ${String(authzId).slice(0, 64)}` });
    if (a.accountId !== accountId) throw new MutualError('ACME_UNAUTHORIZED', { detail: 'the authorization belongs to another account' });
    return a;
  }

  /** An authorization as the client sees it: past its expiry, pending and valid read as expired. */
  #authorizationView(a: AcmeAuthorizationRecord): AcmeAuthorization {
    const { accountId: _, ...authz } = a;
    if ((a.status === 'pending' || a.status === 'valid') && a.expires.getTime() <= this.#now().getTime()) return { ...authz, status: 'expired' };
    return authz;
  }

  async deactivateAuthorization(accountId: string, authzId: string): Promise<AcmeAuthorization> {
    await this.#activeAccount(accountId);
    await this.#ownAuthorization(accountId, authzId);
    await this.#store.deactivateAuthorization(authzId);
    return this.authorization(accountId, authzId);
  }

  async respondChallenge(accountId: string, challengeId: string): Promise<{ challenge: AcmeChallenge; authorizationId: string }> {
    const account = await this.#activeAccount(accountId);
    const authzId = authorizationOfChallenge(String(challengeId));
    const a = await this.#ownAuthorization(accountId, authzId).catch((e: unknown) => {
      throw isMutualError(e, 'ACME_NOT_FOUND') ? new MutualError('ACME_NOT_FOUND', { detail: `no challenge ${String(challengeId).slice(0, 64)}` }) : e;
    });
    const c = a.challenges.find((x) => x.id === challengeId);
    if (!c) throw new MutualError('ACME_NOT_FOUND', { detail: `no challenge ${String(challengeId).slice(0, 64)}` });
    const view = this.#authorizationView(a);
    if (view.status === 'expired') throw new MutualError('ACME_UNAUTHORIZED', { detail: `the authorization expired at ${a.expires.toISOString()}` });
    // The compare-and-set makes one validation per challenge, whichever replica the client asked.
    if (c.status === 'pending' && (await this.#store.startChallenge(authzId, c.id))) {
      const run = this.#validate(a, c, account.thumbprint).finally(() => this.#running.delete(run));
      this.#running.add(run);
    }
    const now = (await this.#store.authorization(authzId)) ?? a;
    return { challenge: now.challenges.find((x) => x.id === challengeId)!, authorizationId: authzId };
  }

  /** Validates a challenge with bounded attempts and records the outcome; never rejects. */
  async #validate(a: AcmeAuthorizationRecord, c: AcmeChallenge, thumbprint: string): Promise<void> {
    const keyAuthorization = keyAuthorizationOf(c.token, thumbprint);
    const o: ValidationOptions = {
      httpPort: this.#config.httpPort, tlsAlpnPort: this.#config.tlsAlpnPort, timeoutMs: parseDuration(this.#config.validationTimeout),
      ...(this.#config.dns.servers ? { dnsServers: this.#config.dns.servers } : {}), ...(this.#hostOverride ? { hostOverride: this.#hostOverride } : {}),
    };
    const identifier = a.identifier;
    let last: { code: string; detail: string } = { code: 'ACME_CONNECTION', detail: 'not attempted' };
    for (let attempt = 1; attempt <= this.#retry.attempts; attempt++) {
      try {
        if (c.type === 'http-01') await this.#validators.http01(identifier, c.token, keyAuthorization, o);
        else if (c.type === 'dns-01') await this.#validators.dns01(identifier, keyAuthorization, o);
        else await this.#validators.tlsAlpn01(identifier, keyAuthorization, o);
        await this.#finish(a, c, { valid: true, at: this.#now() });
        return;
      } catch (e) {
        last = isMutualError(e) ? { code: e.code, detail: e.fields.detail ?? e.message } : { code: 'ACME_CONNECTION', detail: (e as Error)?.message ?? String(e) };
      }
      if (attempt < this.#retry.attempts) await new Promise((r) => setTimeout(r, this.#retry.backoffMs * attempt));
    }
    const detail = `${c.type} for ${identifier.value}: ${last.detail} (after ${this.#retry.attempts} attempt${this.#retry.attempts > 1 ? 's' : ''})`;
    await this.#finish(a, c, { valid: false, error: { code: last.code, detail } });
  }

  /** Records a validation's outcome and announces it; a store failure is announced, not thrown. */
  async #finish(a: AcmeAuthorizationRecord, c: AcmeChallenge, outcome: ChallengeOutcome): Promise<void> {
    let storeError: string | undefined;
    try {
      await this.#store.finishChallenge(a.id, c.id, outcome);
    } catch (e) {
      storeError = (e as Error).message;
    }
    if (validatedChannel.hasSubscribers) {
      validatedChannel.publish({ authorizationId: a.id, challengeId: c.id, type: c.type, identifier: a.identifier, valid: outcome.valid, ...(outcome.valid ? {} : { error: outcome.error }), ...(storeError ? { storeError } : {}) });
    }
  }

  /** Resolves once every validation this process started (and those they lead to) has ended (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.#running.size) await Promise.allSettled([...this.#running]);
  }

  async finalize(accountId: string, orderId: string, csrDer: Buffer): Promise<AcmeOrder> {
    await this.#activeAccount(accountId);
    const view = this.#orderView(await this.#ownOrder(accountId, orderId));
    if (view.status !== 'ready') throw new MutualError('ACME_ORDER_NOT_READY', { detail: `the order is ${view.status}` });
    // Parsed once here and handed to the pipeline as is. A CSR that does not match leaves the
    // order ready: the client may send a corrected one.
    const csr = parseCsr(csrDer);
    const names = csrNamesMatch(csr.names, csr.commonName, view.identifiers);
    if (!(await this.#store.beginFinalize(orderId))) throw new MutualError('ACME_ORDER_NOT_READY', { detail: 'the order is being finalized by another request' });
    try {
      await this.#ca.issue({
        role: 'server', csr, names, lifetimeSeconds: parseDuration(this.#config.certificateLifetime) / 1000, actor: `acme:${accountId}`, now: this.#now(),
        persist: (record) => this.#store.completeFinalize(orderId, record),
      });
    } catch (e) {
      const error = isMutualError(e) ? { code: e.code, detail: e.fields.detail ?? e.message } : { code: 'STORE_FAILED', detail: 'the certificate could not be issued' };
      await this.#store.failFinalize(orderId, error).catch(() => undefined);
      throw e;
    }
    return this.order(accountId, orderId);
  }

  async certificate(accountId: string, certificateId: string, alternate: number): Promise<AcmeCertificateChain> {
    if (alternate !== 0) throw new MutualError('ACME_NOT_FOUND', { detail: `no alternate chain ${alternate}` });
    if (typeof certificateId !== 'string' || !/^[0-9a-f]{1,64}$/.test(certificateId)) throw new MutualError('ACME_NOT_FOUND', { detail: 'no such certificate' });
    const cert = await this.#ca.getCertificate(certificateId);
    if (!cert) throw new MutualError('ACME_NOT_FOUND', { detail: `no certificate ${certificateId}` });
    if (cert.issuedBy !== `acme:${accountId}`) throw new MutualError('ACME_UNAUTHORIZED', { detail: 'the certificate was ordered by another account' });
    const issuer = this.#ca.issuerByKeyId(cert.issuerKeyId);
    if (!issuer) throw new MutualError('ACME_NOT_FOUND', { detail: 'the certificate\'s intermediate is no longer known' });
    // One chain: the leaf and the intermediate that signed it (alternates: see docs/acme.md).
    return { pem: toPem(cert.der, 'CERTIFICATE') + issuer.chainPem, alternates: 0 };
  }

  async revoke(o: { certificateDer: Buffer; reason?: number; by: { accountId: string } | { jwk: JsonWebKey } }): Promise<void> {
    const code = o.reason ?? 0;
    if (!ACME_REVOCATION_REASONS.has(code)) throw new MutualError('ACME_BAD_REVOCATION_REASON', { detail: `reason ${String(code).slice(0, 8)}` });
    const reason: RevocationReason = reasonName(code)!;
    // The inventory's copy, byte for byte (CERT_WRONG_ISSUER, CERT_NOT_FOUND otherwise).
    const stored = await this.#ca.find({ certificate: o.certificateDer });
    let actor: string;
    if ('jwk' in o.by) {
      let spki: Buffer;
      try {
        spki = crypto.createPublicKey({ key: o.by.jwk as crypto.JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'der' });
      } catch {
        throw new MutualError('ACME_UNAUTHORIZED', { detail: 'the JWS key is not the certificate\'s key' });
      }
      if (!spki.equals(parseCertificate(stored.der).spki)) throw new MutualError('ACME_UNAUTHORIZED', { detail: 'the JWS key is not the certificate\'s key' });
      actor = 'acme:certificate-key';
    } else {
      const accountId = o.by.accountId;
      await this.#activeAccount(accountId);
      if (stored.issuedBy !== `acme:${accountId}` && !(await this.#holdsAllNames(accountId, stored.names))) {
        throw new MutualError('ACME_UNAUTHORIZED', { detail: 'the account neither ordered the certificate nor holds valid authorizations for all its names' });
      }
      actor = `acme:${accountId}`;
    }
    await this.#ca.revoke({ certificate: stored.der, reason, actor, now: this.#now() });
  }

  async #holdsAllNames(accountId: string, names: { dns: string[]; ip: string[] }): Promise<boolean> {
    const ids: AcmeIdentifier[] = [...names.dns.map((value) => ({ type: 'dns' as const, value })), ...names.ip.map((value) => ({ type: 'ip' as const, value }))];
    if (ids.length === 0) return false;
    for (const id of ids) {
      const a = await this.#store.reusableAuthorization(accountId, id, this.#now());
      if (a?.status !== 'valid') return false;
    }
    return true;
  }

  async renewalInfo(certId: string): Promise<RenewalInfo> {
    const { issuerKeyId, serial } = parseCertId(certId);
    const cert = await this.#ca.getCertificate(serial, issuerKeyId);
    if (!cert) throw new MutualError('ACME_NOT_FOUND', { detail: `no certificate ${certId.slice(0, 120)}` });
    // Retired by a key rotation, revoked at the root, or under a root being retired: renew now.
    return renewalWindow(cert, cert.status === 'revoked' || this.#ca.replaceNow(issuerKeyId), this.#now());
  }

  /** Removes abandoned orders and authorizations and spent nonces past their expiry. */
  expire(now: Date = this.#now()): Promise<void> {
    return this.#store.expire(now);
  }
}

/**
 * The names a CSR asks for, which must be exactly the order's identifiers (RFC 8555 section 7.4):
 * no more, no fewer, no identity URI; a CN, if any, among them. ACME_BAD_CSR otherwise.
 */
function csrNamesMatch(names: { dns: string[]; ip: string[]; uri: string[] }, commonName: string | undefined, identifiers: AcmeIdentifier[]): { dns: string[]; ip: string[]; uri: string[] } {
  const bad = (detail: string): never => {
    throw new MutualError('ACME_BAD_CSR', { detail });
  };
  if (names.uri.length) bad('the CSR asks for a URI name; ACME orders carry DNS names and IP addresses');
  const asked = new Set([...names.dns.map((d) => `dns:${d.toLowerCase().replace(/\.$/, '')}`), ...names.ip.map((i) => `ip:${isIpAddress(i) ? bytesToIp(ipToBytes(i)) : i}`)]);
  const ordered = new Set(identifiers.map((i) => `${i.type}:${i.value}`));
  const extra = [...asked].filter((x) => !ordered.has(x));
  const missing = [...ordered].filter((x) => !asked.has(x));
  if (extra.length || missing.length) bad(`${extra.length ? `not in the order: ${extra.join(', ')}` : ''}${extra.length && missing.length ? '; ' : ''}${missing.length ? `missing: ${missing.join(', ')}` : ''}`);
  if (commonName !== undefined && !identifiers.some((i) => i.value === commonName.toLowerCase())) bad(`the CN ${JSON.stringify(commonName.slice(0, 64))} is not one of the order's names`);
  return { dns: identifiers.filter((i) => i.type === 'dns').map((i) => i.value), ip: identifiers.filter((i) => i.type === 'ip').map((i) => i.value), uri: [] };
}
