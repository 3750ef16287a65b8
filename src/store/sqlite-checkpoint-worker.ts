/**
 * The SQLite store's checkpointer (see sqlite-engine.ts): copies the WAL back into the database
 * file on its own connection and thread, so the event loop never waits in the checkpoint's two
 * fsyncs. SQLite does the checkpoint exactly as it would inside COMMIT (synchronous=NORMAL: the WAL
 * is synced before pages are copied, the database file after), so it is as safe against power
 * loss, whoever else writes to the file.
 *
 * The WAL restarts from its beginning only when a writer begins with every frame copied; with the
 * writer committing all the time that rarely happens by itself, and a WAL that keeps growing made
 * each commit dearer (its fdatasync had to journal the file's growth). So the last pass runs while
 * the writer holds its commits:
 *   'checkpoint' -> a pass -> 'hold'
 *   'held' (the writer now holds its commits) -> a last pass, over what was committed during the
 *     first -> { frames, checkpointed } or { error }
 *   'close' -> the connection is closed and the thread ends.
 */
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

const db = new DatabaseSync(workerData.path as string);
db.exec('PRAGMA busy_timeout=5000; PRAGMA synchronous=NORMAL;');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
type Result = { busy: number; log: number; checkpointed: number };

parentPort!.on('message', (m: 'checkpoint' | 'held' | 'close') => {
  try {
    if (m === 'close') {
      db.close();
      parentPort!.close();
    } else if (m === 'checkpoint') {
      // The bulk, while the writer goes on: the frames that were in the WAL when the pass began.
      checkpoint.get();
      parentPort!.postMessage('hold');
    } else {
      const r = checkpoint.get() as Result;
      parentPort!.postMessage({ frames: r.log, checkpointed: r.checkpointed });
    }
  } catch (e) {
    parentPort!.postMessage({ error: (e as Error).message });
  }
});
