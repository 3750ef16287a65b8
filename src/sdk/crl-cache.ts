/**
 * The CRLs of {@link PeerVerifier} (sdk/verifier.ts): loads a CRL into the client CA that issued
 * it (signature, age, CRL number), fetches the configured URLs (or those learned from the
 * certificates seen) before their nextUpdate and on a timer, retries failures soon, and reports
 * each CA's revocation status. The CRL itself is kept on the CA's {@link TrustedCa} record, so a
 * CA that stays across a trust reload keeps its CRL.
 */
import crypto from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import type { CertificateInfo } from '../core/certificate.ts';
import { certificateIdentity } from '../core/certificate.ts';
import { parseCrl, verifyCrlSignature, crlRevocation, type CrlInfo } from '../core/crl-reader.ts';
import { MutualError } from '../core/errors.ts';
import { readPemOrDer } from '../core/pem.ts';
import type { FetchBytes } from './fetch-bytes.ts';
import { OCSP_CLOCK_SKEW_MS } from './ocsp-cache.ts';
import type { TrustedCa } from './peer-path.ts';

/** Default interval between CRL fetches (a CRL is also fetched before its nextUpdate). */
export const CRL_REFRESH_MS = 5 * 60_000;
/** A CRL without nextUpdate is considered fresh this long after it was loaded. */
export const CRL_MAX_AGE_WITHOUT_NEXT_UPDATE_MS = 60 * 60_000;
/** A CRL is fetched again when this fraction of its thisUpdate..nextUpdate window has passed. */
export const CRL_REFRESH_FRACTION = 0.8;
/** After a failed fetch, the next attempt comes this soon (the CRL may still be fresh). */
export const CRL_RETRY_MS = 15_000;
/** Largest CRL fetched (bytes): 1,000,000 entries of mutual's CA is ~35 MB. */
export const MAX_CRL_FETCH_BYTES = 64 * 1024 * 1024;
/** Most CRL URLs learned from certificates' CRL distribution points. */
export const MAX_LEARNED_CRL_URLS = 16;

const crlChannel = diagnostics.channel('mutual:verifier:crl-loaded');
const crlFailedChannel = diagnostics.channel('mutual:verifier:crl-failed');

/** A root's CRL (it lists the client CAs the root revoked), kept per trusted root. */
export interface RootCrl {
  info: CertificateInfo;
  crl?: CrlInfo;
  crlSource?: string;
  freshUntil: number;
}

/** The state of one client CA's revocation data. */
export interface IssuerRevocationStatus {
  issuer: string;
  crlNumber?: string;
  thisUpdate?: Date;
  nextUpdate?: Date;
  entries: number;
  fresh: boolean;
  source?: string;
}

/** What a {@link CrlCache} works with; the verifier owns the CAs, the clock and the generation. */
export interface CrlCacheOptions {
  /** Configured CRL URLs; when empty, the URLs learned from certificates are fetched. */
  crlUrls: readonly string[];
  refreshMs: number;
  fetch: FetchBytes;
  now: () => Date;
  /** The client CAs trusted now. */
  cas: () => readonly TrustedCa[];
  /** The trusted roots now: their CRLs are loaded too (a root's CRL lists the client CAs it revoked). */
  roots?: () => readonly CertificateInfo[];
  /** Revocation data changed (a CRL was loaded): connections re-check. */
  onChange: () => void;
  /** A CRL was loaded and published: close the connections of revoked certificates. */
  onRevocations: () => void;
}

/** The state of `ca`'s (or a root's) revocation data at `now` (ms). */
export function crlStatus(ca: TrustedCa | RootCrl, now: number): IssuerRevocationStatus {
  return {
    issuer: ca.info.subject,
    ...(ca.crl?.crlNumber !== undefined ? { crlNumber: ca.crl.crlNumber.toString() } : {}),
    ...(ca.crl ? { thisUpdate: ca.crl.thisUpdate, nextUpdate: ca.crl.nextUpdate } : {}),
    entries: ca.crl?.revoked.size ?? 0,
    fresh: now < ca.freshUntil,
    ...(ca.crlSource ? { source: ca.crlSource } : {}),
  };
}

/** Throws CERT_REVOKED when `crl` lists the certificate. */
export function throwIfRevokedByCrl(crl: CrlInfo, info: CertificateInfo): void {
  const r = crl.revoked.size ? crlRevocation(crl, info.serialBytes) : undefined;
  if (!r) return;
  const reason = r.reason === undefined ? '' : `, reason ${r.reason}`;
  throw new MutualError('CERT_REVOKED', { serial: info.serial, identity: certificateIdentity(info) ?? info.subject, revokedAt: r.revokedAt, detail: `client certificate revoked at ${r.revokedAt.toISOString()}${reason} (serial ${info.serial}); get a new certificate` });
}

