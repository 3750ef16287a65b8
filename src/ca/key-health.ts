/**
 * Whether the CA's keys can sign now, for `/ready`: a key on a PKCS#11 token is unavailable while
 * the token is away (Signer.health), a key in memory always available. Asking a token's Signer is
 * also what reconnects it, so a server whose token came back is ready again without a restart.
 *
 * Each Signer is asked at most once per {@link KEY_HEALTH_INTERVAL_MS} (by the injected clock):
 * a load balancer polling `/ready` from many places must not turn into a reconnect storm against
 * the HSM. Callers in between get the last answer; callers during a check share it.
 */
import type { Signer } from '../core/signer.ts';

/** Least time between two health checks of the keys, in milliseconds. */
export const KEY_HEALTH_INTERVAL_MS = 1000;

/** One key's state, as `/ready` reports it. */
export interface KeyState {
  /** Which key (`server-ca`, `client-ca`, `token`, `server-ca.prev-<key id>`). */
  name: string;
  available: boolean;
  /** Why not (the error code and what the device said); never a PIN. */
  detail?: string;
}

/** What {@link KeyHealth.check} says. */
export interface KeyHealthReport {
  available: boolean;
  /** The keys that cannot sign now (empty when available). */
  unavailable: KeyState[];
  /** When the keys were last asked. */
  checkedAt: Date;
}

/** Options for {@link KeyHealth}. */
export interface KeyHealthOptions {
  /** The keys to ask, read at each check (a reload may change them). */
  signers: () => { name: string; signer: Signer }[];
  now: () => Date;
  /** Default {@link KEY_HEALTH_INTERVAL_MS}. */
  intervalMs?: number;
}

/** See the module comment. */
export class KeyHealth {
  readonly #o: KeyHealthOptions;
  readonly #interval: number;
  #last: KeyHealthReport | undefined;
  #running: Promise<KeyHealthReport> | undefined;

  constructor(o: KeyHealthOptions) {
    this.#o = o;
    this.#interval = o.intervalMs ?? KEY_HEALTH_INTERVAL_MS;
  }

  /** The keys' state: asked now when the last answer is older than the interval, else that answer. Never throws. */
  check(): Promise<KeyHealthReport> {
    const now = this.#o.now();
    if (this.#last && now.getTime() - this.#last.checkedAt.getTime() < this.#interval) return Promise.resolve(this.#last);
    this.#running ??= this.#ask(now).finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #ask(now: Date): Promise<KeyHealthReport> {
    // A Signer asked once even when it backs two names (a key shared after a reload).
    const seen = new Map<Signer, Promise<{ available: boolean; detail?: string }>>();
    const states = await Promise.all(this.#o.signers().map(async ({ name, signer }): Promise<KeyState> => {
      if (!signer.health) return { name, available: true };
      let p = seen.get(signer);
      if (!p) {
        p = signer.health().catch((e: unknown) => ({ available: false, detail: (e as { code?: string } | null)?.code ?? 'health check failed' }));
        seen.set(signer, p);
      }
      return { name, ...(await p) };
    }));
    const unavailable = states.filter((s) => !s.available);
    this.#last = { available: unavailable.length === 0, unavailable, checkedAt: now };
    return this.#last;
  }
}
