/**
 * Single-file deployments (trust bundles, CRLs, rendered templates): temp file in the target's
 * folder, owner/group/mode set on it, fsync, rename over the target, folder fsync. A reader sees
 * the old bytes or the new ones, never a part; a failure leaves the target as it was.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { MutualError } from '../core/errors.ts';
import { syncDir } from '../io/index.ts';
import type { Ownership } from './manifest.ts';

/** What was at a path before a write (for a rollback). */
export interface PreviousFile {
  path: string;
  /** undefined: there was no file. */
  data?: Buffer;
  ownership?: Ownership;
}

/** Largest existing file read back for comparison or rollback. */
export const MAX_DEPLOYED_FILE_BYTES = 64 * 1024 * 1024;

/**
 * Creates `dir` and its missing parents with exactly `mode` (mkdir's mode is cut by the umask,
 * and systemd units run the agent with UMask=0077). Existing folders are left as they are.
 */
export function makeDirs(dir: string, mode: number): void {
  const missing: string[] = [];
  for (let d = path.resolve(dir); !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) {
    try {
      fs.mkdirSync(d, { mode });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      continue;
    }
    fs.chmodSync(d, mode);
  }
}

/** Reads what is at `p` now (following links), for comparison and rollback. */
export function readPrevious(p: string): PreviousFile {
  try {
    const st = fs.statSync(p);
    if (!st.isFile()) throw new MutualError('AGENT_WRITE_FAILED', { detail: `${p} exists and is not a regular file` });
    if (st.size > MAX_DEPLOYED_FILE_BYTES) throw new MutualError('AGENT_WRITE_FAILED', { detail: `${p} is larger than ${MAX_DEPLOYED_FILE_BYTES} bytes` });
    return { path: p, data: fs.readFileSync(p), ownership: { uid: st.uid, gid: st.gid, mode: st.mode & 0o777 } };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { path: p };
    if (e instanceof MutualError) throw e;
    throw new MutualError('AGENT_WRITE_FAILED', { detail: `${p}: ${(e as NodeJS.ErrnoException).code ?? ''} ${(e as Error).message}`.trim() }, { cause: e });
  }
}

/** True when the file at `prev` already has these bytes and ownership. */
export function isSame(prev: PreviousFile, data: Uint8Array, o: Ownership): boolean {
  if (!prev.data || !prev.ownership || !prev.data.equals(data)) return false;
  return prev.ownership.mode === o.mode && (o.uid === undefined || o.uid === prev.ownership.uid) && (o.gid === undefined || o.gid === prev.ownership.gid);
}

/**
 * Writes a file that must not exist yet: created 0600, then chowned and chmodded before any byte
 * is written (a key is never readable by others, even for a moment), then fsynced.
 */
export function writeNewFile(file: string, data: string | Uint8Array, o: Ownership): void {
  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    if (o.uid !== undefined || o.gid !== undefined) fs.fchownSync(fd, o.uid ?? -1, o.gid ?? -1);
    fs.fchmodSync(fd, o.mode);
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `data` to `file` atomically with the given ownership. Throws AGENT_WRITE_FAILED. */
export function writeOwnedFile(file: string, data: Uint8Array | string, o: Ownership): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.mutual-${crypto.randomBytes(6).toString('hex')}`);
  try {
    makeDirs(dir, 0o755);
    writeNewFile(tmp, data, o);
    // A link at the target is replaced by the file, not followed: the agent owns the path.
    fs.renameSync(tmp, file);
    syncDir(dir);
  } catch (e) {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // The folder itself is in the way (ENOTDIR, EACCES): there is no temp file to remove.
    }
    if (e instanceof MutualError) throw e;
    throw new MutualError('AGENT_WRITE_FAILED', { detail: `${file}: ${(e as NodeJS.ErrnoException).code ?? ''} ${(e as Error).message}`.trim() }, { cause: e });
  }
}

/** Puts back what {@link readPrevious} saw: the old bytes, or no file. */
export function restorePrevious(prev: PreviousFile): void {
  if (prev.data === undefined) {
    fs.rmSync(prev.path, { force: true });
    syncDir(path.dirname(prev.path));
  } else {
    writeOwnedFile(prev.path, prev.data, prev.ownership!);
  }
}
