/**
 * The SQLite store acknowledges a write only once the WAL holding it is on disk. By default the
 * fsync runs on libuv's thread pool after the commit (synchronous=NORMAL + fdatasync of the WAL);
 * these tests watch the real fdatasync calls (the wrapper calls through) and check that every
 * write call resolves only after a sync that started after its commit, and that concurrent
 * writers share syncs.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { isMutualError } from '../../src/core/errors.ts';
import { openSqliteStore } from '../../src/store/sqlite-store.ts';
import { record, revocation } from './fixtures.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-durability-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Records every FileHandle.datasync call (start and end, in performance.now() ms) while `fn` runs. */
async function watchSyncs<T>(fn: () => Promise<T>): Promise<{ result: T; syncs: { start: number; end: number }[] }> {
  const probe = await open(path.join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
  await probe.close();
  const original = proto.datasync;
  const syncs: { start: number; end: number }[] = [];
  proto.datasync = async function (this: unknown) {
    const start = performance.now();
    await original.call(this);
    syncs.push({ start, end: performance.now() });
  };
  try {
    return { result: await fn(), syncs };
  } finally {
    proto.datasync = original;
  }
}

test('durability/default: each write resolves after an fdatasync of the WAL that began after its commit', async () => {
  const store = openSqliteStore({ path: path.join(dir, 'deferred.db') });
  try {
    assert.equal((store.db.prepare('PRAGMA synchronous').get() as { synchronous: number }).synchronous, 1, 'NORMAL: no fsync inside COMMIT');
    const { result: calls, syncs } = await watchSyncs(async () => {
      const calls: { committed: number; resolved: number }[] = [];
      await Promise.all(Array.from({ length: 50 }, async (_, i) => {
        // The write commits inside the call, before its first await; a sync that began before the
        // call cannot cover it.
        const committed = performance.now();
        await store.recordIssued([record()]);
        calls[i] = { committed, resolved: performance.now() };
      }));
      return calls;
    });
    assert.ok(syncs.length >= 1);
    assert.ok(syncs.length < calls.length, `${syncs.length} syncs for ${calls.length} writes: concurrent writes share them`);
    for (const c of calls) {
      assert.ok(syncs.some((s) => s.start >= c.committed && s.end <= c.resolved), 'a sync that began after the commit ended before the write resolved');
    }
    assert.equal((await store.listCertificates({ limit: 100 })).length, 50);
  } finally {
    await store.close();
  }
});

test('durability/default: revocations, CRL numbers, audit entries and spent tokens wait for the sync too', async () => {
  const store = openSqliteStore({ path: path.join(dir, 'other-writes.db') });
  try {
    const r = record();
    await store.recordIssued([r]);
    const steps: [string, () => Promise<unknown>][] = [
      ['revocation', () => store.recordRevocation(revocation(r), 'test')],
      ['CRL number', () => store.nextCrlNumber(r.issuerKeyId)],
      ['audit entry', () => store.audit({ actor: 'test', action: 'note', target: 'x', details: {} })],
      ['token', () => store.consumeToken('jti-1', new Date(Date.now() + 60_000), 'test')],
    ];
    for (const [what, write] of steps) {
      const { result: times, syncs } = await watchSyncs(async () => {
        const committed = performance.now();
        await write();
        return { committed, resolved: performance.now() };
      });
      assert.ok(syncs.some((s) => s.start >= times.committed && s.end <= times.resolved), `${what}: resolved after a sync of its commit`);
    }
    // A token already spent commits nothing and needs no sync.
    const { result: again, syncs } = await watchSyncs(() => store.consumeToken('jti-1', new Date(Date.now() + 60_000), 'test'));
    assert.equal(again, false);
    assert.equal(syncs.length, 0);
  } finally {
    await store.close();
  }
});

test("durability/fsync: 'commit' is SQLite's synchronous=FULL, with no sync of its own", async () => {
  const store = openSqliteStore({ path: path.join(dir, 'full.db'), fsync: 'commit' });
  try {
    assert.equal((store.db.prepare('PRAGMA synchronous').get() as { synchronous: number }).synchronous, 2, 'FULL');
    const { syncs } = await watchSyncs(() => store.recordIssued([record()]));
    assert.equal(syncs.length, 0);
  } finally {
    await store.close();
  }
});

test('durability/a failed fdatasync is a coded STORE_FAILED, and the next write syncs again', async () => {
  const store = openSqliteStore({ path: path.join(dir, 'failing.db') });
  const probe = await open(path.join(dir, 'probe2'), 'w');
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
  await probe.close();
  const original = proto.datasync;
  try {
    await store.recordIssued([record()]);
    proto.datasync = async () => {
      throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    };
    await assert.rejects(store.recordIssued([record()]), (e: unknown) => {
      assert.ok(isMutualError(e) && e.code === 'STORE_FAILED', String(e));
      assert.match((e as Error).message + JSON.stringify((e as { fields?: unknown }).fields), /fdatasync|-wal/);
      return true;
    });
    proto.datasync = original;
    // The next write reopens the WAL and syncs: both the certificate the failed call committed and
    // the new one are in the inventory (the failed call's certificate was never handed out).
    await store.recordIssued([record()]);
    assert.equal((await store.listCertificates({ limit: 10 })).length, 3);
  } finally {
    proto.datasync = original;
    await store.close();
  }
});
