/**
 * The delegated OCSP responders of a CA server (RFC 6960 4.2.2.2): one per intermediate it
 * answers for (the current ones, and those retired by a key rotation while they are valid: what
 * they issued is still in use, and its AIA points here), each with a short-lived certificate
 * (EKU OCSPSigning, ocsp-nocheck) and a new key, rotated at half its life. Rotation runs on a
 * timer as well as on request: an idle server must not let its responder certificates run out
 * (the monitor would rightly call the renewal overdue), and the first request after a quiet spell
 * must not be answered by an expiring responder. Answers signed by the old one stay valid.
 *
 * A replaced responder's key is released (destroyed on the token when `keys.ocspResponderKeys:
 * store` made it a session object) once no request holds it: a request takes its responder with
 * {@link OcspResponders.acquire} before it reads the inventory, and signs with it after, so the
 * key must outlive the swap by as long as that request runs.
 */
import { createOcspResponder, matchesIssuer, type CertId, type OcspResponder } from '../core/ocsp.ts';
import type { GeneratedSigner } from '../keys/index.ts';
import type { CertificateAuthority, IntermediateCa } from './authority.ts';

/** Lifetime of a delegated responder certificate. */
export const RESPONDER_CERT_SECONDS = 2 * 86_400;
/** After a failed responder rotation, the next attempt comes this soon (the old one is still valid). */
export const ROTATION_RETRY_MS = 60_000;

/** One intermediate's responder. */
export interface OcspIssuer {
  inter: IntermediateCa;
  keyId: string;
  responder: OcspResponder;
  /** When to replace the responder certificate (ms since the epoch): half its life. */
  rotateAt: number;
  /** The responder's key, released once the responder is replaced and no request holds it. */
  key: GeneratedSigner;
  /** Requests holding this responder (acquire/release). */
  users: number;
  /** Replaced (or the responders closed): its key goes when `users` drops to 0. */
  retired: boolean;
}

/** See the module comment. */
export class OcspResponders {
  readonly #ca: CertificateAuthority;
  readonly #now: () => Date;
  #issuers: OcspIssuer[] = [];
  #rotating: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(ca: CertificateAuthority, now: () => Date) {
    this.#ca = ca;
    this.#now = now;
  }

  /** Issues the responder certificates (recorded in the inventory) and starts the rotation timer. */
  static async create(o: { ca: CertificateAuthority; now: () => Date }): Promise<OcspResponders> {
    const s = new OcspResponders(o.ca, o.now);
    const now = o.now();
    const served = [o.ca.server, o.ca.client, ...o.ca.retired.filter((r) => now >= r.info.notBefore && now < r.info.notAfter)];
    s.#issuers = await s.#makeAll(served.map((inter) => () => s.#make(inter)));
    s.#schedule();
    return s;
  }

  /** The responder for the issuer a CertID names, if this server answers for it. */
  find(id: CertId): OcspIssuer | undefined {
    return this.#issuers.find((i) => matchesIssuer(id, i.responder.issuerHashes));
  }

  /**
   * {@link find}, holding the responder for the caller: its key stays until {@link release}, even
   * when a rotation replaces it meanwhile. Every acquire is paired with one release.
   */
  acquire(id: CertId): OcspIssuer | undefined {
    const issuer = this.find(id);
    if (issuer) issuer.users++;
    return issuer;
  }

  /** Lets go of a responder taken with {@link acquire}; a replaced one's key is released when unused. */
  release(issuer: OcspIssuer): void {
    issuer.users--;
    this.#releaseIfUnused(issuer);
  }

  #retire(issuer: OcspIssuer): void {
    issuer.retired = true;
    this.#releaseIfUnused(issuer);
  }

  #releaseIfUnused(issuer: OcspIssuer): void {
    if (!issuer.retired || issuer.users > 0) return;
    // A key the token cannot destroy now goes with its session; the answers it signed stay valid.
    issuer.key.release().catch(() => undefined);
  }

  /** Runs the makers together; when one fails, the keys the others made are released, and it throws. */
  async #makeAll(makers: (() => Promise<OcspIssuer>)[]): Promise<OcspIssuer[]> {
    const made = await Promise.allSettled(makers.map((m) => m()));
    const failed = made.find((r) => r.status === 'rejected');
    if (!failed) return made.map((r) => (r as PromiseFulfilledResult<OcspIssuer>).value);
    for (const r of made) if (r.status === 'fulfilled') this.#retire(r.value);
    throw failed.reason;
  }

  /**
   * Starts replacing the responders due at half their life, unless a rotation is under way;
   * requests go on with the current ones meanwhile. A failure keeps them (still valid).
   */
  maybeRotate(): void {
    const t = this.#now().getTime();
    if (this.#rotating || !this.#issuers.some((i) => t >= i.rotateAt)) return;
    // A retired intermediate that has expired is dropped: nothing it issued is valid any more.
    const live = this.#issuers.filter((i) => t < i.inter.info.notAfter.getTime());
    this.#rotating = this.#makeAll(live.map((i) => (t >= i.rotateAt ? () => this.#make(i.inter) : async () => i)))
      .then((next) => {
        const old = this.#issuers;
        this.#issuers = next;
        // Replaced, or dropped with an expired retired intermediate: their keys go once unused.
        for (const i of old) if (!next.includes(i)) this.#retire(i);
        if (this.#closed) for (const i of next) this.#retire(i);
      })
      .catch(() => undefined)
      .finally(() => (this.#rotating = undefined));
  }

  /**
   * Says that `issuer`'s responder could not sign. A responder key on a token (`keys.
   * ocspResponderKeys: store`) is a session object: a token that went away and came back no
   * longer holds it, so the responder is made again (a new key and certificate) at the next
   * {@link maybeRotate}; until that works, its requests fail as they did.
   */
  signFailed(issuer: OcspIssuer, e: unknown): void {
    const code = (e as { code?: unknown } | null)?.code;
    if (typeof code !== 'string' || !code.startsWith('HSM_')) return;
    issuer.rotateAt = 0;
  }

  /** Stops the rotation timer and releases the responders' keys (each once no request holds it). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const i of this.#issuers) this.#retire(i);
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#closed || this.#issuers.length === 0) return;
    const due = Math.min(...this.#issuers.map((i) => i.rotateAt)) - this.#now().getTime();
    this.#timer = setTimeout(() => {
      this.maybeRotate();
      // A failed rotation keeps the old responders (still valid): try again in a minute.
      void (this.#rotating ?? Promise.resolve()).then(() => {
        if (this.#closed) return;
        if (this.#issuers.some((i) => this.#now().getTime() >= i.rotateAt)) {
          this.#timer = setTimeout(() => this.#schedule(), ROTATION_RETRY_MS);
          this.#timer.unref();
        } else this.#schedule();
      });
    }, Math.max(0, due));
    this.#timer.unref();
  }

  async #make(inter: IntermediateCa): Promise<OcspIssuer> {
    const now = this.#now();
    const r = await this.#ca.issueOcspResponder(inter, RESPONDER_CERT_SECONDS, now);
    let responder: OcspResponder;
    try {
      responder = createOcspResponder({ issuerCertDer: inter.info.der, responderCertDer: r.certificate, signer: r.signer });
    } catch (e) {
      await r.signer.release().catch(() => undefined);
      throw e;
    }
    return { inter, keyId: inter.keyId, responder, rotateAt: now.getTime() + (r.notAfter.getTime() - now.getTime()) / 2, key: r.signer, users: 0, retired: false };
  }
}