const isClientCa = (x: TrustedCa | RootCrl): x is TrustedCa => 'publicKey' in x;

/** Whether `crl` lists the certificate. */
export function crlLists(crl: CrlInfo, info: CertificateInfo): boolean {
  return crl.revoked.size !== 0 && crlRevocation(crl, info.serialBytes) !== undefined;
}

/** Throws CERT_REVOKED naming the client CA when its root's `crl` lists it. */
export function throwIfCaRevokedByCrl(crl: CrlInfo, ca: CertificateInfo, leaf: CertificateInfo): void {
  const r = crl.revoked.size ? crlRevocation(crl, ca.serialBytes) : undefined;
  if (!r) return;
  const reason = r.reason === undefined ? '' : `, reason ${r.reason}`;
  throw new MutualError('CERT_REVOKED', { serial: leaf.serial, identity: certificateIdentity(leaf) ?? leaf.subject, revokedAt: r.revokedAt, detail: `the client CA "${ca.subject}" (serial ${ca.serial}) was revoked by its root at ${r.revokedAt.toISOString()}${reason}; get a certificate from a current client CA` });
}

/** Loads, fetches and refreshes the client CAs' CRLs and the roots' CRLs. */
export class CrlCache {
  readonly #o: CrlCacheOptions;
  readonly #configuredUrls: string[];
  readonly #learnedUrls = new Set<string>();
  readonly #urlTimers = new Map<string, NodeJS.Timeout>();
  readonly #fetching = new Map<string, Promise<void>>();
  /** The roots' CRLs, by the root's DER (latin1). */
  readonly #rootCrls = new Map<string, RootCrl>();
  #started = false;
  #closed = false;

  constructor(o: CrlCacheOptions) {
    this.#o = o;
    this.#configuredUrls = [...o.crlUrls];
  }

  /** True once {@link start} was called: CRLs are fetched as they are learned or due. */
  get started(): boolean {
    return this.#started;
  }

  /**
   * Loads a CRL (DER or PEM) into the client CA it names (issuer name + AKI), checking its
   * signature with that CA's key, and returns that CA; a CRL of a trusted root goes to that root.
   * An older CRL number than the one loaded is ignored. Throws CRL_MALFORMED, CRL_TOO_LARGE,
   * CRL_BAD_SIGNATURE (also when no configured CA or root issued it).
   */
  load(input: Uint8Array | string, source: string): TrustedCa | RootCrl {
    const der = readPemOrDer(input, ['X509 CRL', 'CRL'], MAX_CRL_FETCH_BYTES);
    const crl = parseCrl(der);
    const named = (name: Buffer, keyId: Buffer | undefined) => name.equals(crl.issuerName) && (!crl.authorityKeyId || !keyId || crl.authorityKeyId.equals(keyId));
    const ca: TrustedCa | RootCrl | undefined = this.#o.cas().find((c) => named(c.info.subjectName, c.keyId)) ?? this.#root(crl, named);
    if (!ca) throw new MutualError('CRL_BAD_SIGNATURE', { detail: `the CRL of "${crl.issuer}" is not from a configured client CA or root` });
    const key = isClientCa(ca) ? ca.publicKey : crypto.createPublicKey({ key: ca.info.spki, format: 'der', type: 'spki' });
    if (!verifyCrlSignature(crl, key, isClientCa(ca) ? ca.keyId : ca.info.subjectKeyId)) throw new MutualError('CRL_BAD_SIGNATURE', { detail: `the CRL does not verify with the key of "${ca.info.subject}"` });
    const now = this.#o.now().getTime();
    if (crl.thisUpdate.getTime() > now + OCSP_CLOCK_SKEW_MS) throw new MutualError('CRL_MALFORMED', { detail: `thisUpdate ${crl.thisUpdate.toISOString()} is in the future` });
    const prev = ca.crl;
    if (prev?.crlNumber !== undefined && crl.crlNumber !== undefined && crl.crlNumber < prev.crlNumber) return ca;
    ca.crl = crl;
    ca.crlSource = source;
    ca.freshUntil = crl.nextUpdate ? crl.nextUpdate.getTime() : now + CRL_MAX_AGE_WITHOUT_NEXT_UPDATE_MS;
    if (!isClientCa(ca)) this.#rootCrls.set(ca.info.der.toString('latin1'), ca);
    this.#o.onChange();
    if (crlChannel.hasSubscribers) crlChannel.publish({ issuer: ca.info.subject, crlNumber: crl.crlNumber, entries: crl.revoked.size, source, nextUpdate: crl.nextUpdate });
    this.#o.onRevocations();
    return ca;
  }

