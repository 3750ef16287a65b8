/**
 * The SQLite writer thread: commits batches of issued certificates on its own connection, so
 * the fsync of one batch does not block the event loop that is signing the next (group commit
 * with pipelining). Messages: { id, records } -> { id, error? }.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteStore } from './sqlite-store.ts';
import type { CertificateRecord } from '../ca/store.ts';

// This thread may block in fsync: SQLite's own synchronous=FULL inside COMMIT.
const store = new SqliteStore({ path: workerData.path as string, fsync: 'commit' });
parentPort!.on('message', (m: { id: number; records: CertificateRecord[] }) => {
  try {
    store.recordIssuedSync(m.records.map((r) => ({ ...r, der: Buffer.from(r.der) })));
    parentPort!.postMessage({ id: m.id });
  } catch (e) {
    parentPort!.postMessage({ id: m.id, error: (e as Error).message });
  }
});
