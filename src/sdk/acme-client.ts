/**
 * The ACME client (RFC 8555) with renewal information (RFC 9773): directory, nonces, account
 * create-or-find (optionally bound to an external account), orders, authorizations answered by a
 * caller's {@link AcmeChallengeSolver}, finalize and download. `mutual agent` uses it for the
 * certificates agent.yaml gives an `acme:` section, against `mutual serve` or any ACME CA.
 *
 * Every request goes through the SDK's one bounded fetcher (`fetch-bytes.ts`): a size limit per
 * answer, a deadline, no redirects. JWS signing is jose's. A refusal is a MutualError
 * ACME_CLIENT_FAILED whose detail holds the problem document's type and detail.
 */
import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { FlattenedSign, calculateJwkThumbprint, type JWK } from 'jose';
import { parseCertificate } from '../core/certificate.ts';
import { MutualError, isMutualError } from '../core/errors.ts';
import { readPemOrDer } from '../core/pem.ts';
import { writeFileAtomic } from '../io/index.ts';
import { createFetchBytes, type FetchBytes, type FetchBytesResult } from './fetch-bytes.ts';

/** Largest JSON answer read (directory, account, order, authorization, renewal information). */
export const MAX_ACME_JSON_BYTES = 64 * 1024;
/** Largest certificate chain downloaded (a leaf and a few intermediates are a few KiB). */
export const MAX_ACME_CHAIN_BYTES = 256 * 1024;
/** Nonces kept from answers (RFC 8555 7.2: each answer carries one; a few spare suffice). */
export const MAX_SPARE_NONCES = 8;
/** Polls of one authorization or order before the client gives up. */
export const MAX_POLLS = 60;
/** Wait between polls when the server sends no Retry-After. */
export const DEFAULT_POLL_MS = 500;
/** Longest wait between two polls, whatever Retry-After says (the order's own bound is {@link MAX_POLLS}). */
export const MAX_POLL_MS = 30_000;
/** Re-check time of renewal information without Retry-After (RFC 9773 4.3.3 suggests a few hours). */
export const DEFAULT_ARI_RECHECK_MS = 6 * 3600_000;

const URN = 'urn:ietf:params:acme:error:';

/** The challenge types the client answers. */
export type AcmeChallengeType = 'http-01' | 'dns-01';

/** One challenge to answer: for http-01 serve `keyAuthorization` at `/.well-known/acme-challenge/<token>`; for dns-01 set TXT `dnsValue` at `dnsName`. */
export interface AcmeChallenge {
  type: AcmeChallengeType;
  /** The identifier's value (a DNS name or an IP address). */
  identifier: string;
  token: string;
  keyAuthorization: string;
  /** `_acme-challenge.<identifier>` (dns-01). */
  dnsName: string;
  /** base64url(SHA-256(keyAuthorization)) (dns-01, RFC 8555 8.4). */
  dnsValue: string;
}

/** What answers challenges; the client calls `cleanup` for every challenge it presented, success or not. */
export interface AcmeChallengeSolver {
  /** The type it answers. */
  readonly type: AcmeChallengeType;
  present(c: AcmeChallenge): Promise<void>;
  cleanup(c: AcmeChallenge): Promise<void>;
}

/** The suggested renewal window of a certificate (RFC 9773 4.2), and when to ask again. */
export interface RenewalInfo {
  start: Date;
  end: Date;
  /** When the server asks to be asked again (its Retry-After, else {@link DEFAULT_ARI_RECHECK_MS}). */
  retryAfter: Date;
  explanationUrl?: string;
}

/** Options of {@link AcmeClient}. */
export interface AcmeClientOptions {
  /** The directory URL (`https://.../acme/directory`). */
  directoryUrl: string;
  /** The account key (ES256: P-256); see {@link acmeAccountKey}. */
  accountKey: KeyObject;
  /** Trust anchors (PEM) for the server's HTTPS; default Node's bundled roots. */
  ca?: string;
  /** External account binding (RFC 8555 7.3.4): key id and HMAC key, used when the account is made. */
  eab?: { keyId: string; hmacKey: Buffer };
  /** Clock for Retry-After dates. Default `new Date()`. */
  now?: () => Date;
  /** Wait between polls. Default a timer. */
  sleep?: (ms: number) => Promise<void>;
  /** The fetcher; default {@link createFetchBytes} with `ca`. */
  fetch?: FetchBytes;
}

