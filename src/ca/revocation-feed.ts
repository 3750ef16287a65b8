/**
 * The revocations a CA server answers from memory, kept current across replicas: the set of
 * revoked serials of unexpired certificates, loaded at start, then followed through the store's
 * revocation log, polled every {@link REVOCATION_POLL_MS}. A revocation made on this replica is
 * recorded at once ({@link RevocationFeed.record}); one made on another arrives with the next poll.
 * Listeners hear each serial once, whichever way it came: the OCSP cache drops its answers, the
 * CRL schedule marks the issuer's CRL for rebuilding.
 */
import type { CertificateAuthority } from './authority.ts';
import type { RevocationEvent, RevocationLog } from './store.ts';

/** How often a replica polls the store for revocations made elsewhere. */
export const REVOCATION_POLL_MS = 1000;
/** Most revoked certificates loaded at start (the unexpired ones; far beyond any real CA). */
const MAX_LOADED_REVOCATIONS = 10_000_000;

/** Options for {@link RevocationFeed.open}. */
export interface RevocationFeedOptions {
  /** The authority whose store's revocation log is followed (and whose inventory lists the revoked at start). */
  ca: Pick<CertificateAuthority, 'list'> & { store: RevocationLog };
  now: () => Date;
  /** Hears serials new to this replica, each once, synchronously. */
  onRevoked?: (events: RevocationEvent[]) => void;
  /** Runs at the end of every poll, before the next may start (the CRL schedule's refresh). */
  afterPoll?: () => Promise<void>;
  /** A failed poll (the store is unreachable): the next one comes on time. */
  onError?: (e: unknown) => void;
}

/** See the module comment. */
export class RevocationFeed {
  readonly #revoked = new Set<string>();
  readonly #o: RevocationFeedOptions;
  #cursor = 0;
  #lastContact: number;
  #polling = false;
  #again = false;
  #timer: NodeJS.Timeout | undefined;

  private constructor(o: RevocationFeedOptions) {
    this.#o = o;
    this.#lastContact = o.now().getTime();
  }

  /** Loads the revoked set and the log's head (not polling yet: see {@link start}). */
  static async open(o: RevocationFeedOptions): Promise<RevocationFeed> {
    const f = new RevocationFeed(o);
    // The cursor starts at the log's head: everything before it is in the set loaded below.
    for (let r = await o.ca.store.revocationsSince(0); ; r = await o.ca.store.revocationsSince(f.#cursor)) {
      if (r.cursor === f.#cursor) break;
      f.#cursor = r.cursor;
      if (r.items.length === 0) break;
    }
    for (const r of await o.ca.list({ status: 'revoked', notExpiredAt: o.now(), limit: MAX_LOADED_REVOCATIONS })) f.#revoked.add(r.serial);
    return f;
  }

  /** True when the serial (lowercase hex) is known here to be revoked. */
  has(serial: string): boolean {
    return this.#revoked.has(serial);
  }

  /** When the store last answered a poll (for readiness). */
  get lastContact(): Date {
    return new Date(this.#lastContact);
  }

  /**
   * Records revocations made on this replica: the listeners hear those new here at once, and a
   * poll follows (coalesced) to rebuild what they touched. Returns the new ones.
   */
  record(events: RevocationEvent[]): RevocationEvent[] {
    const fresh = this.#add(events);
    if (events.length > 0) setImmediate(() => this.poll());
    return fresh;
  }

  /** Polls now, or once more right after the poll under way. */
  poll(): void {
    if (this.#polling) {
      this.#again = true;
      return;
    }
    this.#polling = true;
    this.#pollOnce().catch((e) => this.#o.onError?.(e)).finally(() => {
      this.#polling = false;
      if (this.#again) {
        this.#again = false;
        setImmediate(() => this.poll());
      }
    });
  }

  /** Polls every {@link REVOCATION_POLL_MS} until {@link close}. */
  start(): void {
    clearInterval(this.#timer);
    this.#timer = setInterval(() => this.poll(), REVOCATION_POLL_MS);
    this.#timer.unref();
  }

  /** Stops polling. */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #pollOnce(): Promise<void> {
    const r = await this.#o.ca.store.revocationsSince(this.#cursor);
    this.#lastContact = this.#o.now().getTime();
    this.#cursor = r.cursor;
    this.#add(r.items);
    await this.#o.afterPoll?.();
  }

  #add(events: RevocationEvent[]): RevocationEvent[] {
    const fresh: RevocationEvent[] = [];
    for (const ev of events) {
      if (this.#revoked.has(ev.serial)) continue;
      this.#revoked.add(ev.serial);
      fresh.push(ev);
    }
    if (fresh.length > 0) this.#o.onRevoked?.(fresh);
    return fresh;
  }
}
