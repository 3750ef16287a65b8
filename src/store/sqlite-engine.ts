/**
 * The SQLite store's durability engine: the connection, its transactions, when what they wrote is
 * on disk, the checkpointer thread and the writer thread. The queries (sqlite-store.ts) run inside
 * {@link SqliteEngine.transaction} and wait on {@link SqliteEngine.durable} before they answer;
 * nothing a write call returns is acknowledged before the WAL holding it is on disk.
 *
 * Where the fsync runs: by default SQLite commits with synchronous=NORMAL (no fsync inside
 * COMMIT) and the engine then fdatasyncs the WAL file on libuv's thread pool before the write call
 * resolves; commits that land while one sync runs share the next. That is the guarantee of
 * synchronous=FULL (which fsyncs the WAL after each commit) for every acknowledged transaction,
 * without the event loop blocked in fsync: in `mutual serve` the blocking sync took 20% of the
 * event loop at 8 concurrent clients. (NORMAL alone would lose the last commits on power loss;
 * checkpoints are synced by SQLite either way.) `fsync: 'commit'` keeps SQLite's FULL.
 *
 * Checkpoints (copying the WAL back into the database file) then run on a checkpointer thread with
 * its own connection (sqlite-checkpoint-worker.ts), started once about 4 MB have been written:
 * inside COMMIT they blocked the event loop in two fsyncs every ~500 certificates (5% of the
 * issuance engine's time). If that thread fails, SQLite's own checkpoints in COMMIT take over.
 *
 * With `writerThread`, issued certificates are committed on a thread of their own
 * (sqlite-writer-worker.ts), whose fsync overlaps the signing of the next batch.
 */