/** What {@link AcmeClient.obtain} is asked. */
export interface AcmeOrderOptions {
  /** DNS names and IP addresses to certify. */
  names: { dns: string[]; ip: string[] };
  /** The CSR (DER) for those names. */
  csr: Buffer;
  solver: AcmeChallengeSolver;
  /** The RFC 9773 certificate id of the certificate this one replaces (only when the server gave renewal information for it). */
  replaces?: string;
}

/** The downloaded certificate: the leaf, the rest of the chain, and both. */
export interface AcmeCertificate {
  certificate: string;
  chain: string;
  fullchain: string;
}

interface Directory {
  newNonce: string;
  newAccount: string;
  newOrder: string;
  renewalInfo?: string;
}

type Json = Record<string, unknown>;

/** The answer of a signed request, its JSON decoded when it is JSON. */
interface Answer {
  res: FetchBytesResult;
  json: Json;
}

const header = (r: FetchBytesResult, name: string): string | undefined => {
  const v = r.headers?.[name];
  return Array.isArray(v) ? v[0] : v;
};

/** The RFC 9773 certificate id: base64url(AKI keyIdentifier) "." base64url(serial DER content octets). */
export function ariCertificateId(certificate: string | Buffer): string {
  const info = parseCertificate(readPemOrDer(certificate, ['CERTIFICATE']));
  if (!info.authorityKeyId) throw new MutualError('ACME_CLIENT_FAILED', { detail: `${info.serial} has no authority key identifier: no renewal information can be asked for it` });
  // The DER INTEGER's content: a positive serial with its high bit set keeps its leading zero.
  const serial = info.serialBytes[0] & 0x80 ? Buffer.concat([Buffer.from([0]), info.serialBytes]) : info.serialBytes;
  return `${info.authorityKeyId.toString('base64url')}.${serial.toString('base64url')}`;
}

/**
 * The account key in `file`: read, or made once (P-256, PKCS#8 PEM, mode 0600) when absent. A
 * file that is not a P-256 key is refused (CONFIG_INVALID), never replaced.
 */
