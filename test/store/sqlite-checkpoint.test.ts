/**
 * Checkpoints of the SQLite store run on a checkpointer thread, not inside COMMIT on the event
 * loop. These tests write through real stores and look at the files: the database file receives
 * the pages, the WAL restarts instead of growing, and when the thread fails, hangs or holds commits
 * too long, SQLite's own checkpoints take over and no write is lost.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, test } from 'node:test';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.ts';
import { record } from './fixtures.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-checkpoint-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Writes `batches` batches of `size` records, `inFlight` batches at a time, as the authority does. */
async function write(store: SqliteStore, batches: number, size = 8, inFlight = 4): Promise<number> {
  let next = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < batches) {
      next++;
      await store.recordIssued(Array.from({ length: size }, () => record()));
    }
  }));
  return batches * size;
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Rows in the database file alone, as if the WAL were lost: what checkpoints have copied. */
function rowsInMainFile(dbPath: string): number {
  const copy = `${dbPath}.copy-${Date.now()}`;
  fs.copyFileSync(dbPath, copy);
  const db = new DatabaseSync(copy, { readOnly: true });
  try {
    // Before the first checkpoint even the schema is only in the WAL.
    if (!db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'certificates'").get()) return 0;
    return (db.prepare('SELECT count(*) AS n FROM certificates').get() as { n: number }).n;
  } finally {
    db.close();
    fs.rmSync(copy);
  }
}

/** A stand-in checkpointer module written into the temp folder. */
function workerModule(name: string, source: string): URL {
  const file = path.join(dir, `${name}.mjs`);
  fs.writeFileSync(file, source);
  return new URL(`file://${file}`);
}

test('checkpoint/thread: COMMIT does not checkpoint; the thread copies the WAL into the database file and the WAL restarts', async () => {
  const dbPath = path.join(dir, 'thread.db');
  const store = openSqliteStore({ path: dbPath, checkpointAfterBytes: 256 * 1024 });
  let total = -1;
  try {
    assert.equal((store.db.prepare('PRAGMA wal_autocheckpoint').get() as { wal_autocheckpoint: number }).wal_autocheckpoint, 0, 'no checkpoint inside COMMIT');
    const before = fs.statSync(dbPath).size;
    let written = 0;
    const end = Date.now() + 20_000;
    // Until five checkpoints have run and copied half a megabyte (how many rows that takes
    // depends on how far each pass got while commits went on).
    const grown = () => fs.statSync(dbPath).size > before + 500_000;
    while ((store.checkpointStats().done < 5 || !grown()) && Date.now() < end) written += await write(store, 20);
    const stats = store.checkpointStats();
    assert.equal(stats.mode, 'thread');
    assert.equal(stats.error, undefined);
    assert.ok(fs.statSync(dbPath).size > before + 500_000, `pages reached the database file (${fs.statSync(dbPath).size - before} bytes, ${written} rows, ${JSON.stringify(stats)})`);
    assert.ok(stats.done >= 5, `${stats.done} checkpoints`);
    // Thousands of frames were written; a WAL that restarts holds a couple of checkpoints' worth.
    assert.ok(stats.frames < 1000, `the WAL restarts (${stats.frames} frames at the last checkpoint)`);
    assert.equal((await store.listCertificates({ limit: 100_000 })).length, written);
    total = written;
  } finally {
    await store.close();
  }
  // Closed: everything is in the database file and the WAL is gone.
  assert.equal(fs.existsSync(`${dbPath}-wal`), false);
  assert.equal(rowsInMainFile(dbPath), total);
});

test('checkpoint/inline: with checkpoints inline SQLite checkpoints inside COMMIT as usual', async () => {
  const store = openSqliteStore({ path: path.join(dir, 'inline.db'), checkpoints: 'inline' });
  try {
    assert.equal((store.db.prepare('PRAGMA wal_autocheckpoint').get() as { wal_autocheckpoint: number }).wal_autocheckpoint, 1000);
    await write(store, 20);
    assert.deepEqual(store.checkpointStats(), { mode: 'inline', done: 0, frames: 0, checkpointed: 0, holding: false });
  } finally {
    await store.close();
  }
});

test('checkpoint/fault: a checkpointer that fails to start hands checkpoints back to SQLite, and writes go on', async () => {
  const dbPath = path.join(dir, 'failing.db');
  const store = openSqliteStore({ path: dbPath, checkpointAfterBytes: 64 * 1024, checkpointWorker: workerModule('failing', "throw new Error('no disk for you');\n") });
  try {
    await write(store, 20);
    await until('the fallback', () => store.checkpointStats().mode === 'inline');
    assert.match(store.checkpointStats().error ?? '', /checkpointer thread failed: no disk for you/);
    assert.equal((store.db.prepare('PRAGMA wal_autocheckpoint').get() as { wal_autocheckpoint: number }).wal_autocheckpoint, 1000);
    const written = 160 + (await write(store, 200));
    assert.equal((await store.listCertificates({ limit: 100_000 })).length, written);
    assert.ok(fs.statSync(dbPath).size > 500_000, "SQLite's own checkpoints reached the database file");
  } finally {
    await store.close();
  }
});

test('checkpoint/fault: a checkpointer that reports an error hands checkpoints back to SQLite', async () => {
  const source = `import { parentPort } from 'node:worker_threads';
parentPort.on('message', (m) => { if (m === 'close') parentPort.close(); else parentPort.postMessage({ error: 'database disk image is malformed' }); });\n`;
  const store = openSqliteStore({ path: path.join(dir, 'erroring.db'), checkpointAfterBytes: 64 * 1024, checkpointWorker: workerModule('erroring', source) });
  try {
    await write(store, 20);
    await until('the fallback', () => store.checkpointStats().mode === 'inline');
    assert.equal(store.checkpointStats().error, 'checkpoint failed: database disk image is malformed');
    assert.equal((await store.listCertificates({ limit: 100_000 })).length, 160);
  } finally {
    await store.close();
  }
});

test('checkpoint/fault: a checkpointer that stops answering is ended and SQLite checkpoints instead', async () => {
  const source = `import { parentPort } from 'node:worker_threads';
parentPort.on('message', (m) => { if (m === 'close') parentPort.close(); });\n`;
  const store = openSqliteStore({ path: path.join(dir, 'silent.db'), checkpointAfterBytes: 16 * 1024, checkpointWorker: workerModule('silent', source) });
  try {
    // Writes go on; after 5 s and 16 checkpoints' worth of them the request counts as lost.
    let written = 0;
    const end = Date.now() + 15_000;
    while (store.checkpointStats().mode === 'thread' && Date.now() < end) {
      written += await write(store, 20, 8, 2);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(store.checkpointStats().error, 'the checkpointer thread stopped answering');
    assert.equal((await store.listCertificates({ limit: 100_000 })).length, written);
  } finally {
    await store.close();
  }
});

test('checkpoint/fault: a checkpointer that reports a WAL it could not catch up with makes the store checkpoint it itself', async () => {
  // Copies nothing, and says the WAL has grown past 64 MB of frames.
  const source = `import { parentPort } from 'node:worker_threads';
parentPort.on('message', (m) => { if (m === 'close') parentPort.close(); else if (m === 'checkpoint') parentPort.postMessage({ frames: 20000, checkpointed: 0 }); });\n`;
  const dbPath = path.join(dir, 'behind.db');
  const store = openSqliteStore({ path: dbPath, checkpointAfterBytes: 64 * 1024, checkpointWorker: workerModule('behind', source) });
  try {
    const before = fs.statSync(dbPath).size;
    let written = 0;
    const end = Date.now() + 10_000;
    while (store.checkpointStats().done < 1 && Date.now() < end) written += await write(store, 20);
    assert.ok(store.checkpointStats().done >= 1);
    assert.equal(store.checkpointStats().frames, 20000);
    assert.equal(store.checkpointStats().mode, 'thread', 'the thread answers: it stays');
    assert.ok(fs.statSync(dbPath).size > before + 100_000, 'the store copied the WAL into the database file itself');
    assert.equal((await store.listCertificates({ limit: 100_000 })).length, written);
  } finally {
    await store.close();
  }
});

test('checkpoint/fault: a checkpointer that asks commits to wait and never finishes holds them for a second at most', async () => {
  const source = `import { parentPort } from 'node:worker_threads';
parentPort.on('message', (m) => { if (m === 'close') parentPort.close(); else if (m === 'checkpoint') parentPort.postMessage('hold'); });\n`;
  const store = openSqliteStore({ path: path.join(dir, 'holding.db'), checkpointAfterBytes: 64 * 1024, checkpointWorker: workerModule('holding', source) });
  try {
    await write(store, 10);
    await until('the hold', () => store.checkpointStats().holding);
    const t0 = performance.now();
    await store.recordIssued([record()]);
    // The hold lasts a second from when it began, a few milliseconds before it was seen.
    assert.ok(performance.now() - t0 > 500, 'the write waited for the hold');
    assert.equal(store.checkpointStats().holding, false);
    assert.equal((await store.listCertificates({ limit: 100_000 })).length, 81);
  } finally {
    await store.close();
  }
});
