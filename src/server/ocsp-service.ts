/**
 * The OCSP responder (RFC 6960) of `mutual serve`: GET and POST, one delegated responder
 * certificate per intermediate (EKU OCSPSigning, ocsp-nocheck, short-lived, rotated at half its
 * life). Answers are signed once and served as cached bytes until half their validity has passed;
 * a revocation drops that serial's cached answers; nonce requests (RFC 8954) are signed on demand.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CertificateAuthority, IntermediateCa } from '../ca/authority.ts';
import type { RevocationEvent } from '../ca/store.ts';
import { isMutualError } from '../core/errors.ts';
import {
  MAX_OCSP_REQUEST_BYTES, OCSP_INTERNAL_ERROR, OCSP_MALFORMED, OCSP_UNAUTHORIZED, createOcspResponder, matchesIssuer, parseOcspRequest,
  type CertId, type OcspResponder,
} from '../core/ocsp.ts';
import { keyObjectSigner } from '../core/signer.ts';
import { readBody } from './http-util.ts';
import type { CaMetrics } from './metrics.ts';

/** Lifetime of a delegated responder certificate. */
export const RESPONDER_CERT_SECONDS = 2 * 86_400;
/** After a failed responder rotation, the next attempt comes this soon (the old one is still valid). */
export const ROTATION_RETRY_MS = 60_000;
/** Validity (thisUpdate..nextUpdate) of a signed answer; it is re-signed after half of it. */
export const ANSWER_VALIDITY_SECONDS = 3600;
/** Validity of an `unknown` answer (short: a replica may learn of the certificate a moment later). */
export const UNKNOWN_VALIDITY_SECONDS = 60;
/** Most cached answers kept (each ~900 bytes). */
export const MAX_CACHED_ANSWERS = 1_000_000;

interface Cached {
  der: Buffer;
  /** When to stop serving it (half its validity). */
  refreshAt: number;
  nextUpdate: number;
  serial: string;
}

interface Issuer {
  inter: IntermediateCa;
  keyId: string;
  responder: OcspResponder;
  rotateAt: number;
}

const OCSP_TYPE = 'application/ocsp-response';

/** RFC 5019 6.2: caches may keep an answer until its nextUpdate, never longer. */
const cacheControl = (maxAgeMs: number): string => (maxAgeMs > 0 ? `max-age=${Math.floor(maxAgeMs / 1000)}, public, no-transform, must-revalidate` : 'no-store');