export function acmeAccountKey(file: string): KeyObject {
  let pem: string | undefined;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new MutualError('CONFIG_INVALID', { detail: `ACME account key ${file}: ${(e as Error).message}` });
  }
  if (pem === undefined) {
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    writeFileAtomic(file, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    return privateKey;
  }
  let key: KeyObject;
  try {
    key = crypto.createPrivateKey(pem);
  } catch (e) {
    throw new MutualError('CONFIG_INVALID', { detail: `ACME account key ${file}: ${(e as Error).message}` });
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new MutualError('CONFIG_INVALID', { detail: `ACME account key ${file}: not a P-256 key (ES256)` });
  return key;
}

/** An ACME client for one directory and one account key. Not safe for concurrent orders on one instance. */
export class AcmeClient {
  readonly #o: AcmeClientOptions;
  readonly #fetch: FetchBytes;
  readonly #now: () => Date;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #jwk: JWK;
  #directory?: Directory;
  #kid?: string;
  #nonces: string[] = [];

  constructor(o: AcmeClientOptions) {
    if (!/^https?:\/\//.test(o.directoryUrl)) throw new TypeError('directoryUrl must be an http(s) URL');
    this.#o = o;
    this.#fetch = o.fetch ?? createFetchBytes({ ca: o.ca, userAgent: 'mutual-acme-client' });
    this.#now = o.now ?? (() => new Date());
    this.#sleep = o.sleep ?? ((ms) => delay(ms));
    const { kty, crv, x, y } = crypto.createPublicKey(o.accountKey).export({ format: 'jwk' });
    this.#jwk = { kty, crv, x, y };
  }

  /** The directory (fetched once). */
  async directory(): Promise<Directory> {
    if (this.#directory) return this.#directory;
    const res = await this.#get(this.#o.directoryUrl, MAX_ACME_JSON_BYTES);
    const d = this.#json(res, this.#o.directoryUrl);
    for (const k of ['newNonce', 'newAccount', 'newOrder'] as const) {
      if (typeof d[k] !== 'string') throw new MutualError('ACME_CLIENT_FAILED', { detail: `${this.#o.directoryUrl}: the directory has no ${k}; is this an ACME directory URL?` });
    }
    this.#directory = { newNonce: d.newNonce as string, newAccount: d.newAccount as string, newOrder: d.newOrder as string, renewalInfo: typeof d.renewalInfo === 'string' ? d.renewalInfo : undefined };
    return this.#directory;
  }

  /** The account URL: the account of this key, found (onlyReturnExisting) or made (terms agreed, EAB when given). */
  async account(): Promise<string> {
    if (this.#kid) return this.#kid;
    const d = await this.directory();
    try {
      const r = await this.#post(d.newAccount, { onlyReturnExisting: true }, { jwk: true });
      this.#kid = this.#location(r, d.newAccount);
    } catch (e) {
      if (!isMutualError(e, 'ACME_CLIENT_FAILED') || e.fields.problem !== `${URN}accountDoesNotExist`) throw e;
      const payload: Json = { termsOfServiceAgreed: true };
      if (this.#o.eab) payload.externalAccountBinding = await this.#eab(d.newAccount);
      const r = await this.#post(d.newAccount, payload, { jwk: true });
      this.#kid = this.#location(r, d.newAccount);
    }
    return this.#kid;
  }

  /**
   * Orders a certificate for `o.names`, answers each pending authorization with `o.solver`, finalizes
   * with `o.csr` and downloads the chain. A server that refuses `replaces` as already replaced gets
   * the order again without it.
   */
  async obtain(o: AcmeOrderOptions): Promise<AcmeCertificate> {
    const d = await this.directory();
    await this.account();
    const identifiers = [...o.names.dns.map((value) => ({ type: 'dns', value })), ...o.names.ip.map((value) => ({ type: 'ip', value }))];
    let created: Answer;
    try {
      created = await this.#post(d.newOrder, { identifiers, ...(o.replaces ? { replaces: o.replaces } : {}) });
    } catch (e) {
      if (!o.replaces || !isMutualError(e, 'ACME_CLIENT_FAILED') || e.fields.problem !== `${URN}alreadyReplaced`) throw e;
      created = await this.#post(d.newOrder, { identifiers });
    }
    const orderUrl = this.#location(created, d.newOrder);
    let order = created.json;
    const authorizations = Array.isArray(order.authorizations) ? (order.authorizations as unknown[]).filter((u): u is string => typeof u === 'string') : [];
    for (const url of authorizations) await this.#authorize(url, o.solver);
    order = await this.#poll(orderUrl, ['ready', 'valid'], ['pending']);
    if (order.status === 'ready') {
      if (typeof order.finalize !== 'string') throw this.#bad(orderUrl, 'the order has no finalize URL');
      const fin = await this.#post(order.finalize, { csr: o.csr.toString('base64url') });
      order = fin.json.status === 'valid' ? fin.json : await this.#poll(orderUrl, ['valid'], ['ready', 'processing']);
    }
    if (typeof order.certificate !== 'string') throw this.#bad(orderUrl, 'the valid order has no certificate URL');
    const cert = await this.#post(order.certificate, undefined, { accept: 'application/pem-certificate-chain', maxBytes: MAX_ACME_CHAIN_BYTES });
    return splitChain(cert.res.body.toString('utf8'), order.certificate);
  }

  /**
   * The server's suggested renewal window for `certificate` (RFC 9773), or undefined when the
   * directory has no renewalInfo or the server does not know the certificate (404).
   */
  async renewalInfo(certificate: string | Buffer): Promise<RenewalInfo | undefined> {
    const d = await this.directory();
    if (!d.renewalInfo) return undefined;
    const url = `${d.renewalInfo.replace(/\/+$/, '')}/${ariCertificateId(certificate)}`;
    const res = await this.#get(url, MAX_ACME_JSON_BYTES);
    if (res.status === 404) return undefined;
    const j = this.#json(res, url);
    const w = j.suggestedWindow as Json | undefined;
    const start = new Date(String(w?.start));
    const end = new Date(String(w?.end));
    if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end < start) throw this.#bad(url, 'the renewal information has no valid suggestedWindow');
    const retryAfter = this.#retryAfter(res) ?? new Date(this.#now().getTime() + DEFAULT_ARI_RECHECK_MS);
    return { start, end, retryAfter, ...(typeof j.explanationURL === 'string' ? { explanationUrl: j.explanationURL } : {}) };
  }

  /** Answers one authorization (unless already valid) and waits until the server decided. */
  async #authorize(url: string, solver: AcmeChallengeSolver): Promise<void> {
    const authz = (await this.#post(url, undefined)).json;
    if (authz.status === 'valid') return;
    const id = authz.identifier as Json | undefined;
    const value = String(id?.value ?? '');
    const challenges = Array.isArray(authz.challenges) ? (authz.challenges as Json[]) : [];
    const ch = challenges.find((c) => c.type === solver.type);
    if (!ch || typeof ch.url !== 'string' || typeof ch.token !== 'string') {
      throw new MutualError('ACME_CLIENT_FAILED', { detail: `${value}: the server offers no ${solver.type} challenge (offered: ${challenges.map((c) => String(c.type)).join(', ') || 'none'}); choose another challenge type in agent.yaml` });
    }
    const keyAuthorization = `${ch.token}.${await calculateJwkThumbprint(this.#jwk)}`;
    const challenge: AcmeChallenge = {
      type: solver.type, identifier: value, token: ch.token, keyAuthorization,
      dnsName: `_acme-challenge.${value.replace(/^\*\./, '')}`, dnsValue: crypto.createHash('sha256').update(keyAuthorization).digest('base64url'),
    };
    await solver.present(challenge);
    try {
      await this.#post(ch.url, {});
      await this.#poll(url, ['valid'], ['pending']);
    } finally {
      // A record or file left behind is harmless and the next order replaces it; the outcome is the order's.
      await solver.cleanup(challenge).catch(() => {});
    }
  }

  /** POST-as-GETs `url` until its status is one of `done`; a status outside `done` and `waiting` is a failure carrying the object's error. */
  async #poll(url: string, done: string[], waiting: string[]): Promise<Json> {
    for (let i = 0; ; i++) {
      const r = await this.#post(url, undefined);
      const status = String(r.json.status);
      if (done.includes(status)) return r.json;
      if (!waiting.includes(status) && status !== 'processing') {
        const err = (r.json.error ?? (Array.isArray(r.json.challenges) ? (r.json.challenges as Json[]).find((c) => c.error)?.error : undefined)) as Json | undefined;
        throw new MutualError('ACME_CLIENT_FAILED', { problem: err?.type, detail: `${url} is ${status}${err ? `: ${String(err.type).replace(URN, '')}: ${String(err.detail ?? '')}` : ''}` });
      }
      if (i + 1 >= MAX_POLLS) throw new MutualError('ACME_CLIENT_FAILED', { detail: `${url} is still ${status} after ${MAX_POLLS} polls` });
      const after = this.#retryAfter(r.res);
      const wait = after ? after.getTime() - this.#now().getTime() : DEFAULT_POLL_MS;
      await this.#sleep(Math.min(Math.max(wait, 0), MAX_POLL_MS));
    }
  }

  /** A signed POST (payload undefined: POST-as-GET), retried once on badNonce (RFC 8555 6.5). */
  async #post(url: string, payload: Json | undefined, o: { jwk?: boolean; accept?: string; maxBytes?: number } = {}): Promise<Answer> {
    for (let attempt = 0; ; attempt++) {
      const nonce = await this.#nonce();
      const protectedHeader = { alg: 'ES256', nonce, url, ...(o.jwk ? { jwk: this.#jwk } : { kid: await this.account() }) };
      const jws = await new FlattenedSign(Buffer.from(payload === undefined ? '' : JSON.stringify(payload))).setProtectedHeader(protectedHeader).sign(this.#o.accountKey);
      const res = await this.#send(url, {
        method: 'POST', body: Buffer.from(JSON.stringify(jws)), contentType: 'application/jose+json', maxBytes: o.maxBytes ?? MAX_ACME_JSON_BYTES, ...(o.accept ? { headers: { accept: o.accept } } : {}),
      });
      this.#keepNonce(res);
      if (res.status >= 400) {
        const e = this.#problem(res, url);
        if (attempt === 0 && e.fields.problem === `${URN}badNonce`) continue;
        throw e;
      }
      const isJson = /json/.test(res.contentType ?? '');
      return { res, json: isJson ? this.#json(res, url) : {} };
    }
  }

  /** One exchange; a server that cannot be reached is CA_UNAVAILABLE, as for the CA client. */
  async #send(url: string, req: Parameters<FetchBytes>[1]): Promise<FetchBytesResult> {
    try {
      return await this.#fetch(url, req);
    } catch (e) {
      if (isMutualError(e)) throw e;
      throw new MutualError('CA_UNAVAILABLE', { detail: `ACME server ${url}: ${(e as Error).message}` }, { cause: e });
    }
  }

  async #get(url: string, maxBytes: number): Promise<FetchBytesResult> {
    const res = await this.#send(url, { maxBytes });
    this.#keepNonce(res);
    if (res.status >= 400 && res.status !== 404) throw this.#problem(res, url);
    return res;
  }

  async #nonce(): Promise<string> {
    const spare = this.#nonces.pop();
    if (spare) return spare;
    const d = await this.directory();
    const res = await this.#send(d.newNonce, { maxBytes: MAX_ACME_JSON_BYTES });
    const n = header(res, 'replay-nonce');
    if (!n) throw this.#bad(d.newNonce, `no Replay-Nonce in the answer (HTTP ${res.status})`);
    return n;
  }

  #keepNonce(res: FetchBytesResult): void {
    const n = header(res, 'replay-nonce');
    if (n && /^[A-Za-z0-9_-]+$/.test(n)) this.#nonces = [...this.#nonces, n].slice(-MAX_SPARE_NONCES);
  }

  /** The external account binding JWS over the account key (RFC 8555 7.3.4), HS256. */
  async #eab(url: string): Promise<unknown> {
    const { keyId, hmacKey } = this.#o.eab!;
    return new FlattenedSign(Buffer.from(JSON.stringify(this.#jwk))).setProtectedHeader({ alg: 'HS256', kid: keyId, url }).sign(hmacKey);
  }

  #retryAfter(res: FetchBytesResult): Date | undefined {
    const v = header(res, 'retry-after');
    if (!v) return undefined;
    if (/^\d+$/.test(v.trim())) return new Date(this.#now().getTime() + Number(v.trim()) * 1000);
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : new Date(t);
  }

  #location(a: Answer, url: string): string {
    const l = header(a.res, 'location');
    if (!l) throw this.#bad(url, 'no Location in the answer');
    return new URL(l, url).toString();
  }

  #json(res: FetchBytesResult, url: string): Json {
    try {
      const j = JSON.parse(res.body.toString('utf8')) as unknown;
      if (j && typeof j === 'object' && !Array.isArray(j)) return j as Json;
    } catch {
      // Reported below.
    }
    throw this.#bad(url, `the answer (HTTP ${res.status}) is not a JSON object`);
  }

  /** A refusal: the problem document's type and detail, or the status when the body is not one. */
  #problem(res: FetchBytesResult, url: string): MutualError {
    let type: string | undefined;
    let detail = '';
    try {
      const p = JSON.parse(res.body.toString('utf8')) as Json;
      type = typeof p.type === 'string' ? p.type : undefined;
      detail = typeof p.detail === 'string' ? p.detail : '';
      if (Array.isArray(p.subproblems)) detail += (p.subproblems as Json[]).map((s) => ` [${String((s.identifier as Json | undefined)?.value ?? '')}: ${String(s.detail ?? s.type)}]`).join('');
    } catch {
      // Not a problem document: the status says what there is to say.
    }
    return new MutualError('ACME_CLIENT_FAILED', { problem: type, status: res.status, detail: `${url}: HTTP ${res.status}${type ? ` ${type.replace(URN, '')}` : ''}${detail ? `: ${detail}` : ''}` });
  }

  #bad(url: string, why: string): MutualError {
    return new MutualError('ACME_CLIENT_FAILED', { detail: `${url}: ${why}` });
  }
}

/** Splits a PEM chain (RFC 8555 7.4.2): the first certificate is the leaf. */
function splitChain(text: string, url: string): AcmeCertificate {
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length < 2) throw new MutualError('ACME_CLIENT_FAILED', { detail: `${url}: expected a leaf and its issuer in the chain, got ${pems.length} certificate(s)` });
  const certificate = `${pems[0]}\n`;
  const chain = pems.slice(1).map((p) => `${p}\n`).join('');
  return { certificate, chain, fullchain: certificate + chain };
}
