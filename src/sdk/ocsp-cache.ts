/**
 * The OCSP fallback of {@link PeerVerifier} (sdk/verifier.ts), asked when no fresh CRL is at hand:
 * one query per serial at a time, the answer checked (signed by the CA or its delegated responder,
 * RFC 6960 4.2.2.2; for this certificate; not from the future, not stale, not "unknown") and cached
 * until its nextUpdate. A failed query caches nothing and is published on 'mutual:verifier:crl-failed'.
 */
import crypto, { X509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { parseCertificate, certificateIdentity, type CertificateInfo } from '../core/certificate.ts';
import { reasonName } from '../core/crl.ts';
import { MutualError } from '../core/errors.ts';
import { OID } from '../core/oids.ts';
import { buildOcspRequest, encodeCertId, matchesIssuer, parseOcspResponse, verifyOcspResponse } from '../core/ocsp.ts';
import type { FetchBytes } from './fetch-bytes.ts';
import type { TrustedCa } from './peer-path.ts';

/** Largest OCSP response read (bytes). */
export const MAX_OCSP_FETCH_BYTES = 64 * 1024;
/** Most OCSP answers cached (one per serial). */
export const MAX_CACHED_OCSP = 10_000;
/** Clock skew tolerated on OCSP thisUpdate (RFC 6960 leaves it to the client), and on a CRL's. */
export const OCSP_CLOCK_SKEW_MS = 5 * 60_000;

const failedChannel = diagnostics.channel('mutual:verifier:crl-failed');

/** A revocation as an OCSP responder told it. */
export interface OcspRevocation {
  at: Date;
  reason?: number;
}

/** What an {@link OcspCache} works with. */
export interface OcspCacheOptions {
  fetch: FetchBytes;
  now: () => Date;
  /** How long an answer without nextUpdate counts, ms. */
  refreshMs: number;
  /** An answer said "revoked": connections re-check, and those of revoked certificates close. */
  onRevoked: () => void;
}

/** Throws CERT_REVOKED when the OCSP answer `r` is a revocation. */
export function throwIfRevokedByOcsp(r: OcspRevocation | undefined, info: CertificateInfo): void {
  if (!r) return;
  const reason = r.reason === undefined ? '' : `, reason ${reasonName(r.reason) ?? r.reason}`;
  throw new MutualError('CERT_REVOKED', { serial: info.serial, identity: certificateIdentity(info) ?? info.subject, revokedAt: r.at, detail: `client certificate revoked at ${r.at.toISOString()}${reason} (serial ${info.serial}, OCSP); get a new certificate` });
}

/** OCSP queries and their cached answers, per serial. */
export class OcspCache {
  readonly #o: OcspCacheOptions;
  readonly #answers = new Map<string, { revoked?: OcspRevocation; until: number }>();
  readonly #inFlight = new Map<string, Promise<void>>();

  constructor(o: OcspCacheOptions) {
    this.#o = o;
  }

  /** The cached answer for `serial` while it is fresh at `now` (ms): `revoked` is set for a revocation. */
  answer(serial: string, now: number): { revoked?: OcspRevocation } | undefined {
    const cached = this.#answers.get(serial);
    return cached && now < cached.until ? cached : undefined;
  }

  /** True when the cached answer for `serial`, fresh or not, is a revocation. */
  isRevoked(serial: string): boolean {
    return this.#answers.get(serial)?.revoked !== undefined;
  }

  /** Asks `url` about the certificate `serial` of `ca` (one query per serial at a time); never rejects. */
  query(serial: string, ca: TrustedCa, url: string): Promise<void> {
    const running = this.#inFlight.get(serial);
    if (running) return running;
    const p = (async () => {
      const request = buildOcspRequest([encodeCertId('sha1', ca.ocspHashes, serial)]);
      const r = await this.#o.fetch(url, { method: 'POST', body: request, contentType: 'application/ocsp-request', maxBytes: MAX_OCSP_FETCH_BYTES });
      if (r.status !== 200) throw new MutualError('FETCH_FAILED', { reason: 'EHTTP', detail: `OCSP HTTP ${r.status}` });
      const resp = parseOcspResponse(r.body);
      if (resp.status !== 'successful') throw new MutualError('OCSP_RESPONSE_INVALID', { detail: `OCSP ${resp.status}` });
      const now = this.#o.now().getTime();
      const responderKey = ocspResponderKey(resp.certs, ca, now, resp.responderKeyHash);
      if (!responderKey || !verifyOcspResponse(resp, responderKey)) throw new MutualError('OCSP_RESPONSE_INVALID', { detail: 'the OCSP response is not signed by the CA or its delegated responder' });
      const single = resp.responses.find((s) => s.certId.serial === serial && matchesIssuer(s.certId, ca.ocspHashes));
      if (!single) throw new MutualError('OCSP_RESPONSE_INVALID', { detail: 'the OCSP response does not answer for this certificate' });
      if (single.thisUpdate.getTime() > now + OCSP_CLOCK_SKEW_MS) throw new MutualError('OCSP_RESPONSE_INVALID', { detail: 'the OCSP answer is from the future' });
      const until = single.nextUpdate ? single.nextUpdate.getTime() : now + this.#o.refreshMs;
      if (until <= now) throw new MutualError('OCSP_RESPONSE_INVALID', { detail: 'the OCSP answer is stale' });
      if (single.status === 'unknown') throw new MutualError('OCSP_RESPONSE_INVALID', { detail: 'the OCSP responder does not know the certificate' });
      if (this.#answers.size >= MAX_CACHED_OCSP) this.#answers.delete(this.#answers.keys().next().value!);
      this.#answers.set(serial, { until, ...(single.status === 'revoked' ? { revoked: { at: single.revokedAt!, reason: single.reason } } : {}) });
      if (single.status === 'revoked') this.#o.onRevoked();
    })().catch((e) => {
      if (failedChannel.hasSubscribers) failedChannel.publish({ url, error: e instanceof Error ? e.message : String(e), ocsp: true });
    }).finally(() => this.#inFlight.delete(serial));
    this.#inFlight.set(serial, p);
    return p;
  }
}

/** The key that may sign OCSP answers for `ca` (RFC 6960 4.2.2.2): the CA's, or a delegated responder's. */
function ocspResponderKey(certs: Buffer[], ca: TrustedCa, now: number, keyHash?: Buffer): KeyObject | undefined {
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