import { DatabaseSync } from 'node:sqlite';
import { chmodSync, existsSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import { MutualError } from '../core/errors.ts';
import type { CertificateRecord } from '../ca/store.ts';

/**
 * A worker module beside this one, with this module's extension: `.ts` in a checkout (Node strips
 * the types), `.js` in the compiled package, where no `.ts` file exists (tsc rewrites import
 * specifiers, not URLs).
 */
const siblingWorker = (name: string): URL => new URL(`./${name}${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

/**
 * WAL bytes written, as estimated by {@link estimateWalBytes}, before the checkpointer is asked to
 * run: about SQLite's default of 1,000 pages.
 */
export const CHECKPOINT_AFTER_BYTES = 4 * 1024 * 1024;

/**
 * WAL frames the checkpointer may leave behind before this connection checkpoints itself (it can
 * then finish, since it is the writer, and the WAL restarts): 64 MB of 4 KB pages.
 */
const MAX_WAL_FRAMES = 16_384;

/**
 * What a transaction adds to the WAL, roughly: each certificate rewrites its table and audit pages
 * and a random page of the serial index (measured ~10 KB per certificate in batches of 32).
 */
function estimateWalBytes(records: number): number {
  return 8192 + records * 8192;
}

/** Options of {@link SqliteEngine} (and of openSqliteStore). */
export interface SqliteEngineOptions {
  /** Database file; created with mode 0600 if missing. */
  path: string;
  /**
   * Commit issued certificates on a writer thread (default false; `mutual serve
   * --sqlite-writer-thread` turns it on): the fsync of one batch then overlaps the signing of the
   * next instead of blocking the event loop.
   */
  writerThread?: boolean;
  /**
   * Where transactions are made durable (see the module comment): 'thread-pool' (default), an
   * fdatasync of the WAL on libuv's pool after the commit; 'commit', SQLite's synchronous=FULL,
   * inside COMMIT on the calling thread.
   */
  fsync?: 'thread-pool' | 'commit';
  /**
   * With `fsync: 'thread-pool'`: 'thread' (default) runs checkpoints on the checkpointer thread,
   * 'inline' leaves them to SQLite inside COMMIT.
   */
  checkpoints?: 'thread' | 'inline';
  /** Estimated WAL bytes between checkpoints; default {@link CHECKPOINT_AFTER_BYTES}. */
  checkpointAfterBytes?: number;
  /** The checkpointer's module; tests substitute one that fails. Default sqlite-checkpoint-worker.ts (.js when compiled). */
  checkpointWorker?: URL;
}

/** Where checkpoints run now, and how many the checkpointer thread has done. */
export interface CheckpointStats {
  mode: 'thread' | 'inline';
  /** Completed checkpointer requests. */
  done: number;
  /** WAL frames and frames copied, as the last request left them. */
  frames: number;
  checkpointed: number;
  /** Commits are waiting for the checkpointer's last pass now. */
  holding: boolean;
  /** Why the checkpointer thread stopped, if it did (checkpoints are then inline). */
  error?: string;
}

/** One SQLite connection and what makes its commits durable. Throws TypeError on bad options. */
export class SqliteEngine {
  readonly db: DatabaseSync;
  readonly path: string;
  /** Issued certificates are committed on the writer thread ({@link commitOnWriter}). */
  readonly writerThread: boolean;

  #writer: Worker | undefined;
  #pending = new Map<number, { resolve: () => void; reject: (e: unknown) => void }>();
  #nextId = 1;

  /** Commits are made durable by {@link durable}, not inside COMMIT. */
  readonly #deferSync: boolean;
  #wal: FileHandle | undefined;
  /** Something was committed since the last sync started. */
  #dirty = false;
  #syncing: Promise<void> | undefined;
  #syncAgain: Promise<void> | undefined;

  readonly #checkpoint: Omit<CheckpointStats, 'holding'>;
  readonly #checkpointAfter: number;
  /** Estimated WAL bytes since the checkpointer was last asked to run. */
  #walBytes = 0;
  #checkpointer: Worker | undefined;
  #checkpointRunning = false;
  #checkpointAsked = 0;
  readonly #checkpointWorker: URL;
  /** Commits wait on this while the checkpointer's last pass runs (see sqlite-checkpoint-worker.ts). */
  #hold: { until: Promise<void>; release: () => void } | undefined;

  constructor(o: SqliteEngineOptions) {
    const { path, fsync = 'thread-pool', checkpoints = 'thread', checkpointAfterBytes = CHECKPOINT_AFTER_BYTES } = o;
    this.#checkpointWorker = o.checkpointWorker ?? siblingWorker('sqlite-checkpoint-worker');
    this.path = path;
    this.writerThread = (o.writerThread ?? false) && path !== ':memory:';
    // With a writer thread, that thread commits with FULL; this connection's writes stay deferred.
    this.#deferSync = fsync === 'thread-pool' && path !== ':memory:';
    const fresh = !existsSync(path);
    this.db = new DatabaseSync(path);
    if (fresh && path !== ':memory:') chmodSync(path, 0o600);
    this.db.exec(`PRAGMA busy_timeout=5000; PRAGMA journal_mode=WAL; PRAGMA synchronous=${this.#deferSync ? 'NORMAL' : 'FULL'}; PRAGMA foreign_keys=ON;`);
    if (!(checkpointAfterBytes > 0)) throw new TypeError('checkpointAfterBytes must be positive');
    this.#checkpointAfter = checkpointAfterBytes;
    this.#checkpoint = { mode: this.#deferSync && checkpoints === 'thread' ? 'thread' : 'inline', done: 0, frames: 0, checkpointed: 0 };
    if (this.#checkpoint.mode === 'thread') this.db.exec('PRAGMA wal_autocheckpoint=0');
  }

  /**
   * Runs `fn` in one write transaction (BEGIN IMMEDIATE: the write lock first) and commits; rolls
   * back and throws STORE_FAILED (a MutualError `fn` threw passes as it is) on failure. `reread`
   * runs just after BEGIN and after a rollback: another process (the CLI beside a running server)
   * may have written, so state kept from the database (the audit chain's head) is read again
   * inside the lock. `records`: certificates written, for the checkpointer's estimate. The commit
   * is not yet durable when this returns: wait on {@link durable}.
   */
  transaction<T>(fn: () => T, o: { records?: number; reread?: () => void } = {}): T {
    this.db.exec('BEGIN IMMEDIATE');
    o.reread?.();
    try {
      const out = fn();
      this.db.exec('COMMIT');
      this.#dirty = true;
      this.#noteWrite(estimateWalBytes(o.records ?? 0));
      return out;
    } catch (e) {
      this.db.exec('ROLLBACK');
      o.reread?.();
      throw e instanceof MutualError ? e : new MutualError('STORE_FAILED', { detail: (e as Error).message }, { cause: e });
    }
  }

  /** Commits are held while the checkpointer's last pass runs: wait on {@link unheld} before a transaction. */
  get holding(): boolean {
    return this.#hold !== undefined;
  }

  /** Waits while the checkpointer holds commits (rarely, a few milliseconds). */
  async unheld(): Promise<void> {
    while (this.#hold) await this.#hold.until;
  }

  /**
   * Resolves once everything this connection has committed so far is on disk: an fdatasync of the
   * WAL that started after the last commit has finished. One sync runs at a time; callers that
   * arrive while it runs share the next one.
   */
  durable(): Promise<void> {
    if (!this.#deferSync) return Promise.resolve();
    // Nothing committed since the running (or last) sync started: that sync covers it all.
    if (!this.#dirty) return this.#syncing ?? Promise.resolve();
    if (!this.#syncing) {
      this.#dirty = false;
      const run = this.#syncWal().finally(() => {
        if (this.#syncing === run) this.#syncing = undefined;
      });
      this.#syncing = run;
      return run;
    }
    // The running sync may have started before this caller's commit: wait for the next one.
    this.#syncAgain ??= this.#syncing.then(
      () => {
        this.#syncAgain = undefined;
        return this.durable();
      },
      () => {
        this.#syncAgain = undefined;
        return this.durable();
      },
    );
    return this.#syncAgain;
  }

  async #syncWal(): Promise<void> {
    try {
      if (!this.#wal) {
        // SQLite keeps the -wal file while a connection (this one) is open; its name must be
        // durable too, so the folder is synced once.
        this.#wal = await open(`${this.path}-wal`, 'r');
        const dir = await open(dirname(this.path), 'r');
        try {
          await dir.sync();
        } finally {
          await dir.close();
        }
      }
      await this.#wal.datasync();
    } catch (e) {
      await this.#wal?.close().catch(() => undefined);
      this.#wal = undefined;
      throw new MutualError('STORE_FAILED', { detail: `could not sync ${this.path}-wal: ${(e as Error).message}` }, { cause: e });
    }
  }

  /**
   * Commits issued certificates on the writer thread, which commits with synchronous=FULL: durable
   * when this resolves. Starts the thread on first use.
   */
  commitOnWriter(records: CertificateRecord[]): Promise<void> {
    if (!this.#writer) {
      const w = new Worker(siblingWorker('sqlite-writer-worker'), { workerData: { path: this.path } });
      w.on('message', (m: { id: number; error?: string }) => {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        if (!p) return;
        if (m.error) p.reject(new MutualError('STORE_FAILED', { detail: m.error }));
        else p.resolve();
      });
      w.on('error', (e) => {
        for (const p of this.#pending.values()) p.reject(new MutualError('STORE_FAILED', { detail: e.message }, { cause: e }));
        this.#pending.clear();
        this.#writer = undefined;
      });
      this.#writer = w;
    }
    const id = this.#nextId++;
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#writer!.postMessage({ id, records });
    });
  }

  /** Checkpoint state, for diagnosis and tests (a fallback to inline checkpoints is safe, and is said here). */
  checkpointStats(): Readonly<CheckpointStats> {
    return { ...this.#checkpoint, holding: this.#hold !== undefined };
  }

  /** Counts a commit's WAL bytes and asks the checkpointer to run once enough have been written. */
  #noteWrite(bytes: number): void {
    if (this.#checkpoint.mode !== 'thread') return;
    this.#walBytes += bytes;
    if (this.#walBytes < this.#checkpointAfter) return;
    if (this.#checkpointRunning) {
      // One request has been running for 5 s and 16 checkpoints' worth of writes: the thread is stuck.
      if (this.#walBytes > 16 * this.#checkpointAfter && performance.now() - this.#checkpointAsked > 5000) {
        this.#checkpointsInline('the checkpointer thread stopped answering');
      }
      return;
    }
    this.#walBytes = 0;
    this.#checkpointRunning = true;
    this.#checkpointAsked = performance.now();
    (this.#checkpointer ??= this.#startCheckpointer()).postMessage('checkpoint');
  }

  #startCheckpointer(): Worker {
    const w = new Worker(this.#checkpointWorker, { workerData: { path: this.path } });
    // Idle, it must not keep a CLI process alive; close() ends it.
    w.unref();
    w.on('message', (m: 'hold' | { frames: number; checkpointed: number } | { error: string }) => {
      if (m === 'hold') {
        if (this.#checkpointer !== w) return;
        // No transaction is open between two turns of the event loop: from here on none begins
        // until the last pass is done, so the next one finds every frame copied and restarts the
        // WAL. A second at most, whatever the thread does.
        let release!: () => void;
        const until = new Promise<void>((r) => (release = r));
        const timer = setTimeout(() => this.#release(), 1000);
        this.#hold = { until, release: () => (clearTimeout(timer), release()) };
        w.postMessage('held');
        return;
      }
      this.#release();
      this.#checkpointRunning = false;
      if ('error' in m) return this.#checkpointsInline(`checkpoint failed: ${m.error}`);
      this.#checkpoint.done++;
      this.#checkpoint.frames = m.frames;
      this.#checkpoint.checkpointed = m.checkpointed;
      // It could not catch up with the writer: checkpoint here, between commits, so it completes
      // and the WAL restarts from its beginning.
      if (m.frames > MAX_WAL_FRAMES && this.db.isOpen) this.db.exec('PRAGMA wal_checkpoint(PASSIVE)');
    });
    w.on('error', (e) => this.#checkpointsInline(`checkpointer thread failed: ${e.message}`));
    w.on('exit', () => {
      if (this.#checkpointer === w && this.db.isOpen) this.#checkpointsInline('checkpointer thread exited');
    });
    return w;
  }

  /** Lets held commits go on. */
  #release(): void {
    const hold = this.#hold;
    this.#hold = undefined;
    hold?.release();
  }

  /** Hands checkpoints back to SQLite (inside COMMIT, every 1,000 pages). */
  #checkpointsInline(why: string): void {
    this.#release();
    if (this.#checkpoint.mode === 'inline') return;
    this.#checkpoint.mode = 'inline';
    this.#checkpoint.error = why;
    this.#checkpointRunning = false;
    const w = this.#checkpointer;
    this.#checkpointer = undefined;
    void w?.terminate();
    if (this.db.isOpen) this.db.exec('PRAGMA wal_autocheckpoint=1000');
  }

  /** Waits for the last sync, ends both threads and closes the connection. */
  async close(): Promise<void> {
    await this.durable().catch(() => undefined);
    await this.#wal?.close().catch(() => undefined);
    this.#wal = undefined;
    const checkpointer = this.#checkpointer;
    if (checkpointer) {
      this.#checkpointer = undefined;
      this.#release();
      // Its connection is closed before this one, so this one is the last and SQLite checkpoints
      // and removes the WAL as it closes.
      const exited = new Promise((r) => checkpointer.once('exit', r));
      checkpointer.ref();
      checkpointer.postMessage('close');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000).unref())]);
      await checkpointer.terminate();
    }
    if (this.#writer) {
      await this.#writer.terminate();
      this.#writer = undefined;
    }
    if (this.db.isOpen) this.db.close();
  }
}
