/**
 * The OCSP responder (RFC 6960) of `mutual serve`: GET and POST, answered by the delegated
 * responders of src/ca/ocsp-responders.ts (which issues and rotates their certificates). Answers
 * are signed once and served as cached bytes until half their validity has passed; a revocation
 * drops that serial's cached answers; nonce requests (RFC 8954) are signed on demand.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type CertificateAuthority, OcspResponders, type OcspIssuer } from '../ca/index.ts';
import type { RevocationEvent } from '../ca/store.ts';
import { isMutualError } from '../core/errors.ts';
import {
  MAX_OCSP_REQUEST_BYTES, OCSP_INTERNAL_ERROR, OCSP_MALFORMED, OCSP_UNAUTHORIZED, parseOcspRequest, type CertId,
} from '../core/ocsp.ts';
import { readBody } from './http-util.ts';
import type { CaMetrics } from './metrics.ts';

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

const OCSP_TYPE = 'application/ocsp-response';

/** RFC 5019 6.2: caches may keep an answer until its nextUpdate, never longer. */
const cacheControl = (maxAgeMs: number): string => (maxAgeMs > 0 ? `max-age=${Math.floor(maxAgeMs / 1000)}, public, no-transform, must-revalidate` : 'no-store');

/** See the module comment. */
export class OcspService {
  readonly #ca: CertificateAuthority;
  readonly #now: () => Date;
  readonly #metrics: CaMetrics;
  readonly #responders: OcspResponders;
  readonly #cache = new Map<string, Cached>();
  readonly #bySerial = new Map<string, string[]>();
  readonly #onError: (e: unknown) => void;

  private constructor(ca: CertificateAuthority, now: () => Date, metrics: CaMetrics, responders: OcspResponders, onError: (e: unknown) => void) {
    this.#ca = ca;
    this.#onError = onError;
    this.#responders = responders;
    this.#now = now;
    this.#metrics = metrics;
    this.#cachedCounter = metrics.ocspResponses.labels('cached');
  }

  /**
   * Makes the responder certificates (rotated on their own timer) and returns a ready service.
   * It answers for the current intermediates and for those retired by a key rotation while they
   * are valid.
   */
  static async create(o: { ca: CertificateAuthority; now: () => Date; metrics: CaMetrics; /** Hears answers that could not be made (a token away); the caller gets internalError. */ onError?: (e: unknown) => void }): Promise<OcspService> {
    return new OcspService(o.ca, o.now, o.metrics, await OcspResponders.create({ ca: o.ca, now: o.now }), o.onError ?? (() => undefined));
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
    this.#responders.maybeRotate();
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
        const answer = await this.#sign(issuer, [single], t);
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
      const answer = await this.#sign(issuer, singles.map((s) => s.single), t, request.nonce);
      this.#send(res, answer, singles.length === 1 ? singles[0].status : 'several', 0);
    } catch (e) {
      this.#onError(e);
      this.#send(res, OCSP_INTERNAL_ERROR, 'error');
    }
  }

  /** Signs with the issuer's responder; a key the token lost gets its responder made again (OcspResponders.signFailed). */
  async #sign(issuer: OcspIssuer, ...args: Parameters<OcspIssuer['responder']['sign']>): Promise<Buffer> {
    try {
      return await issuer.responder.sign(...args);
    } catch (e) {
      this.#responders.signFailed(issuer, e);
      throw e;
    }
  }

  #issuerOf(id: CertId): OcspIssuer | undefined {
    return this.#responders.find(id);
  }

  async #single(issuer: OcspIssuer, id: CertId): Promise<{ single: Buffer; validity: number; status: string }> {
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
    this.#responders.close();
    this.#cache.clear();
  }
}
