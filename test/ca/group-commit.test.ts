import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GroupCommit, MAX_COMMIT_BATCH } from '../../src/ca/group-commit.ts';
import type { CertificateRecord } from '../../src/ca/store.ts';
import { MutualError } from '../../src/core/errors.ts';

/** A store that records the batches it is handed and commits each when the test says so. */
function recordingStore() {
  const batches: { serials: string[]; settle: (e?: unknown) => void }[] = [];
  return {
    batches,
    recordIssued(recs: CertificateRecord[]): Promise<void> {
      return new Promise((resolve, reject) => batches.push({ serials: recs.map((r) => r.serial), settle: (e) => (e ? reject(e) : resolve()) }));
    },
  };
}
const rec = (serial: string) => ({ serial }) as CertificateRecord;
const turn = () => new Promise((r) => setImmediate(r));

test('ok/one turn of requests is split into batches of at most MAX_COMMIT_BATCH, all handed over at once (pipelined)', async () => {
  const store = recordingStore();
  const gc = new GroupCommit(store);
  const n = MAX_COMMIT_BATCH * 2 + 3;
  const done: string[] = [];
  const all = Array.from({ length: n }, (_, i) => gc.add(rec(`s${i}`)).then(() => done.push(`s${i}`)));
  await turn();
  // Every batch is with the store before the first is durable.
  assert.deepEqual(store.batches.map((b) => b.serials.length), [MAX_COMMIT_BATCH, MAX_COMMIT_BATCH, 3]);
  assert.deepEqual(store.batches.flatMap((b) => b.serials), Array.from({ length: n }, (_, i) => `s${i}`));
  // A caller is answered when its own batch is durable, not before.
  store.batches[1].settle();
  await turn();
  assert.deepEqual(done, store.batches[1].serials);
  store.batches[0].settle();
  store.batches[2].settle();
  await Promise.all(all);
  assert.equal(done.length, n);
});

test('fail/a failed batch rejects its own callers only', async () => {
  const store = recordingStore();
  const gc = new GroupCommit(store);
  const first = Array.from({ length: MAX_COMMIT_BATCH + 1 }, (_, i) => gc.add(rec(`s${i}`)));
  await turn();
  const boom = new MutualError('STORE_UNAVAILABLE', { detail: 'test' });
  store.batches[0].settle(boom);
  store.batches[1].settle();
  const results = await Promise.allSettled(first);
  assert.ok(results.slice(0, MAX_COMMIT_BATCH).every((r) => r.status === 'rejected' && r.reason === boom));
  assert.equal(results[MAX_COMMIT_BATCH].status, 'fulfilled');
});

test('ok/drain waits for queued and committing batches', async () => {
  const store = recordingStore();
  const gc = new GroupCommit(store);
  const added = gc.add(rec('a'));
  let drained = false;
  const d = gc.drain().then(() => (drained = true));
  await turn();
  await turn();
  assert.equal(drained, false, 'the batch is not durable yet');
  store.batches[0].settle();
  await added;
  await d;
  assert.equal(drained, true);
});
