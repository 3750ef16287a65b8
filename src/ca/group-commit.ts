/**
 * Group commit for issuance: certificates issued together are recorded in one store transaction,
 * so the fsync is paid once per batch rather than once per certificate (the engine's 5,000+
 * certificates a second need it).
 */
import type { CaStore, CertificateRecord } from './store.ts';

/**
 * Most certificates committed in one transaction by group commit. Small enough that a burst is
 * split: while one batch's fsync runs, the callers of the batch before it are already issuing
 * their next certificates (with one batch holding every request in flight, each fsync stalled the
 * event loop).
 */
export const MAX_COMMIT_BATCH = 32;

/** See the module comment. */
export class GroupCommit {
  readonly #store: Pick<CaStore, 'recordIssued'>;
  #queue: { rec: CertificateRecord; resolve: () => void; reject: (e: unknown) => void }[] = [];
  /** Batches handed to the store and not yet durable. */
  #committing = 0;
  #scheduled = false;

  constructor(store: Pick<CaStore, 'recordIssued'>) {
    this.#store = store;
  }

  /**
   * Records `rec` with the others added in the same turn of the event loop; resolves once its
   * batch is durable, rejects with the store's error when its batch fails.
   */
  add(rec: CertificateRecord): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ rec, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /** Resolves once nothing is queued or committing (before the store is closed). */
  async drain(): Promise<void> {
    while (this.#queue.length || this.#committing) await new Promise((r) => setImmediate(r));
  }

  /**
   * Pipelined: each batch is handed to the store without waiting for the one before it to be
   * durable. SQLite commits inside the call and then waits for the WAL's fsync on the thread
   * pool, so the next batch commits (and the event loop signs) while the disk flushes; each
   * batch's callers are answered when their own batch is durable.
   */
  #flush(): void {
    this.#scheduled = false;
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_COMMIT_BATCH);
      this.#committing++;
      this.#store.recordIssued(batch.map((b) => b.rec)).then(
        () => {
          for (const b of batch) b.resolve();
        },
        (e: unknown) => {
          for (const b of batch) b.reject(e);
        },
      ).finally(() => this.#committing--);
    }
  }
}
