/**
 * Crash-safe file writes: a temp file in the same folder, fsynced, renamed over the target, and
 * the folder fsynced. A reader sees the old content or the new, never a part.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

/** Options for {@link writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /** File mode (default 0o644; keys use 0o600). */
  mode?: number;
  /** Mode of folders created on the way (default 0o755; 0o700 for key folders). */
  dirMode?: number;
}

/** Writes `data` to `file` atomically. */
export function writeFileAtomic(file: string, data: string | Uint8Array, o: WriteFileAtomicOptions = {}): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: o.dirMode ?? 0o755 });
  const tmp = path.join(dir, `.${path.basename(file)}.${crypto.randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, 'wx', o.mode ?? 0o644);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fchmodSync(fd, o.mode ?? 0o644);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  syncDir(dir);
}

/** fsyncs a folder so a rename in it survives a crash. */
export function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
