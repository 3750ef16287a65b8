/**
 * The one verifier of peer (client) certificates, used by the SDK's servers and by the gateway.
 *
 * OpenSSL checks the chain up to a trusted root during the handshake; it does not enforce
 * mutual's trust boundary (DESIGN.md, "Facts"): a certificate with no EKU passes its purpose
 * check, a client certificate from the server CA passes when the root is trusted, and `crl:`
 * demands a CRL for every CA. So after the handshake this verifier checks, per connection:
 *
 * 1. a certificate was presented (CERT_MISSING);
 * 2. the leaf was issued by one of the configured client CAs: issuer name (CERT_ISSUER_NOT_ALLOWED),
 *    then AKI and signature (CERT_BAD_SIGNATURE: a look-alike CA with the same name);
 * 3. it is an end entity (CERT_IS_CA) with EKU clientAuth: no EKU, serverAuth only or
 *    anyExtendedKeyUsage only is refused (CERT_WRONG_EKU);
 * 4. it has no critical extension the verifier does not process (CERT_CRITICAL_EXTENSION), no weak
 *    key (CERT_WEAK), and its names are inside the client CA's name constraints (CERT_NAME_NOT_PERMITTED);
 * 5. every certificate of the path is inside its validity: the leaf (CERT_EXPIRED,
 *    CERT_NOT_YET_VALID, with the days and the fix), the client CA and the root it chains to
 *    (CERT_CHAIN_EXPIRED, naming which);
 * 6. OpenSSL's chain check passed. A chain OpenSSL refused is never accepted: the checks above, and
 *    the same checks over the issuers OpenSSL's chain holds (an expired copy of the client CA sent by
 *    the client, a path-length or CA-flag violation), name the reason; when none applies the answer
 *    is CERT_UNTRUSTED with OpenSSL's reason. OpenSSL reports only its last error (an expired
 *    intermediate hides a critical extension on the leaf), so its verdict is never "explained away";
 * 7. it is not revoked: a CRL per issuer, fetched from the CA and refreshed before nextUpdate and
 *    on a timer, read into a hash set of serials; OCSP as the fallback when no fresh CRL is at
 *    hand; fail-closed by default (REVOCATION_UNAVAILABLE). Both answers are cached.
 *
 * Everything that does not depend on the time or on revocation data (parse, issuer, signature,
 * EKU, extensions, key, names) is cached per certificate, so a repeat handshake costs a hash lookup
 * and a time check (the path's validity is precomputed as one window).
 * A CRL loaded later applies to new connections at once and, per request, to existing ones; with
 * `closeRevokedConnections` the connections of a newly revoked certificate are closed.
 */
