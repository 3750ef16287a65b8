/**
 * The delegated OCSP responders of a CA server (RFC 6960 4.2.2.2): one per intermediate it
 * answers for (the current ones, and those retired by a key rotation while they are valid: what
 * they issued is still in use, and its AIA points here), each with a short-lived certificate
 * (EKU OCSPSigning, ocsp-nocheck) and a new key, rotated at half its life. Rotation runs on a
 * timer as well as on request: an idle server must not let its responder certificates run out
 * (the monitor would rightly call the renewal overdue), and the first request after a quiet spell
 * must not be answered by an expiring responder. Answers signed by the old one stay valid.
 */
import { createOcspResponder, matchesIssuer, type CertId, type OcspResponder } from '../core/ocsp.ts';
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
    s.#issuers = await Promise.all(served.map((inter) => s.#make(inter)));
    s.#schedule();
    return s;
  }

  /** The responder for the issuer a CertID names, if this server answers for it. */
  find(id: CertId): OcspIssuer | undefined {
    return this.#issuers.find((i) => matchesIssuer(id, i.responder.issuerHashes));
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
    this.#rotating = Promise.all(live.map((i) => (t >= i.rotateAt ? this.#make(i.inter) : i)))
      .then((next) => {
        this.#issuers = next;
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

  /** Stops the rotation timer. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
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
    const responder = createOcspResponder({ issuerCertDer: inter.info.der, responderCertDer: r.certificate, signer: r.signer });
    return { inter, keyId: inter.keyId, responder, rotateAt: now.getTime() + (r.notAfter.getTime() - now.getTime()) / 2 };
  }
}
