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
 *    hand; fail-closed by default (REVOCATION_UNAVAILABLE). Both answers are cached. The client CA
 *    itself is checked against its root's CRL (learned from the client CA's CRL distribution
 *    points, or loaded) while that CRL is fresh; with none known it is not refused, as before.
 *
 * Everything that does not depend on the time or on revocation data (parse, issuer, signature,
 * EKU, extensions, key, names) is cached per certificate, so a repeat handshake costs a hash lookup
 * and a time check (the path's validity is precomputed as one window).
 * A CRL loaded later applies to new connections at once and, per request, to existing ones; with
 * `closeRevokedConnections` the connections of a newly revoked certificate are closed.
 *
 * This file coordinates; the parts live beside it: sdk/peer-path.ts (checks 2-6 and the trusted
 * CAs), sdk/crl-cache.ts (CRL loading, fetching, refresh), sdk/ocsp-cache.ts (the OCSP fallback),
 * sdk/peer-connections.ts (per-socket outcomes, closing revoked connections).
 */
import diagnostics from 'node:diagnostics_channel';
import type { TLSSocket } from 'node:tls';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { MutualError, isMutualError } from '../core/errors.ts';
import { readCertificateDers } from '../core/pem.ts';
import { revocationUrls } from '../core/cert-urls.ts';
import { CrlCache, CRL_REFRESH_MS, crlLists, crlStatus, throwIfCaRevokedByCrl, throwIfRevokedByCrl, type IssuerRevocationStatus } from './crl-cache.ts';
import { createFetchBytes, type FetchBytes } from './fetch-bytes.ts';
import { OcspCache, throwIfRevokedByOcsp } from './ocsp-cache.ts';
import { ConnectionTracker, refusedChainIssuers, setSocketState, socketState, type SocketState } from './peer-connections.ts';
import { checkLeaf, checkPathTime, explainIssuers, trustedCa, type CheckedLeaf, type LeafCheck, type PeerIdentity, type TrustedCa } from './peer-path.ts';

export {
  CRL_REFRESH_MS, CRL_MAX_AGE_WITHOUT_NEXT_UPDATE_MS, CRL_REFRESH_FRACTION, CRL_RETRY_MS, MAX_CRL_FETCH_BYTES, MAX_LEARNED_CRL_URLS,
} from './crl-cache.ts';
export type { IssuerRevocationStatus } from './crl-cache.ts';
export { MAX_OCSP_FETCH_BYTES, MAX_CACHED_OCSP, OCSP_CLOCK_SKEW_MS } from './ocsp-cache.ts';
export { MAX_EXPLAINED_CHAIN, PROCESSED_CRITICAL_EXTENSIONS, MIN_RSA_EXPONENT, RSA_EXPONENT_LIMIT } from './peer-path.ts';
export type { PeerIdentity } from './peer-path.ts';
export { verifiedChain } from './peer-connections.ts';

/** The CRL distribution points of a client CA certificate (none when it cannot be read). */
function caCrlUrls(der: Buffer): string[] {
  try {
    return revocationUrls(der).crl.filter((u) => /^https?:\/\//.test(u));
  } catch {
    return [];
  }
}

/** Most certificates whose static checks (parse, issuer, signature, EKU) are cached. */
export const MAX_CACHED_CERTIFICATES = 10_000;
/** Most PEM blocks read from a CA bundle. */
export const MAX_TRUST_BUNDLE_CERTS = 64;

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

const rejectedChannel = diagnostics.channel('mutual:verifier:rejected');

/**
 * Reads PEM bundles or DER (a Buffer starting with 0x30) into certificate DERs, at most
 * {@link MAX_TRUST_BUNDLE_CERTS} PEM blocks per item. Throws PEM_MALFORMED for an item that is
 * neither (empty included).
 */
export function readCertificates(input: string | Buffer | readonly (string | Buffer)[]): Buffer[] {
  const list = Array.isArray(input) ? input : [input as string | Buffer];
  return list.flatMap((item) => readCertificateDers(item, { maxBlocks: MAX_TRUST_BUNDLE_CERTS }));
}

/**
 * Verifies client certificates after OpenSSL's chain check. Construct once per service; safe to
 * call from every connection. Call {@link start} to fetch CRLs (and keep them fresh), {@link close}
 * to stop the timers.
 */
export class PeerVerifier {
  readonly mode: RevocationMode;
  readonly #ocspEnabled: boolean;
  readonly #now: () => Date;
  readonly #closeRevoked: boolean;
  #roots: CertificateInfo[];
  readonly #crls: CrlCache;
  readonly #ocsp: OcspCache;
  readonly #connections = new ConnectionTracker();
  #cas: TrustedCa[] = [];
  #generation = 0;
  readonly #static = new Map<string, LeafCheck>();
  /** Until when each verified identity's whole path (leaf, client CA, root) is valid, ms. */
  readonly #pathUntil = new WeakMap<PeerIdentity, number>();

  constructor(o: VerifierOptions) {
    const r = o.revocation ?? {};
    this.mode = r.mode ?? 'fail-closed';
    if (!['fail-closed', 'fail-open', 'off'].includes(this.mode)) throw new TypeError(`revocation.mode must be fail-closed, fail-open or off, not ${String(this.mode)}`);
    this.#ocspEnabled = r.ocsp ?? true;
    const refreshMs = r.refreshMs ?? CRL_REFRESH_MS;
    if (!(refreshMs >= 100)) throw new TypeError('revocation.refreshMs must be at least 100');
    const crlUrls = [...(r.crlUrls ?? [])];
    for (const u of crlUrls) if (!/^https?:\/\//.test(u)) throw new TypeError(`CRL URL must be http(s): ${u}`);
    const fetch = o.fetch ?? createFetchBytes({ ca: o.fetchCa });
    this.#now = o.now ?? (() => new Date());
    this.#closeRevoked = o.closeRevokedConnections ?? true;
    this.#roots = o.roots ? readCertificates(o.roots).map((d) => parseCertificate(d)) : [];
    const onChange = () => void this.#generation++;
    const onRevocations = () => this.#closeRevokedSockets();
    this.#crls = new CrlCache({ crlUrls, refreshMs, fetch, now: this.#now, cas: () => this.#cas, roots: () => this.#roots, onChange, onRevocations });
    this.#ocsp = new OcspCache({ fetch, now: this.#now, refreshMs, onRevoked: () => { onChange(); onRevocations(); } });
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
      const kept = old.find((c) => c.info.der.equals(info.der));
      return kept ?? trustedCa(info, this.#roots);
    });
    // The client CAs' CRL distribution points name their root's CRL, which lists revoked client CAs.
    if (this.mode !== 'off') for (const ca of this.#cas) this.#crls.learn(caCrlUrls(ca.info.der), true);
    this.#static.clear();
    this.#generation++;
  }

  /**
   * Replaces the trust anchors (hot reload of a root bundle, e.g. during a root rollover): each
   * client CA's path is worked out again against the new roots; its loaded CRL stays. Throws
   * PEM_MALFORMED (nothing changes) when the input is not certificates, TypeError when it is empty.
   * Safe to call while serving: connections verified before re-check their path at the next request.
   */
  setRoots(input: string | Buffer | readonly (string | Buffer)[]): void {
    const roots = readCertificates(input).map((d) => parseCertificate(d));
    if (roots.length === 0) throw new TypeError('roots holds no certificate');
    this.#roots = roots;
    this.#cas = this.#cas.map((ca) => ({ ...trustedCa(ca.info, roots), ...(ca.crl ? { crl: ca.crl } : {}), ...(ca.crlSource ? { crlSource: ca.crlSource } : {}), freshUntil: ca.freshUntil }));
    this.#static.clear();
    this.#generation++;
  }

  /** The state of each client CA's revocation data. */
  status(): IssuerRevocationStatus[] {
    const now = this.#now().getTime();
    return this.#cas.map((ca) => crlStatus(ca, now));
  }

  /**
   * Loads a CRL (DER or PEM) for the client CA it names (issuer name + AKI), checking its
   * signature with that CA's key; a CRL of one of the roots (it lists the client CAs the root
   * revoked) is taken too. An older CRL number than the one loaded is ignored. Throws
   * CRL_MALFORMED, CRL_TOO_LARGE, CRL_BAD_SIGNATURE (also when no configured CA or root issued it).
   */
  loadCrl(input: Uint8Array | string, source = 'loaded'): IssuerRevocationStatus {
    const ca = this.#crls.load(input, source);
    return crlStatus(ca, this.#now().getTime());
  }

  /**
   * Fetches every CRL URL now (configured, else learned from certificates) and waits. Failures are
   * published on 'mutual:verifier:crl-failed' and retried; a CRL that is still fresh stays in use.
   */
  refresh(): Promise<void> {
    return this.#crls.refresh();
  }

  /** The CRL URLs learned from the certificates seen (none when URLs are configured). */
  learnedCrlUrls(): string[] {
    return this.#crls.learnedUrls;
  }

  /**
   * Takes CRL URLs learned by another verifier (one this replaces, e.g. after a trust bundle
   * changed), so that {@link start} fetches them before the first request: without them a
   * fail-closed verifier refuses every client until it has seen its certificate once.
   */
  learnCrlUrls(urls: readonly string[]): void {
    this.#crls.learn(urls, false);
  }

  /** Starts keeping CRLs fresh: fetches them now (and waits), then on a timer. */
  start(): Promise<void> {
    return this.#crls.start();
  }

  /** Stops the timers. Loaded data stays usable. */
  close(): void {
    this.#crls.close();
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
    checkPathTime(st, now);
    if (!chain.authorized) {
      // OpenSSL refused the chain. Its verdict is never overruled: it reports only its last error,
      // which may be about another certificate than the one our checks looked at. Our checks over
      // the issuers it used name the reason when they can; otherwise its own reason is given.
      const why = chain.authorizationError instanceof Error ? (chain.authorizationError as NodeJS.ErrnoException).code ?? chain.authorizationError.message : chain.authorizationError ?? undefined;
      if (chain.issuers) explainIssuers(chain.issuers, st, now);
      throw new MutualError('CERT_UNTRUSTED', { serial: st.info.serial, identity: st.identity.spiffeId ?? st.info.subject, detail: `the chain does not verify against the trusted roots (OpenSSL: ${why ?? 'unknown reason'}; serial ${st.info.serial})` });
    }
    return this.#checkRevocation(st, now);
  }

  #staticChecks(der: Buffer): LeafCheck {
    const key = der.toString('latin1');
    const hit = this.#static.get(key);
    if (hit) return hit;
    const st = checkLeaf(der, this.#cas);
    if (st.ok) {
      this.#crls.learn(st.crlUrls, this.mode !== 'off');
      this.#pathUntil.set(st.identity, Math.min(st.info.notAfter.getTime(), st.ca.validUntil));
    }
    if (this.#static.size >= MAX_CACHED_CERTIFICATES) this.#static.delete(this.#static.keys().next().value!);
    this.#static.set(key, st);
    return st;
  }

  #checkRevocation(st: CheckedLeaf, now: number): PeerIdentity | Promise<PeerIdentity> {
    if (this.mode === 'off') return st.identity;
    const ca = st.ca;
    // The client CA against its root's CRL, when one is known (a revocation is final, so a stale
    // CRL that lists the client CA still refuses it, as for leaves); without one, as before.
    const rootCrl = ca.path[1] ? this.#crls.rootCrl(ca.path[1]) : undefined;
    if (rootCrl?.crl) throwIfCaRevokedByCrl(rootCrl.crl, ca.info, st.info);
    if (ca.crl && now < ca.freshUntil) {
      throwIfRevokedByCrl(ca.crl, st.info);
      return st.identity;
    }
    // No fresh CRL: make sure one is on its way, then ask OCSP or decide by the mode.
    this.#crls.fetchMissing();
    const cached = this.#ocsp.answer(st.info.serial, now);
    if (cached) {
      throwIfRevokedByOcsp(cached.revoked, st.info);
      return st.identity;
    }
    if (this.#ocspEnabled && st.ocspUrls.length > 0) {
      return this.#ocsp.query(st.info.serial, st.ca, st.ocspUrls[0]).then(() => {
        const c = this.#ocsp.answer(st.info.serial, this.#now().getTime());
        if (c) {
          throwIfRevokedByOcsp(c.revoked, st.info);
          return st.identity;
        }
        return this.#unknown(st);
      });
    }
    return this.#unknown(st);
  }

  #unknown(st: CheckedLeaf): PeerIdentity {
    if (this.mode === 'fail-open') return st.identity;
    throw new MutualError('REVOCATION_UNAVAILABLE', {
      serial: st.info.serial, identity: st.identity.spiffeId ?? st.info.subject,
      detail: `no fresh CRL for "${st.ca.info.subject}"${this.#ocspEnabled && st.ocspUrls.length ? ' and no OCSP answer' : ''} (serial ${st.info.serial})`,
    });
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
    setSocketState(socket, state);
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
    let state = socketState(socket);
    if (!state || state.owner !== this) {
      this.verifySocket(socket);
      state = socketState(socket)!;
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
    if (this.#closeRevoked) this.#connections.track(socket, id);
  }

  #closeRevokedSockets(): void {
    if (this.#closeRevoked) this.#connections.closeRevoked((serial, id) => this.#isRevokedNow(serial, id));
  }

  #isRevokedNow(serial: string, id: PeerIdentity | undefined): boolean {
    if (this.#ocsp.isRevoked(serial)) return true;
    for (const ca of this.#cas) if (ca.crl && ca.crl.revoked.has(serial)) return true;
    // The client CA revoked by its root's CRL (fresh or not: a revocation is final).
    const ca = id?.chain[0] ? this.#cas.find((c) => c.info.der.equals(id.chain[0])) : undefined;
    const rootCrl = ca?.path[1] ? this.#crls.rootCrl(ca.path[1]) : undefined;
    return !!(ca && rootCrl?.crl && crlLists(rootCrl.crl, ca.info));
  }
}