import crypto, { X509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import type { TLSSocket } from 'node:tls';
import { parseCertificate, certificateIdentity, type CertificateInfo } from '../core/certificate.ts';
import { revocationUrls } from '../core/cert-urls.ts';
import { parseCrl, verifyCrlSignature, crlRevocation, type CrlInfo } from '../core/crl-reader.ts';
import { reasonName } from '../core/crl.ts';
import { MutualError, isMutualError, type ErrorCode, type MutualErrorFields } from '../core/errors.ts';
import { ACCEPTED_SIGNATURE_OIDS, describeSpki } from '../core/algorithms.ts';
import { nameConstraintViolation, type PermittedNames } from '../core/lint.ts';
import { OID } from '../core/oids.ts';
import { buildOcspRequest, encodeCertId, matchesIssuer, ocspIssuerHashes, parseOcspResponse, verifyOcspResponse, type OcspIssuerHashes } from '../core/ocsp.ts';
import { readCertificateDers, readPemOrDer } from '../core/pem.ts';
import { createFetchBytes, type FetchBytes } from './fetch-bytes.ts';

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
/** Largest OCSP response read (bytes). */
export const MAX_OCSP_FETCH_BYTES = 64 * 1024;
/** Most certificates whose static checks (parse, issuer, signature, EKU) are cached. */
export const MAX_CACHED_CERTIFICATES = 10_000;
/** Most OCSP answers cached (one per serial). */
export const MAX_CACHED_OCSP = 10_000;
/** Most CRL URLs learned from certificates' CRL distribution points. */
export const MAX_LEARNED_CRL_URLS = 16;
/** Clock skew tolerated on OCSP thisUpdate (RFC 6960 leaves it to the client). */
export const OCSP_CLOCK_SKEW_MS = 5 * 60_000;
/** Most PEM blocks read from a CA bundle. */
export const MAX_TRUST_BUNDLE_CERTS = 64;
/** Most issuer certificates read from a chain OpenSSL refused, to name the reason (mutual's paths are 2 deep). */
export const MAX_EXPLAINED_CHAIN = 8;
/**
 * Critical extensions the verifier (or OpenSSL before it) processes; any other critical extension
 * refuses the certificate (RFC 5280 4.2: "A certificate-using system MUST reject the certificate if
 * it encounters a critical extension it does not recognize").
 */
export const PROCESSED_CRITICAL_EXTENSIONS: ReadonlySet<string> = new Set([
  OID.basicConstraints, OID.keyUsage, OID.extKeyUsage, OID.subjectAltName, OID.nameConstraints,
  OID.subjectKeyIdentifier, OID.authorityKeyIdentifier,
]);
/** Smallest RSA public exponent accepted (CA/B Forum Baseline Requirements 6.1.6: 2^16+1). */
export const MIN_RSA_EXPONENT = 65537n;
/** RSA public exponents must be below this (Baseline Requirements 6.1.6: at most 2^256-1). */
export const RSA_EXPONENT_LIMIT = 1n << 256n;
const ANY_EKU = '2.5.29.37.0';

/** What the verifier does when it has no fresh revocation data for a certificate's issuer. */
export type RevocationMode = 'fail-closed' | 'fail-open' | 'off';

/** Revocation options of {@link PeerVerifier}. */
export interface RevocationOptions {
  /** Default 'fail-closed': no fresh CRL and no OCSP answer means the certificate is refused. */
  mode?: RevocationMode;
  /** CRL URLs to fetch (http or https). Default: the CRL distribution points of the certificates seen. */
  crlUrls?: string[];
  /** Ask the certificate's OCSP responder when no fresh CRL is at hand. Default true. */
  ocsp?: boolean;
  /** Interval between CRL fetches, ms. Default {@link CRL_REFRESH_MS}. */
  refreshMs?: number;
}

/** Options of {@link PeerVerifier}. */
export interface VerifierOptions {
  /**
   * The client CA certificate(s) whose leaves are accepted: PEM (bundles allowed) or DER. The
   * trust boundary: a leaf of any other issuer, even one chaining to the same root, is refused.
   */
  clientCas: string | Buffer | readonly (string | Buffer)[];
  /**
   * The trust anchors (PEM or DER) the client CAs chain to. When given, the root of each client CA
   * is checked with the verifier's clock, as the leaf and the client CA are (an expired root
   * refuses, CERT_CHAIN_EXPIRED). Default: none; OpenSSL still checks the root with the system clock.
   */
  roots?: string | Buffer | readonly (string | Buffer)[];
  revocation?: RevocationOptions;
  /** Trust anchors (PEM) for fetching CRLs and OCSP over HTTPS; default: the system's. */
  fetchCa?: string | string[];
  /** Fetcher for CRLs and OCSP; default {@link createFetchBytes} with `fetchCa`. */
  fetch?: FetchBytes;
  /** Close the connections of a certificate once it shows up revoked. Default true. */
  closeRevokedConnections?: boolean;
  /** Clock; default `() => new Date()`. */
  now?: () => Date;
}

/** The identity of a verified peer. */
export interface PeerIdentity {
  /** The SPIFFE ID (the spiffe:// URI SAN), when the certificate has one. */
  spiffeId?: string;
  uris: string[];
  dns: string[];
  /** Subject CN, for tools that read only CNs. */
  cn?: string;
  /** Subject and issuer as text (`CN=..., O=...`). */
  subject: string;
  issuer: string;
  /** Serial, lowercase hex. */
  serial: string;
  /** SHA-256 of the certificate DER, lowercase hex. */
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
  /** The leaf's DER (for XFCC `Cert`, RFC 9440 `Client-Cert`). */
  der: Buffer;
  /**
   * The intermediates of the verified path, the leaf's issuer first, without the root: the client
   * CA that signed the leaf (for RFC 9440 `Client-Cert-Chain`).
   */
  chain: readonly Buffer[];
}

/** What a TLS handshake tells about the peer. */
export interface PeerChain {
  /** The leaf certificate's DER; undefined when none was presented. */
  leaf?: Buffer;
  /** OpenSSL's verdict on the chain (`socket.authorized`). */
  authorized: boolean;
  /** OpenSSL's reason when not authorized (`socket.authorizationError`). */
  authorizationError?: string | Error | null;
  /**
   * The issuers in the chain OpenSSL built, leaf's issuer first (DER), when it refused the chain:
   * they name the reason (e.g. an expired copy of the client CA that the client sent).
   */
  issuers?: readonly Buffer[];
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

interface TrustedCa {
  info: CertificateInfo;
  keyId: Buffer;
  publicKey: KeyObject;
  ocspHashes: OcspIssuerHashes;
  /** The CA's name constraints, as the lint rule reads them. */
  constraints?: PermittedNames;
  /** The path above the leaf: this CA, then the root it chains to when the roots are known. */
  path: CertificateInfo[];
  /** When every certificate of `path` is valid (ms): the intersection of their validity. */
  validFrom: number;
  validUntil: number;
  /** Why no leaf of this CA can be accepted (a weak key or unknown critical extension on the CA or its root, a path-length violation), if so. */
  broken?: { code: ErrorCode; detail: string };
  /** Loaded CRL, and until when it counts as fresh (ms). */
  crl?: CrlInfo;
  crlSource?: string;
  freshUntil: number;
}

/** The result of the checks that do not depend on time or revocation, per certificate. */
type Static =
  | { ok: true; info: CertificateInfo; ca: TrustedCa; identity: PeerIdentity; ocspUrls: string[] }
  | { ok: false; code: ErrorCode; fields: MutualErrorFields };

interface SocketState {
  owner: PeerVerifier;
  generation: number;
  result: PeerIdentity | MutualError | Promise<PeerIdentity>;
}

const kState = Symbol('mutual.peer');
const DAY = 86_400_000;

const rejectedChannel = diagnostics.channel('mutual:verifier:rejected');
const crlChannel = diagnostics.channel('mutual:verifier:crl-loaded');
const crlFailedChannel = diagnostics.channel('mutual:verifier:crl-failed');
const closedChannel = diagnostics.channel('mutual:verifier:connection-closed');

/**
 * Reads PEM bundles or DER (a Buffer starting with 0x30) into certificate DERs, at most
 * {@link MAX_TRUST_BUNDLE_CERTS} PEM blocks per item. Throws PEM_MALFORMED for an item that is
 * neither (empty included).
 */
export function readCertificates(input: string | Buffer | readonly (string | Buffer)[]): Buffer[] {
  const list = Array.isArray(input) ? input : [input as string | Buffer];
  return list.flatMap((item) => readCertificateDers(item, { maxBlocks: MAX_TRUST_BUNDLE_CERTS }));
}

const daysText = (ms: number): string => {
  const d = Math.floor(ms / DAY);
  if (d >= 1) return `${d} day${d === 1 ? '' : 's'}`;
  const h = Math.floor(ms / 3_600_000);
  if (h >= 1) return `${h} hour${h === 1 ? '' : 's'}`;
  return `${Math.max(1, Math.floor(ms / 60_000))} minute${ms < 120_000 ? '' : 's'}`;
};

/**
 * Verifies client certificates after OpenSSL's chain check. Construct once per service; safe to
 * call from every connection. Call {@link start} to fetch CRLs (and keep them fresh), {@link close}
 * to stop the timers.
 */
export class PeerVerifier {
  readonly mode: RevocationMode;
  readonly #ocsp: boolean;
  readonly #refreshMs: number;
  readonly #fetch: FetchBytes;
  readonly #now: () => Date;
  readonly #closeRevoked: boolean;
  readonly #roots: CertificateInfo[];
  #cas: TrustedCa[] = [];
  #generation = 0;
  readonly #static = new Map<string, Static>();
  /** Until when each verified identity's whole path (leaf, client CA, root) is valid, ms. */
  readonly #pathUntil = new WeakMap<PeerIdentity, number>();
  readonly #ocspCache = new Map<string, { revoked?: { at: Date; reason?: number }; until: number }>();
  readonly #ocspInFlight = new Map<string, Promise<void>>();
  readonly #configuredUrls: string[];
  readonly #learnedUrls = new Set<string>();
  readonly #urlTimers = new Map<string, NodeJS.Timeout>();
  readonly #fetching = new Map<string, Promise<void>>();
  readonly #sockets = new Map<string, Set<TLSSocket>>();
  #started = false;
  #closed = false;

  constructor(o: VerifierOptions) {
    const r = o.revocation ?? {};
    this.mode = r.mode ?? 'fail-closed';
    if (!['fail-closed', 'fail-open', 'off'].includes(this.mode)) throw new TypeError(`revocation.mode must be fail-closed, fail-open or off, not ${String(this.mode)}`);
    this.#ocsp = r.ocsp ?? true;
    this.#refreshMs = r.refreshMs ?? CRL_REFRESH_MS;
    if (!(this.#refreshMs >= 100)) throw new TypeError('revocation.refreshMs must be at least 100');
    this.#configuredUrls = [...(r.crlUrls ?? [])];
    for (const u of this.#configuredUrls) if (!/^https?:\/\//.test(u)) throw new TypeError(`CRL URL must be http(s): ${u}`);
    this.#fetch = o.fetch ?? createFetchBytes({ ca: o.fetchCa });
    this.#now = o.now ?? (() => new Date());
    this.#closeRevoked = o.closeRevokedConnections ?? true;
    this.#roots = o.roots ? readCertificates(o.roots).map((d) => parseCertificate(d)) : [];
    this.setClientCas(o.clientCas);
  }

  /** Bumped whenever trust or revocation data changes; connections re-check when it moves. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Replaces the trusted client CAs (hot reload of a trust bundle). CRLs already loaded for a CA
   * that stays are kept. Throws TypeError when the input holds no CA certificate.
   */
  setClientCas(input: string | Buffer | readonly (string | Buffer)[]): void {
    const ders = readCertificates(input);
    if (ders.length === 0) throw new TypeError('clientCas holds no certificate');
    const old = this.#cas;
    this.#cas = ders.map((der) => {
      const info = parseCertificate(der);
      if (!info.isCa) throw new TypeError(`clientCas: "${info.subject}" is not a CA certificate`);
      const keyId = info.subjectKeyId ?? crypto.createHash('sha1').update(info.spki).digest();
      const kept = old.find((c) => c.info.der.equals(info.der));
      return kept ?? this.#trustedCa(info, keyId);
    });
    this.#static.clear();
    this.#generation++;
  }

  #trustedCa(info: CertificateInfo, keyId: Buffer): TrustedCa {
    const path = [info];
    const selfSigned = info.subjectName.equals(info.issuerName);
    const root = selfSigned ? undefined : this.#roots.find((r) => r.subjectName.equals(info.issuerName) && signedBy(info.der, r.spki));
    if (root) path.push(root);
    // The configured path is checked as the leaf is: a weak CA key vouches for nothing.
    let broken: TrustedCa['broken'];
    for (const [i, c] of path.entries()) broken ??= certificateProblem(c, `the ${i === 0 ? 'client CA' : 'root'} "${c.subject}" (serial ${c.serial})`);
    // The client CA is one CA below the root (RFC 5280 4.2.1.9).
    if (root && root.pathLen !== undefined && root.pathLen < 1) broken ??= { code: 'CERT_UNTRUSTED', detail: `the root "${root.subject}" has pathLen ${root.pathLen}, so it may not have the intermediate "${info.subject}"` };
    const p = info.permitted;
    return {
      info, keyId, publicKey: crypto.createPublicKey({ key: info.spki, format: 'der', type: 'spki' }), ocspHashes: ocspIssuerHashes(info.der), freshUntil: 0,
      ...(p ? { constraints: { permittedDns: p.dns, permittedIp: p.ip, ...(p.uri.length ? { trustDomain: p.uri[0] } : {}) } } : {}),
      path,
      validFrom: Math.max(...path.map((c) => c.notBefore.getTime())),
      validUntil: Math.min(...path.map((c) => c.notAfter.getTime())),
      ...(broken ? { broken } : {}),
    };
  }

  /** The state of each client CA's revocation data. */
  status(): IssuerRevocationStatus[] {
    const now = this.#now().getTime();
    return this.#cas.map((ca) => ({
      issuer: ca.info.subject,
      ...(ca.crl?.crlNumber !== undefined ? { crlNumber: ca.crl.crlNumber.toString() } : {}),
      ...(ca.crl ? { thisUpdate: ca.crl.thisUpdate, nextUpdate: ca.crl.nextUpdate } : {}),
      entries: ca.crl?.revoked.size ?? 0,
      fresh: now < ca.freshUntil,
      ...(ca.crlSource ? { source: ca.crlSource } : {}),
    }));
  }

  // ------------------------------------------------------------------ CRLs

  /**
   * Loads a CRL (DER or PEM) for the client CA it names (issuer name + AKI), checking its
   * signature with that CA's key. An older CRL number than the one loaded is ignored. Throws
   * CRL_MALFORMED, CRL_TOO_LARGE, CRL_BAD_SIGNATURE (also when no configured CA issued it).
   */
  loadCrl(input: Uint8Array | string, source = 'loaded'): IssuerRevocationStatus {
    const der = readPemOrDer(input, ['X509 CRL', 'CRL'], MAX_CRL_FETCH_BYTES);
    const crl = parseCrl(der);
    const ca = this.#cas.find((c) => c.info.subjectName.equals(crl.issuerName) && (!crl.authorityKeyId || crl.authorityKeyId.equals(c.keyId)));
    if (!ca) throw new MutualError('CRL_BAD_SIGNATURE', { detail: `the CRL of "${crl.issuer}" is not from a configured client CA` });
    if (!verifyCrlSignature(crl, ca.publicKey, ca.keyId)) throw new MutualError('CRL_BAD_SIGNATURE', { detail: `the CRL does not verify with the key of "${ca.info.subject}"` });
    const now = this.#now().getTime();
    if (crl.thisUpdate.getTime() > now + OCSP_CLOCK_SKEW_MS) throw new MutualError('CRL_MALFORMED', { detail: `thisUpdate ${crl.thisUpdate.toISOString()} is in the future` });
    const prev = ca.crl;
    if (prev?.crlNumber !== undefined && crl.crlNumber !== undefined && crl.crlNumber < prev.crlNumber) return this.#statusOf(ca);
    ca.crl = crl;
    ca.crlSource = source;
    ca.freshUntil = crl.nextUpdate ? crl.nextUpdate.getTime() : now + CRL_MAX_AGE_WITHOUT_NEXT_UPDATE_MS;
    this.#generation++;
    if (crlChannel.hasSubscribers) crlChannel.publish({ issuer: ca.info.subject, crlNumber: crl.crlNumber, entries: crl.revoked.size, source, nextUpdate: crl.nextUpdate });
    this.#closeRevokedSockets();
    return this.#statusOf(ca);
  }

  #statusOf(ca: TrustedCa): IssuerRevocationStatus {
    return this.status()[this.#cas.indexOf(ca)];
  }

  /**
   * Fetches every CRL URL now (configured, else learned from certificates) and waits. Failures are
   * published on 'mutual:verifier:crl-failed' and retried; a CRL that is still fresh stays in use.
   */
  async refresh(): Promise<void> {
    await Promise.all(this.#urls().map((u) => this.#fetchCrl(u)));
  }

  #urls(): string[] {
    return this.#configuredUrls.length ? this.#configuredUrls : [...this.#learnedUrls];
  }

  #fetchCrl(url: string): Promise<void> {
    const running = this.#fetching.get(url);
    if (running) return running;
    const p = (async () => {
      let retryIn = this.#refreshMs;
      try {
        const r = await this.#fetch(url, { maxBytes: MAX_CRL_FETCH_BYTES });
        if (r.status !== 200) throw new MutualError('FETCH_FAILED', { reason: 'EHTTP', detail: `HTTP ${r.status}` });
        this.loadCrl(r.body, url);
        const ca = this.#cas.find((c) => c.crlSource === url);
        const crl = ca?.crl;
        if (crl?.nextUpdate) {
          const window = crl.nextUpdate.getTime() - crl.thisUpdate.getTime();
          const due = crl.thisUpdate.getTime() + window * CRL_REFRESH_FRACTION - this.#now().getTime();
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

  // ------------------------------------------------------------------ verification

  /**
   * Verifies a peer chain; returns the identity, synchronously when the answer is at hand, or a
   * Promise when an OCSP query is needed. Throws (or rejects with) a MutualError: CERT_MISSING,
   * CERT_UNTRUSTED, CERT_ISSUER_NOT_ALLOWED, CERT_BAD_SIGNATURE, CERT_IS_CA, CERT_WRONG_EKU,
   * CERT_CRITICAL_EXTENSION, CERT_WEAK, CERT_NAME_NOT_PERMITTED, CERT_EXPIRED, CERT_NOT_YET_VALID,
   * CERT_CHAIN_EXPIRED, CERT_REVOKED, REVOCATION_UNAVAILABLE. A chain with `authorized: false` is
   * always refused.
   */
  verify(chain: PeerChain): PeerIdentity | Promise<PeerIdentity> {
    try {
      const r = this.#verify(chain);
      return r instanceof Promise ? r.catch((e) => this.#rejected(e, chain)) : r;
    } catch (e) {
      return this.#rejected(e, chain);
    }
  }

  #rejected(e: unknown, chain: PeerChain): never {
    if (rejectedChannel.hasSubscribers && isMutualError(e)) rejectedChannel.publish({ code: e.code, serial: e.fields.serial, identity: e.fields.identity, detail: e.fields.detail, authorized: chain.authorized });
    throw e;
  }

  #verify(chain: PeerChain): PeerIdentity | Promise<PeerIdentity> {
    if (!chain.leaf || chain.leaf.length === 0) throw new MutualError('CERT_MISSING', { detail: 'the TLS handshake carried no client certificate' });
    const st = this.#staticChecks(chain.leaf);
    if (!st.ok) throw new MutualError(st.code, st.fields);
    const now = this.#now().getTime();
    this.#checkTime(st, now);
    if (!chain.authorized) {
      // OpenSSL refused the chain. Its verdict is never overruled: it reports only its last error,
      // which may be about another certificate than the one our checks looked at. Our checks over
      // the issuers it used name the reason when they can; otherwise its own reason is given.
      const why = chain.authorizationError instanceof Error ? (chain.authorizationError as NodeJS.ErrnoException).code ?? chain.authorizationError.message : chain.authorizationError ?? undefined;
      if (chain.issuers) this.#explainIssuers(chain.issuers, st, now);
      throw new MutualError('CERT_UNTRUSTED', { serial: st.info.serial, identity: st.identity.spiffeId ?? st.info.subject, detail: `the chain does not verify against the trusted roots (OpenSSL: ${why ?? 'unknown reason'}; serial ${st.info.serial})` });
    }
    return this.#checkRevocation(st, now);
  }

  /**
   * Checks the issuers of a chain OpenSSL refused, leaf's issuer first, and throws the first
   * problem found: an issuer that is not a CA or breaks a path length (CERT_UNTRUSTED), one with an
   * unknown critical extension or a weak key, one outside its validity (CERT_CHAIN_EXPIRED), one
   * whose EKU excludes client authentication (CERT_WRONG_EKU).
   */
  #explainIssuers(issuers: readonly Buffer[], st: Extract<Static, { ok: true }>, now: number): void {
    const who = { serial: st.info.serial, identity: st.identity.spiffeId ?? st.info.subject };
    // CA certificates between the one being checked and the leaf, not counting self-issued ones (RFC 5280 4.2.1.9).
    let below = 0;
    for (let i = 0; i < issuers.length && i < MAX_EXPLAINED_CHAIN; i++) {
      let info: CertificateInfo;
      try {
        info = parseCertificate(issuers[i]);
      } catch {
        throw new MutualError('CERT_UNTRUSTED', { ...who, detail: `the issuer certificate at depth ${i + 1} of the chain cannot be read` });
      }
      const name = `"${info.subject}" (depth ${i + 1} of the chain, serial ${info.serial})`;
      if (!info.isCa) throw new MutualError('CERT_UNTRUSTED', { ...who, detail: `the issuer ${name} is not a CA certificate (basicConstraints)` });
      if (info.pathLen !== undefined && below > info.pathLen) throw new MutualError('CERT_UNTRUSTED', { ...who, detail: `the issuer ${name} allows ${info.pathLen} CA certificate(s) below it, the chain has ${below}` });
      const problem = certificateProblem(info, `the issuer ${name}`);
      if (problem) throw new MutualError(problem.code, { ...who, detail: problem.detail });
      if (now < info.notBefore.getTime() || now >= info.notAfter.getTime()) throw chainTimeError(info, name, now, who, 'sent in the chain');
      if (info.eku.length > 0 && !info.eku.includes(OID.clientAuth) && !info.eku.includes(ANY_EKU)) {
        throw new MutualError('CERT_WRONG_EKU', { ...who, detail: `the issuer ${name} is not allowed to issue client certificates (EKU ${info.eku.join(', ')})` });
      }
      if (!info.subjectName.equals(info.issuerName)) below++;
    }
  }

  #staticChecks(der: Buffer): Static {
    const key = der.toString('latin1');
    const hit = this.#static.get(key);
    if (hit) return hit;
    const st = this.#computeStatic(der);
    if (this.#static.size >= MAX_CACHED_CERTIFICATES) this.#static.delete(this.#static.keys().next().value!);
    this.#static.set(key, st);
    return st;
  }

  #computeStatic(der: Buffer): Static {
    let info: CertificateInfo;
    try {
      info = parseCertificate(der);
    } catch (e) {
      return { ok: false, code: 'CERT_UNTRUSTED', fields: { detail: `the certificate cannot be read (${isMutualError(e) ? e.message : 'parse error'})` } };
    }
    const spiffeId = certificateIdentity(info);
    const who = { serial: info.serial, identity: spiffeId ?? info.subject };
    const named = this.#cas.filter((c) => c.info.subjectName.equals(info.issuerName));
    if (named.length === 0) {
      return { ok: false, code: 'CERT_ISSUER_NOT_ALLOWED', fields: { ...who, detail: `issued by "${info.issuer}", which is not a client CA this service trusts (serial ${info.serial})` } };
    }
    // Same name is not same CA: only the key that signed the leaf counts (a look-alike CA has the name, not the key).
    const ca = named.find((c) => (!info.authorityKeyId || info.authorityKeyId.equals(c.keyId)) && signedBy(der, c.publicKey));
    if (!ca) return { ok: false, code: 'CERT_BAD_SIGNATURE', fields: { ...who, detail: `names "${info.issuer}" as issuer but is not signed by its key: a look-alike CA, or a forged certificate (serial ${info.serial})` } };
    if (info.isCa) return { ok: false, code: 'CERT_IS_CA', fields: { ...who, detail: `a CA certificate (basicConstraints CA:TRUE) is not a client certificate (serial ${info.serial})` } };
    if (!info.eku.includes(OID.clientAuth)) {
      const what = info.eku.length === 0 ? 'has no extended key usage'
        : info.eku.includes(OID.serverAuth) ? 'is a server certificate (EKU serverAuth only)'
          : info.eku.includes(ANY_EKU) ? 'has only anyExtendedKeyUsage, which mutual does not accept in place of clientAuth'
            : `has EKU ${info.eku.join(', ')} but not clientAuth`;
      return { ok: false, code: 'CERT_WRONG_EKU', fields: { ...who, detail: `the certificate ${what}; a client certificate needs clientAuth (serial ${info.serial})` } };
    }
    const problem = certificateProblem(info, 'the certificate');
    if (problem) return { ok: false, code: problem.code, fields: { ...who, detail: `${problem.detail} (serial ${info.serial})` } };
    const outside = ca.constraints && nameConstraintViolation(info.names, ca.constraints);
    if (outside) return { ok: false, code: 'CERT_NAME_NOT_PERMITTED', fields: { ...who, detail: `${outside} of "${ca.info.subject}" (its name constraints; serial ${info.serial})` } };
    if (ca.broken) return { ok: false, code: ca.broken.code, fields: { ...who, detail: `${ca.broken.detail} (serial ${info.serial})` } };
    let ocspUrls: string[] = [];
    try {
      const urls = revocationUrls(der);
      ocspUrls = urls.ocsp;
      if (this.#configuredUrls.length === 0) {
        for (const u of urls.crl) {
          if (this.#learnedUrls.has(u) || this.#learnedUrls.size >= MAX_LEARNED_CRL_URLS) continue;
          this.#learnedUrls.add(u);
          if (this.#started && this.mode !== 'off') void this.#fetchCrl(u);
        }
      }
    } catch {
      // A certificate the CA signed is well-formed; nothing to learn otherwise.
    }
    const identity: PeerIdentity = {
      ...(spiffeId ? { spiffeId } : {}),
      uris: info.names.uri,
      dns: info.names.dns,
      ...(info.commonName ? { cn: info.commonName } : {}),
      subject: info.subject,
      issuer: info.issuer,
      serial: info.serial,
      fingerprint: info.fingerprint,
      notBefore: info.notBefore,
      notAfter: info.notAfter,
      der: Buffer.from(der),
      chain: [ca.info.der],
    };
    this.#pathUntil.set(identity, Math.min(info.notAfter.getTime(), ca.validUntil));
    return { ok: true, info, ca, identity, ocspUrls };
  }

  #checkTime(st: Extract<Static, { ok: true }>, now: number): void {
    const info = st.info;
    const who = { serial: info.serial, identity: st.identity.spiffeId ?? info.subject };
    if (now < info.notBefore.getTime()) {
      throw new MutualError('CERT_NOT_YET_VALID', { ...who, notBefore: info.notBefore, detail: `client certificate valid only from ${info.notBefore.toISOString()}, in ${daysText(info.notBefore.getTime() - now)} (serial ${info.serial}); check the clocks` });
    }
    if (now >= info.notAfter.getTime()) {
      throw new MutualError('CERT_EXPIRED', { ...who, notAfter: info.notAfter, detail: `client certificate expired ${daysText(now - info.notAfter.getTime())} ago, at ${info.notAfter.toISOString()} (serial ${info.serial}); renew with \`mutual ca renew\`` });
    }
    const ca = st.ca;
    if (now >= ca.validFrom && now < ca.validUntil) return;
    for (const [i, c] of ca.path.entries()) {
      if (now < c.notBefore.getTime() || now >= c.notAfter.getTime()) throw chainTimeError(c, `"${c.subject}" (${i === 0 ? 'the client CA' : 'its root'}, serial ${c.serial})`, now, who, 'configured');
    }
  }

  #checkRevocation(st: Extract<Static, { ok: true }>, now: number): PeerIdentity | Promise<PeerIdentity> {
    if (this.mode === 'off') return st.identity;
    const ca = st.ca;
    if (ca.crl && now < ca.freshUntil) {
      this.#throwIfRevokedByCrl(ca.crl, st.info);
      return st.identity;
    }
    // No fresh CRL: make sure one is on its way, then ask OCSP or decide by the mode.
    if (this.#started) for (const u of this.#urls()) if (!this.#fetching.has(u)) void this.#fetchCrl(u);
    const cached = this.#ocspCache.get(st.info.serial);
    if (cached && now < cached.until) {
      this.#throwIfRevokedByOcsp(cached.revoked, st.info);
      return st.identity;
    }
    if (this.#ocsp && st.ocspUrls.length > 0) {
      return this.#queryOcsp(st, st.ocspUrls[0]).then(() => {
        const c = this.#ocspCache.get(st.info.serial);
        if (c && this.#now().getTime() < c.until) {
          this.#throwIfRevokedByOcsp(c.revoked, st.info);
          return st.identity;
        }
        return this.#unknown(st);
      });
    }
    return this.#unknown(st);
  }

  #unknown(st: Extract<Static, { ok: true }>): PeerIdentity {
    if (this.mode === 'fail-open') return st.identity;
    throw new MutualError('REVOCATION_UNAVAILABLE', {
      serial: st.info.serial, identity: st.identity.spiffeId ?? st.info.subject,
      detail: `no fresh CRL for "${st.ca.info.subject}"${this.#ocsp && st.ocspUrls.length ? ' and no OCSP answer' : ''} (serial ${st.info.serial})`,
    });
  }

  #throwIfRevokedByCrl(crl: CrlInfo, info: CertificateInfo): void {
    const r = crl.revoked.size ? crlRevocation(crl, info.serialBytes) : undefined;
    if (!r) return;
    const reason = r.reason === undefined ? '' : `, reason ${r.reason}`;
    throw new MutualError('CERT_REVOKED', { serial: info.serial, identity: certificateIdentity(info) ?? info.subject, revokedAt: r.revokedAt, detail: `client certificate revoked at ${r.revokedAt.toISOString()}${reason} (serial ${info.serial}); get a new certificate` });
  }

  #throwIfRevokedByOcsp(r: { at: Date; reason?: number } | undefined, info: CertificateInfo): void {
    if (!r) return;
    const reason = r.reason === undefined ? '' : `, reason ${reasonName(r.reason) ?? r.reason}`;
    throw new MutualError('CERT_REVOKED', { serial: info.serial, identity: certificateIdentity(info) ?? info.subject, revokedAt: r.at, detail: `client certificate revoked at ${r.at.toISOString()}${reason} (serial ${info.serial}, OCSP); get a new certificate` });
  }

  #queryOcsp(st: Extract<Static, { ok: true }>, url: string): Promise<void> {
    const serial = st.info.serial;
    const running = this.#ocspInFlight.get(serial);
    if (running) return running;
    const p = (async () => {
      const request = buildOcspRequest([encodeCertId('sha1', st.ca.ocspHashes, serial)]);
      const r = await this.#fetch(url, { method: 'POST', body: request, contentType: 'application/ocsp-request', maxBytes: MAX_OCSP_FETCH_BYTES });
      if (r.status !== 200) throw new MutualError('FETCH_FAILED', { reason: 'EHTTP', detail: `OCSP HTTP ${r.status}` });
      const resp = parseOcspResponse(r.body);
      if (resp.status !== 'successful') throw new MutualError('OCSP_RESPONSE_INVALID', { detail: `OCSP ${resp.status}` });
      const now = this.#now().getTime();
      const responderKey = this.#ocspResponderKey(resp.certs, st.ca, now, resp.responderKeyHash);
      if (!responderKey || !verifyOcspResponse(resp, responderKey)) throw new MutualError('OCSP_RESPONSE_INVALID', { detail: 'the OCSP response is not signed by the CA or its delegated responder' });
      const single = resp.responses.find((s) => s.certId.serial === serial && matchesIssuer(s.certId, st.ca.ocspHashes));
      if (!single) throw new MutualError('OCSP_RESPONSE_INVALID', { detail: 'the OCSP response does not answer for this certificate' });
      if (single.thisUpdate.getTime() > now + OCSP_CLOCK_SKEW_MS) throw new MutualError('OCSP_RESPONSE_INVALID', { detail: 'the OCSP answer is from the future' });
      const until = single.nextUpdate ? single.nextUpdate.getTime() : now + this.#refreshMs;
      if (until <= now) throw new MutualError('OCSP_RESPONSE_INVALID', { detail: 'the OCSP answer is stale' });
      if (single.status === 'unknown') throw new MutualError('OCSP_RESPONSE_INVALID', { detail: 'the OCSP responder does not know the certificate' });
      if (this.#ocspCache.size >= MAX_CACHED_OCSP) this.#ocspCache.delete(this.#ocspCache.keys().next().value!);
      this.#ocspCache.set(serial, { until, ...(single.status === 'revoked' ? { revoked: { at: single.revokedAt!, reason: single.reason } } : {}) });
      if (single.status === 'revoked') {
        this.#generation++;
        this.#closeRevokedSockets();
      }
    })().catch((e) => {
      if (crlFailedChannel.hasSubscribers) crlFailedChannel.publish({ url, error: e instanceof Error ? e.message : String(e), ocsp: true });
    }).finally(() => this.#ocspInFlight.delete(serial));
    this.#ocspInFlight.set(serial, p);
    return p;
  }

  /** The key that may sign OCSP answers for `ca` (RFC 6960 4.2.2.2): the CA's, or a delegated responder's. */
  #ocspResponderKey(certs: Buffer[], ca: TrustedCa, now: number, keyHash?: Buffer): KeyObject | undefined {
    const caHash = ca.ocspHashes.sha1.keyHash;
    if (keyHash && keyHash.equals(caHash)) return ca.publicKey;
    for (const der of certs) {
      try {
        const info = parseCertificate(der);
        if (!info.issuerName.equals(ca.info.subjectName) || !info.eku.includes(OID.ocspSigning)) continue;
        if (now < info.notBefore.getTime() || now >= info.notAfter.getTime()) continue;
        if (!new X509Certificate(der).verify(ca.publicKey)) continue;
        return crypto.createPublicKey({ key: info.spki, format: 'der', type: 'spki' });
      } catch {
        continue;
      }
    }
    return undefined;
  }

  // ------------------------------------------------------------------ connections

  /**
   * Verifies the peer of a TLS socket once and remembers the outcome on the socket (call it from
   * 'secureConnection'); the connection is tracked to be closed if its certificate is revoked
   * later. Returns what {@link verify} returns; never throws: a failure is returned as the
   * MutualError, for the request handler to answer with.
   */
  verifySocket(socket: TLSSocket): PeerIdentity | MutualError | Promise<PeerIdentity> {
    // The issuers first: reading the peer as an X509Certificate empties the chain Node reports next.
    const issuers = socket.authorized ? undefined : refusedChainIssuers(socket);
    const x = socket.getPeerX509Certificate?.();
    const chain: PeerChain = { leaf: x?.raw, authorized: socket.authorized, authorizationError: socket.authorizationError, ...(issuers ? { issuers } : {}) };
    let result: SocketState['result'];
    try {
      result = this.verify(chain);
    } catch (e) {
      result = isMutualError(e) ? e : new MutualError('CERT_UNTRUSTED', { detail: 'verification failed' }, { cause: e });
    }
    const state: SocketState = { owner: this, generation: this.#generation, result };
    (socket as unknown as Record<symbol, SocketState>)[kState] = state;
    if (result instanceof Promise) {
      result.then((id) => {
        state.result = id;
        this.#track(socket, id);
      }, (e) => {
        state.result = isMutualError(e) ? e : new MutualError('CERT_UNTRUSTED', { detail: 'verification failed' }, { cause: e });
      });
    } else if (!(result instanceof MutualError)) this.#track(socket, result);
    return result;
  }

  /**
   * The verified peer of a request's socket (an HTTP/2 compat socket proxy works too): the
   * identity, or throws the MutualError it was refused with. When trust or revocation data
   * changed since the handshake, a still-valid identity is checked again (hash lookup and time),
   * so a revocation applies to existing keep-alive connections at their next request.
   */
  peerOf(socket: TLSSocket): PeerIdentity | Promise<PeerIdentity> {
    let state = (socket as unknown as Record<symbol, SocketState | undefined>)[kState];
    if (!state || state.owner !== this) {
      this.verifySocket(socket);
      state = (socket as unknown as Record<symbol, SocketState>)[kState];
    }
    const r = state.result;
    if (r instanceof MutualError) throw r;
    if (r instanceof Promise) return r;
    const now = this.#now().getTime();
    // Checked again once any certificate of the path expires (the client CA too), not only the leaf.
    if (now >= (this.#pathUntil.get(r) ?? r.notAfter.getTime()) || state.generation !== this.#generation) {
      const x = socket.getPeerX509Certificate?.();
      try {
        const again = this.verify({ leaf: x?.raw, authorized: true });
        if (again instanceof Promise) return again;
        state.generation = this.#generation;
        return again;
      } catch (e) {
        state.result = e as MutualError;
        throw e;
      }
    }
    return r;
  }

  #track(socket: TLSSocket, id: PeerIdentity): void {
    if (!this.#closeRevoked) return;
    let set = this.#sockets.get(id.serial);
    if (!set) this.#sockets.set(id.serial, (set = new Set()));
    set.add(socket);
    socket.once('close', () => {
      set.delete(socket);
      if (set.size === 0 && this.#sockets.get(id.serial) === set) this.#sockets.delete(id.serial);
    });
  }

  #closeRevokedSockets(): void {
    if (!this.#closeRevoked || this.#sockets.size === 0) return;
    for (const [serial, sockets] of this.#sockets) {
      if (!this.#isRevokedNow(serial)) continue;
      for (const s of sockets) {
        if (closedChannel.hasSubscribers) closedChannel.publish({ serial, remoteAddress: s.remoteAddress });
        try {
          s.destroy();
        } catch {
          // An HTTP/2 socket proxy refuses destroy(); its session ends with the real socket.
        }
      }
      this.#sockets.delete(serial);
    }
  }

  #isRevokedNow(serial: string): boolean {
    if (this.#ocspCache.get(serial)?.revoked) return true;
    for (const ca of this.#cas) if (ca.crl && ca.crl.revoked.has(serial)) return true;
    return false;
  }
}

/** True when `der` (a certificate) is signed by `key` (a KeyObject or a DER SPKI). */
function signedBy(der: Buffer, key: KeyObject | Buffer): boolean {
  try {
    const k = Buffer.isBuffer(key) ? crypto.createPublicKey({ key, format: 'der', type: 'spki' }) : key;
    return new X509Certificate(der).verify(k);
  } catch {
    return false;
  }
}

/**
 * What is wrong with a certificate of the path regardless of time and issuer: a critical extension
 * nobody processes (RFC 5280 4.2), a signature algorithm mutual does not accept (SHA-1), or a weak
 * key (RSA under 2048 bits or with an exponent outside 65537..2^256-1, curves other than
 * P-256/P-384; the same key rules as issuance).
 */
function certificateProblem(info: CertificateInfo, what: string): { code: ErrorCode; detail: string } | undefined {
  const unknown = info.criticalExtensions.filter((o) => !PROCESSED_CRITICAL_EXTENSIONS.has(o));
  if (unknown.length) return { code: 'CERT_CRITICAL_EXTENSION', detail: `${what} has the critical extension ${unknown.join(', ')}, which this verifier does not process` };
  if (!ACCEPTED_SIGNATURE_OIDS.has(info.signatureOid)) return { code: 'CERT_WEAK', detail: `${what} is signed with ${info.signatureOid}, which mutual does not accept (SHA-1, or an unknown algorithm)` };
  let label: string;
  try {
    label = describeSpki(info.spki).label;
  } catch (e) {
    return { code: 'CERT_WEAK', detail: `${what} has a weak key: ${isMutualError(e) ? e.fields.detail ?? e.message : 'unreadable public key'}` };
  }
  if (label.startsWith('RSA')) {
    let e: bigint | undefined;
    try {
      e = crypto.createPublicKey({ key: info.spki, format: 'der', type: 'spki' }).asymmetricKeyDetails?.publicExponent;
    } catch {
      e = undefined;
    }
    if (e === undefined || e % 2n === 0n || e < MIN_RSA_EXPONENT || e >= RSA_EXPONENT_LIMIT) {
      return { code: 'CERT_WEAK', detail: `${what} has a weak key: ${label} with public exponent ${e ?? 'unreadable'} (must be odd, at least 65537 and below 2^256)` };
    }
  }
  return undefined;
}

/** CERT_CHAIN_EXPIRED for a CA certificate of the path outside its validity. */
function chainTimeError(c: CertificateInfo, name: string, now: number, who: MutualErrorFields, source: string): MutualError {
  const early = now < c.notBefore.getTime();
  const when = early ? `is valid only from ${c.notBefore.toISOString()}` : `expired ${daysText(now - c.notAfter.getTime())} ago, at ${c.notAfter.toISOString()}`;
  return new MutualError('CERT_CHAIN_EXPIRED', { ...who, notBefore: c.notBefore, notAfter: c.notAfter, detail: `the CA certificate ${name}, ${source}, ${when}; ${source === 'sent in the chain' ? 'the client must send the current client CA certificate with its own (fullchain.pem)' : 'renew the CA certificate and update the trust bundles'}` });
}

/**
 * The issuers in the chain of a connection OpenSSL refused, leaf's issuer first: for a refused chain
 * Node reports the certificates the client sent, then what the trust store adds above them (for an
 * accepted one it shows only the latter). Read only on this rare path, to name the reason.
 */
function refusedChainIssuers(socket: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  try {
    let c = socket.getPeerCertificate(true);
    while (c?.issuerCertificate && c.issuerCertificate !== c && c.issuerCertificate.fingerprint256 !== c.fingerprint256 && out.length < MAX_EXPLAINED_CHAIN) {
      c = c.issuerCertificate;
      out.push(c.raw);
    }
  } catch {
    // No chain to explain with: OpenSSL's reason is given.
  }
  return out;
}

/**
 * The intermediates of a verified connection's path for RFC 9440 `Client-Cert-Chain` (leaf's issuer
 * first): the client CA that signed the leaf, as {@link PeerIdentity.chain}. Empty when the
 * connection's peer is not (yet) verified. Node cannot tell which intermediates a client sent once
 * OpenSSL accepted the chain (`getPeerCertificate(true)` then shows only what the trust store holds),
 * so the verified path is what is forwarded: for an accepted chain it is what the client presented.
 */
export function verifiedChain(socket: TLSSocket): readonly Buffer[] {
  const state = (socket as unknown as Record<symbol, SocketState | undefined>)[kState];
  const r = state?.result;
  return r && !(r instanceof MutualError) && !(r instanceof Promise) ? r.chain : [];
}