  /** The CRL loaded for `root`, if any (fresh or not). */
  rootCrl(root: CertificateInfo): RootCrl | undefined {
    return this.#rootCrls.get(root.der.toString('latin1'));
  }

  /** The record of the trusted root that issued `crl` (by name and AKI), a new one when none is held yet. */
  #root(crl: CrlInfo, named: (name: Buffer, keyId: Buffer | undefined) => boolean): RootCrl | undefined {
    const root = (this.#o.roots?.() ?? []).find((r) => named(r.subjectName, r.subjectKeyId));
    if (!root) return undefined;
    return this.#rootCrls.get(root.der.toString('latin1')) ?? { info: root, freshUntil: 0 };
  }

  /**
   * Remembers the CRL distribution points of a certificate (when no URL is configured, at most
   * {@link MAX_LEARNED_CRL_URLS}); a new one is fetched at once when `fetchNow`.
   */
  learn(urls: readonly string[], fetchNow: boolean): void {
    if (this.#configuredUrls.length !== 0) return;
    for (const u of urls) {
      if (this.#learnedUrls.has(u) || this.#learnedUrls.size >= MAX_LEARNED_CRL_URLS) continue;
      this.#learnedUrls.add(u);
      if (this.#started && fetchNow) void this.#fetchCrl(u);
    }
  }

  /** The CRL URLs learned from certificates so far. */
  get learnedUrls(): string[] {
    return [...this.#learnedUrls];
  }

  /** Once started, makes sure a fetch of every URL is on its way (no fresh CRL was at hand). */
  fetchMissing(): void {
    if (this.#started) for (const u of this.#urls()) if (!this.#fetching.has(u)) void this.#fetchCrl(u);
  }

  /**
   * Fetches every CRL URL now (configured, else learned from certificates) and waits. Failures are
   * published on 'mutual:verifier:crl-failed' and retried; a CRL that is still fresh stays in use.
   */
  async refresh(): Promise<void> {
    await Promise.all(this.#urls().map((u) => this.#fetchCrl(u)));
  }

  /** Starts keeping CRLs fresh: fetches them now (and waits), then on a timer. */
  async start(): Promise<void> {
    this.#started = true;
    await this.refresh();
  }

  /** Stops the timers. Loaded data stays usable. */
  close(): void {
    this.#closed = true;
    for (const t of this.#urlTimers.values()) clearTimeout(t);
    this.#urlTimers.clear();
  }

  #urls(): string[] {
    return this.#configuredUrls.length ? this.#configuredUrls : [...this.#learnedUrls];
  }

  #fetchCrl(url: string): Promise<void> {
    const running = this.#fetching.get(url);
    if (running) return running;
    const p = (async () => {
      let retryIn = this.#o.refreshMs;
      try {
        const r = await this.#o.fetch(url, { maxBytes: MAX_CRL_FETCH_BYTES });
        if (r.status !== 200) throw new MutualError('FETCH_FAILED', { reason: 'EHTTP', detail: `HTTP ${r.status}` });
        const crl = this.load(r.body, url).crl;
        if (crl?.nextUpdate) {
          const window = crl.nextUpdate.getTime() - crl.thisUpdate.getTime();
          const due = crl.thisUpdate.getTime() + window * CRL_REFRESH_FRACTION - this.#o.now().getTime();
          retryIn = Math.max(1000, Math.min(retryIn, due));
        }
      } catch (e) {
        retryIn = Math.min(retryIn, CRL_RETRY_MS);
        if (crlFailedChannel.hasSubscribers) crlFailedChannel.publish({ url, error: e instanceof Error ? e.message : String(e) });
      } finally {
        this.#fetching.delete(url);
      }
      this.#schedule(url, retryIn);
    })();
    this.#fetching.set(url, p);
    return p;
  }

  #schedule(url: string, ms: number): void {
    if (!this.#started || this.#closed) return;
    clearTimeout(this.#urlTimers.get(url));
    const t = setTimeout(() => void this.#fetchCrl(url), ms);
    t.unref();
    this.#urlTimers.set(url, t);
  }
}