/** See the module comment. */
export class OcspService {
  readonly #ca: CertificateAuthority;
  readonly #now: () => Date;
  readonly #metrics: CaMetrics;
  #issuers: Issuer[] = [];
  readonly #cache = new Map<string, Cached>();
  readonly #bySerial = new Map<string, string[]>();
  #rotating: Promise<void> | undefined;
  #rotationTimer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(ca: CertificateAuthority, now: () => Date, metrics: CaMetrics) {
    this.#ca = ca;
    this.#now = now;
    this.#metrics = metrics;
    this.#cachedCounter = metrics.ocspResponses.labels('cached');
  }

  /**
   * Makes the responder certificates and returns a ready service. It answers for the current
   * intermediates and for those retired by a key rotation while they are valid: what they issued
   * is still in use, and its AIA points here.
   */
  static async create(o: { ca: CertificateAuthority; now: () => Date; metrics: CaMetrics }): Promise<OcspService> {
    const s = new OcspService(o.ca, o.now, o.metrics);
    const now = o.now();
    const served = [o.ca.server, o.ca.client, ...o.ca.retired.filter((r) => now >= r.info.notBefore && now < r.info.notAfter)];
    s.#issuers = await Promise.all(served.map((inter) => s.#makeIssuer(inter)));
    s.#scheduleRotation();
    return s;
  }

  /**
   * Rotation runs on a timer as well as on request: an idle server must not let its responder
   * certificates run out (the monitor would rightly call the renewal overdue), and the first
   * request after a quiet spell must not be answered by an expiring responder.
   */
  #scheduleRotation(): void {
    clearTimeout(this.#rotationTimer);
    if (this.#closed || this.#issuers.length === 0) return;
    const due = Math.min(...this.#issuers.map((i) => i.rotateAt)) - this.#now().getTime();
    this.#rotationTimer = setTimeout(() => {
      this.#maybeRotate();
      // A failed rotation keeps the old responders (still valid): try again in a minute.
      void (this.#rotating ?? Promise.resolve()).then(() => {
        if (this.#closed) return;
        if (this.#issuers.some((i) => this.#now().getTime() >= i.rotateAt)) {
          this.#rotationTimer = setTimeout(() => this.#scheduleRotation(), ROTATION_RETRY_MS);
          this.#rotationTimer.unref();
        } else this.#scheduleRotation();
      });
    }, Math.max(0, due));
    this.#rotationTimer.unref();
  }

  async #makeIssuer(inter: IntermediateCa): Promise<Issuer> {
    const now = this.#now();
    const r = await this.#ca.issueOcspResponder(inter, RESPONDER_CERT_SECONDS, now);
    const responder = createOcspResponder({ issuerCertDer: inter.info.der, responderCertDer: r.certificate, signer: keyObjectSigner(r.privateKey) });
    return { inter, keyId: inter.keyId, responder, rotateAt: now.getTime() + (r.notAfter.getTime() - now.getTime()) / 2 };
  }

  /** Rotates responder certificates at half their life (answers signed by the old one stay valid). */
  #maybeRotate(): void {
    const t = this.#now().getTime();
    if (this.#rotating || !this.#issuers.some((i) => t >= i.rotateAt)) return;
    // A retired intermediate that has expired is dropped: nothing it issued is valid any more.
    const live = this.#issuers.filter((i) => t < i.inter.info.notAfter.getTime());
    this.#rotating = Promise.all(live.map((i) => (t >= i.rotateAt ? this.#makeIssuer(i.inter) : i)))
      .then((next) => {
        this.#issuers = next;
      })
      .catch(() => undefined)
      .finally(() => (this.#rotating = undefined));
  }

  /** Forgets cached answers for a revoked serial; the next request is answered `revoked`. */
  markRevoked(ev: RevocationEvent): void {
    for (const k of this.#bySerial.get(ev.serial) ?? []) this.#cache.delete(k);
    this.#bySerial.delete(ev.serial);
  }

  /**
   * The GET fast path, synchronous: an answer already signed for this exact URL is sent without
   * decoding or parsing anything (RFC 5019 clients repeat the same GET). Returns false on a miss.
   */
  trySendCached(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (req.method !== 'GET') return false;
    const hit = this.#cache.get(path);
    if (!hit) return false;
    const now = this.#now().getTime();
    if (now >= hit.refreshAt) return false;
    this.#cachedCounter.inc();
    res.writeHead(200, ['content-type', OCSP_TYPE, 'content-length', String(hit.der.length), 'cache-control', cacheControl(hit.nextUpdate - now)]);
    res.end(hit.der);
    return true;
  }

  readonly #cachedCounter: { inc(): void };

  /** Handles `POST /ocsp` and `GET /ocsp/<base64>`. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (this.trySendCached(req, res, path)) return;
    let der: Buffer;
    try {
      if (req.method === 'POST' && path === '/ocsp') der = await readBody(req, MAX_OCSP_REQUEST_BYTES);
      else if ((req.method === 'GET' || req.method === 'HEAD') && path.startsWith('/ocsp/')) {
        // RFC 6960 A.1: the base64 of the DER request, URL-encoded ('+', '/', '=' may be escaped).
        der = Buffer.from(decodeURIComponent(path.slice(6)), 'base64');
      } else {
        res.writeHead(405, { allow: 'GET, POST' }).end();
        return;
      }
    } catch {
      this.#send(res, OCSP_MALFORMED, 'malformed');
      return;
    }
    let request;
    try {
      request = parseOcspRequest(der);
    } catch (e) {
      this.#send(res, isMutualError(e) ? OCSP_MALFORMED : OCSP_INTERNAL_ERROR, 'malformed');
      return;
    }
    this.#maybeRotate();
    try {
      if (request.requests.length === 1 && !request.nonce) {
        const id = request.requests[0];
        const key = id.raw.toString('latin1');
        const hit = this.#cache.get(key);
        const now = this.#now().getTime();
        if (hit && now < hit.refreshAt) {
          this.#send(res, hit.der, 'cached', hit.nextUpdate - now);
          return;
        }
        const issuer = this.#issuerOf(id);
        if (!issuer) {
          this.#send(res, OCSP_UNAUTHORIZED, 'unauthorized');
          return;
        }
        const { single, validity, status } = await this.#single(issuer, id);
        const t = new Date(Math.floor(now / 1000) * 1000);
        const answer = await issuer.responder.sign([single], t);
        this.#remember(key, id.serial, answer, t.getTime(), validity);
        if (req.method === 'GET' && path.length <= 1024) this.#remember(path, id.serial, answer, t.getTime(), validity);
        // max-age never runs past nextUpdate (RFC 5019 6.2); thisUpdate was rounded down.
        this.#send(res, answer, status, t.getTime() + validity * 1000 - now);
        return;
      }
      // Several CertIDs, or a nonce: signed for this request only.
      const issuers = request.requests.map((id) => this.#issuerOf(id));
      const issuer = issuers[0];
      if (!issuer || issuers.some((i) => i !== issuer)) {
        this.#send(res, OCSP_UNAUTHORIZED, 'unauthorized');
        return;
      }
      const singles = await Promise.all(request.requests.map((id) => this.#single(issuer, id)));
      const t = new Date(Math.floor(this.#now().getTime() / 1000) * 1000);
      const answer = await issuer.responder.sign(singles.map((s) => s.single), t, request.nonce);
      this.#send(res, answer, singles.length === 1 ? singles[0].status : 'several', 0);
    } catch {
      this.#send(res, OCSP_INTERNAL_ERROR, 'error');
    }
  }

  #issuerOf(id: CertId): Issuer | undefined {
    return this.#issuers.find((i) => matchesIssuer(id, i.responder.issuerHashes));
  }

  async #single(issuer: Issuer, id: CertId): Promise<{ single: Buffer; validity: number; status: string }> {
    const now = this.#now();
    const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const cert = await this.#ca.getCertificate(id.serial, issuer.keyId);
    if (!cert) {
      return { single: issuer.responder.encodeSingle({ certId: id.raw, status: 'unknown' }, thisUpdate, new Date(thisUpdate.getTime() + UNKNOWN_VALIDITY_SECONDS * 1000)), validity: UNKNOWN_VALIDITY_SECONDS, status: 'unknown' };
    }
    const next = new Date(thisUpdate.getTime() + ANSWER_VALIDITY_SECONDS * 1000);
    if (cert.status === 'revoked') {
      return { single: issuer.responder.encodeSingle({ certId: id.raw, status: 'revoked', revokedAt: cert.revokedAt!, reason: cert.reason }, thisUpdate, next), validity: ANSWER_VALIDITY_SECONDS, status: 'revoked' };
    }
    return { single: issuer.responder.encodeSingle({ certId: id.raw, status: 'good' }, thisUpdate, next), validity: ANSWER_VALIDITY_SECONDS, status: 'good' };
  }

  #remember(key: string, serial: string, der: Buffer, thisUpdate: number, validity: number): void {
    if (this.#cache.size >= MAX_CACHED_ANSWERS) {
      this.#cache.clear();
      this.#bySerial.clear();
    }
    this.#cache.set(key, { der, serial, refreshAt: thisUpdate + (validity * 1000) / 2, nextUpdate: thisUpdate + validity * 1000 });
    const keys = this.#bySerial.get(serial);
    if (keys) {
      if (!keys.includes(key)) keys.push(key);
    } else this.#bySerial.set(serial, [key]);
  }

  #send(res: ServerResponse, der: Buffer, status: string, maxAgeMs?: number): void {
    this.#metrics.ocspResponses.inc({ status });
    const headers: Record<string, string | number> = { 'content-type': OCSP_TYPE, 'content-length': der.length };
    if (maxAgeMs !== undefined) headers['cache-control'] = cacheControl(maxAgeMs);
    res.writeHead(200, headers);
    res.end(der);
  }

  /** Stops background work. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#rotationTimer);
    this.#cache.clear();
  }
}
