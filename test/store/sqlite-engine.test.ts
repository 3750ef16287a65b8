/**
 * The SQLite durability engine on its own, under the store's queries: what a transaction does on
 * commit and on failure (the `reread` hook inside the write lock, the error it throws), when
 * `durable()` syncs the WAL, the writer thread, and its option checks. The store-level guarantees (every write call
 * resolves after a sync that began after its commit; the checkpointer) are in
 * sqlite-durability.test.ts and sqlite-checkpoint.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { isMutualError, MutualError } from '../../src/core/errors.ts';
import { SqliteEngine } from '../../src/store/sqlite-engine.ts';
import { openSqliteStore } from '../../src/store/sqlite-store.ts';
import { record } from './fixtures.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-engine-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** An engine on a fresh file with one table `t (v)`. */
function engine(name: string, o: { fsync?: 'thread-pool' | 'commit' } = {}): SqliteEngine {
  const e = new SqliteEngine({ path: path.join(dir, `${name}.db`), checkpoints: 'inline', ...o });
  e.db.exec('CREATE TABLE t (v INTEGER)');
  return e;
}

const count = (e: SqliteEngine): number => Number((e.db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n);

/** Counts FileHandle.datasync calls while `fn` runs (the real call still runs). */
async function countSyncs(fn: () => Promise<void>): Promise<number> {
  const probe = await open(path.join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
  await probe.close();
  const original = proto.datasync;
  let n = 0;
  proto.datasync = async function (this: unknown) {
    n++;
    await original.call(this);
  };
  try {
    await fn();
    return n;
  } finally {
    proto.datasync = original;
  }
}

test('ok/transaction-commits-with-reread-inside-the-lock', async () => {
  const e = engine('commit');
  try {
    const seen: boolean[] = [];
    const out = e.transaction(() => {
      e.db.prepare('INSERT INTO t (v) VALUES (1)').run();
      return 'done';
    }, { records: 1, reread: () => seen.push(e.db.isTransaction) });
    assert.equal(out, 'done');
    assert.deepEqual(seen, [true], 'reread runs once, after BEGIN');
    assert.equal(e.db.isTransaction, false);
    assert.equal(count(e), 1);
  } finally {
    await e.close();
  }
});

test('fail/transaction-error-rolls-back-as-STORE_FAILED', async () => {
  const e = engine('rollback');
  try {
    const seen: boolean[] = [];
    assert.throws(() => e.transaction(() => {
      e.db.prepare('INSERT INTO t (v) VALUES (1)').run();
      throw new Error('disk on fire');
    }, { reread: () => seen.push(e.db.isTransaction) }), (err: unknown) => isMutualError(err, 'STORE_FAILED') && /disk on fire/.test(err.message));
    assert.deepEqual(seen, [true, false], 'reread after BEGIN, and again after the rollback');
    assert.equal(e.db.isTransaction, false);
    assert.equal(count(e), 0, 'nothing of the failed transaction stays');
  } finally {
    await e.close();
  }
});

test('fail/transaction-coded-error-passes-unchanged', async () => {
  const e = engine('coded');
  try {
    const coded = new MutualError('CERT_NOT_FOUND', { serial: '01', detail: '01' });
    assert.throws(() => e.transaction(() => {
      e.db.prepare('INSERT INTO t (v) VALUES (1)').run();
      throw coded;
    }), (err) => err === coded);
    assert.equal(count(e), 0);
  } finally {
    await e.close();
  }
});

test('ok/durable-syncs-the-wal-once-per-commit-batch', async () => {
  const e = engine('durable');
  try {
    const syncs = await countSyncs(async () => {
      e.transaction(() => e.db.prepare('INSERT INTO t (v) VALUES (1)').run());
      e.transaction(() => e.db.prepare('INSERT INTO t (v) VALUES (2)').run());
      await Promise.all([e.durable(), e.durable()]);
    });
    assert.equal(syncs, 1, 'two commits before the sync began share it');
    assert.equal(await countSyncs(() => e.durable()), 0, 'nothing committed since: no sync');
  } finally {
    await e.close();
  }
});

test('ok/durable-with-fsync-commit-does-not-sync', async () => {
  const e = engine('full', { fsync: 'commit' });
  try {
    assert.equal((e.db.prepare('PRAGMA synchronous').get() as { synchronous: number }).synchronous, 2, 'FULL: SQLite syncs inside COMMIT');
    const syncs = await countSyncs(async () => {
      e.transaction(() => e.db.prepare('INSERT INTO t (v) VALUES (1)').run());
      await e.durable();
    });
    assert.equal(syncs, 0);
  } finally {
    await e.close();
  }
});

test('fail/bad-checkpointAfterBytes-is-a-TypeError', () => {
  for (const checkpointAfterBytes of [0, -1, Number.NaN]) {
    assert.throws(() => new SqliteEngine({ path: ':memory:', checkpointAfterBytes }), TypeError, String(checkpointAfterBytes));
  }
});

test('ok/writer-thread-commits-issued-certificates-durably', async () => {
  const file = path.join(dir, 'writer.db');
  const store = openSqliteStore({ path: file, writerThread: true });
  const recs = Array.from({ length: 5 }, () => record());
  try {
    // Two batches in flight at once, as the authority's group commit sends them.
    await Promise.all([store.recordIssued(recs.slice(0, 3)), store.recordIssued(recs.slice(3))]);
    // Committed on the writer's own connection: this one reads them from the file.
    assert.deepEqual((await store.listCertificates({ limit: 10 })).map((c) => c.serial).sort(), recs.map((r) => r.serial).sort());
    const actions: string[] = [];
    for await (const e of store.auditEntries()) actions.push(`${e.action}:${e.target}`);
    assert.deepEqual(actions.sort(), recs.map((r) => `issue:${r.serial}`).sort());
    // The thread commits with synchronous=FULL: no fdatasync of the WAL is left to this side.
    assert.equal(await countSyncs(() => store.recordIssued([record()])), 0);
  } finally {
    await store.close();
  }
});

test('fail/writer-thread-failure-is-STORE_FAILED', async () => {
  const store = openSqliteStore({ path: path.join(dir, 'writer-fail.db'), writerThread: true });
  try {
    const r = record();
    await store.recordIssued([r]);
    await assert.rejects(store.recordIssued([record(), { ...r }]), (e: unknown) => isMutualError(e, 'STORE_FAILED') && /UNIQUE/.test(e.message));
    assert.equal((await store.listCertificates({ limit: 10 })).length, 1, 'the failed batch left nothing');
    await store.recordIssued([record()]);
    assert.equal((await store.listCertificates({ limit: 10 })).length, 2, 'the thread goes on after a failed batch');
  } finally {
    await store.close();
  }
});
