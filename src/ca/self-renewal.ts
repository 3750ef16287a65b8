/**
 * The CA server's own TLS certificate: issued by its own server CA at start, renewed at
 * {@link SELF_RENEWAL_FRACTION} of its lifetime on a timer, and handed to the transport to install
 * (with `setSecureContext`, never by restart). A failed renewal keeps the certificate in use
 * (still valid: a third of its life is left) and is tried again after {@link SELF_RENEWAL_RETRY_MS}.
 */
import type { SubjectAltNames } from '../core/names.ts';
import type { CertificateAuthority } from './authority.ts';

/** The server's certificate is renewed when this fraction of its lifetime has passed. */
export const SELF_RENEWAL_FRACTION = 2 / 3;
/** Shortest wait before a renewal (a very short lifetime, in tests, must not spin), and the retry after a failure. */
export const SELF_RENEWAL_RETRY_MS = 60_000;
/** Default lifetime of the server's own certificate. */
export const SELF_CERT_SECONDS = 7 * 86_400;

/** A certificate and key for a TLS server, PEM. */
export interface TlsCredentials {
  key: string;
  /** The certificate followed by its issuer. */
  cert: string;
  serial: string;
}

/** Options for {@link SelfRenewal}. */
export interface SelfRenewalOptions {
  ca: CertificateAuthority;
  names: SubjectAltNames;
  /** Default {@link SELF_CERT_SECONDS}. */
  lifetimeSeconds?: number;
  /** Installs renewed credentials (the transport's `setSecureContext`). */
  install: (c: TlsCredentials) => void;
  /** A renewal failed; it is tried again after {@link SELF_RENEWAL_RETRY_MS}. */
  onError?: (e: unknown) => void;
}

/** See the module comment. */
export class SelfRenewal {
  readonly #o: SelfRenewalOptions;
  readonly #lifetime: number;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(o: SelfRenewalOptions) {
    this.#o = o;
    this.#lifetime = o.lifetimeSeconds ?? SELF_CERT_SECONDS;
  }

  /** Issues a new certificate and key (not installed: the caller does that, or the timer does). */
  async issue(): Promise<TlsCredentials> {
    const issued = await this.#o.ca.issue({ role: 'server', names: this.#o.names, lifetimeSeconds: this.#lifetime, actor: 'serve' });
    return { key: issued.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.fullchainPem, serial: issued.serial };
  }

  /** Starts the renewal timer (the first renewal comes at {@link SELF_RENEWAL_FRACTION} of the lifetime). */
  start(): void {
    this.#schedule(Math.max(SELF_RENEWAL_RETRY_MS, this.#lifetime * 1000 * SELF_RENEWAL_FRACTION));
  }

  /** Stops renewing (a renewal under way is not installed). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    this.#timer = setTimeout(() => void this.#renew(), ms);
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    try {
      const next = await this.issue();
      if (this.#closed) return;
      this.#o.install(next);
    } catch (e) {
      this.#o.onError?.(e);
      this.#schedule(SELF_RENEWAL_RETRY_MS);
      return;
    }
    this.start();
  }
}
