/**
 * The CRLs a CA server serves from memory, one per intermediate: `server`, `client`, and
 * `<role>.prev-<key id>` for those retired by a key rotation (they still revoke what they issued)
 * until they expire. Each is also known under its key's name, the one certificates carry
 * (`server.<key id>`). A CRL is rebuilt when a revocation touches its issuer (coalesced: marked
 * dirty, rebuilt at the next {@link CrlSchedule.refresh}) and when {@link CRL_REFRESH_FRACTION} of
 * its lifetime has passed, long before nextUpdate; the age-based rebuild runs on one replica at a
 * time (the store's job lock). Every CRL signed is also written to the state folder.
 */
import { CRL_LIFETIME_MS, type CertificateAuthority, type IntermediateCa } from './authority.ts';
import { toPem } from '../core/pem.ts';

/** A CRL is rebuilt when half its lifetime has passed, long before nextUpdate. */
export const CRL_REFRESH_FRACTION = 0.5;

/** A CRL as served. */
export interface ServedCrl {
  der: Buffer;
  pem: string;
  thisUpdate: Date;
  nextUpdate: Date;
}

/** Options for {@link CrlSchedule.create}. */
export interface CrlScheduleOptions {
  ca: CertificateAuthority;
  now: () => Date;
  /** Retired intermediates to serve CRLs for (default: those valid now, `ca.liveRetired`). */
  retired?: IntermediateCa[];
  /** Hears the age of each CRL, in seconds, at every refresh and rebuild (a metric). */
  onAge?: (name: string, seconds: number) => void;
}

/** See the module comment. */
export class CrlSchedule {
  readonly #ca: CertificateAuthority;
  readonly #now: () => Date;
  readonly #onAge: (name: string, seconds: number) => void;
  readonly #issuers: Map<string, IntermediateCa>;
  readonly #byKeyedName: Map<string, string>;
  readonly #crls = new Map<string, ServedCrl>();
  #dirty = new Set<string>();
  /** The retired intermediates this schedule was made for (valid when it was made). */
  readonly retired: readonly IntermediateCa[];

  private constructor(o: CrlScheduleOptions) {
    this.#ca = o.ca;
    this.#now = o.now;
    this.#onAge = o.onAge ?? (() => undefined);
    const ca = o.ca;
    const retired = o.retired ?? ca.liveRetired(o.now());
    this.retired = retired;
    this.#issuers = new Map([ca.server, ca.client, ...retired].map((inter) => [ca.crlName(inter), inter]));
    this.#byKeyedName = new Map([...this.#issuers].map(([name, inter]) => [ca.keyedName(inter), name]));
  }

  /** Signs every CRL and returns the schedule; a failure to sign any is thrown (nothing is served). */
  static async create(o: CrlScheduleOptions): Promise<CrlSchedule> {
    const s = new CrlSchedule(o);
    for (const [name, inter] of s.#issuers) s.#crls.set(name, await s.#sign(inter));
    for (const name of s.#issuers.keys()) s.#onAge(name, 0);
    return s;
  }

  /** The CRL served under a name (`server`, `client.prev-<key id>`, `server.<key id>`). */
  crl(name: string): ServedCrl | undefined {
    return this.#crls.get(this.#canonical(name));
  }

  /** The intermediate whose CRL is served under a name (as {@link crl}). */
  issuer(name: string): IntermediateCa | undefined {
    return this.#issuers.get(this.#canonical(name));
  }

  /**
   * The valid intermediates of a role, current first, then the retired ones until they expire:
   * what a relying party needs to accept what an old key issued after a key rotation.
   */
  intermediatesOf(role: IntermediateCa['role']): IntermediateCa[] {
    const now = this.#now();
    return [...this.#issuers.values()].filter((i) => i.role === role && now < i.info.notAfter);
  }

  /** Marks for rebuilding the CRL of the issuer with this key id (a revocation it issued). */
  markDirty(issuerKeyId: string): void {
    const issuer = this.#ca.issuerByKeyId(issuerKeyId);
    if (issuer) this.#dirty.add(this.#ca.crlName(issuer));
  }

  /** Marks every CRL for rebuilding (a revocation may have come in while they were signed). */
  markAllDirty(): void {
    for (const name of this.#issuers.keys()) this.#dirty.add(name);
  }

  /**
   * Rebuilds the dirty CRLs, then those past {@link CRL_REFRESH_FRACTION} of their lifetime. One
   * that cannot be signed (its key's token is away) stays dirty, the others go on, and the first
   * failure is thrown for the caller to log: the next refresh (the revocation feed's next poll)
   * tries again, and the CRL served meanwhile is the last one signed, still valid.
   */
  async refresh(): Promise<void> {
    const dirty = this.#dirty;
    this.#dirty = new Set();
    let failure: { e: unknown } | undefined;
    for (const name of dirty) {
      try {
        await this.#rebuild(name);
      } catch (e) {
        this.#dirty.add(name);
        failure ??= { e };
      }
    }
    for (const [name, c] of this.#crls) {
      const age = this.#now().getTime() - c.thisUpdate.getTime();
      this.#onAge(name, age / 1000);
      if (age <= CRL_REFRESH_FRACTION * (c.nextUpdate.getTime() - c.thisUpdate.getTime())) continue;
      try {
        await this.#ca.store.withJobLock(`crl-${name}`, () => this.#rebuild(name));
      } catch (e) {
        failure ??= { e };
      }
    }
    if (failure) throw failure.e;
  }

  #canonical(name: string): string {
    return this.#byKeyedName.get(name) ?? name;
  }

  async #rebuild(name: string): Promise<void> {
    const inter = this.#issuers.get(name);
    if (!inter) return;
    if (this.#now() >= inter.info.notAfter && inter !== this.#ca.server && inter !== this.#ca.client) {
      // A retired intermediate that has expired: nothing it issued is valid any more.
      this.#issuers.delete(name);
      this.#crls.delete(name);
      return;
    }
    this.#crls.set(name, await this.#sign(inter));
    this.#onAge(name, 0);
  }

  async #sign(inter: IntermediateCa): Promise<ServedCrl> {
    const der = await this.#ca.writeCrlOf(inter, this.#now());
    const t = this.#now();
    return { der, pem: toPem(der, 'X509 CRL'), thisUpdate: t, nextUpdate: new Date(t.getTime() + CRL_LIFETIME_MS) };
  }
}
