/**
 * Where `mutual ca enroll` takes its one-time token from: a file (`--token-file`), the environment
 * (`MUTUAL_TOKEN`), or `--token`, which every user of the host can read in `ps` while the command
 * runs, so it is the last resort.
 */
import fs from 'node:fs';
import { MutualError } from '../core/errors.ts';

/** The environment variable holding the token. */
export const TOKEN_ENV = 'MUTUAL_TOKEN';

/** Largest token read: a token is a compact JWS of about 1 KB; anything far larger is the wrong file. */
export const MAX_TOKEN_BYTES = 16 * 1024;

/**
 * The token, trimmed, from `tokenFile`, else `token`, else `MUTUAL_TOKEN` in `env`.
 *
 * @throws MutualError `TOKEN_MISSING` when none is given, the source is empty (or only white
 *   space), or the file does not exist; `KEY_FILE_INSECURE` when a regular token file can be read
 *   by group or others (a token is a bearer secret until it is used); `INPUT_TOO_LARGE` over
 *   {@link MAX_TOKEN_BYTES}.
 */
export function resolveToken(o: { token?: string; tokenFile?: string }, env: NodeJS.ProcessEnv = process.env): string {
  let text: string;
  let source: string;
  if (o.tokenFile !== undefined) {
    text = readTokenFile(o.tokenFile);
    source = `token file ${o.tokenFile}`;
  } else if (o.token !== undefined) {
    text = o.token;
    source = '--token';
  } else if (env[TOKEN_ENV] !== undefined) {
    text = env[TOKEN_ENV]!;
    source = TOKEN_ENV;
  } else {
    throw new MutualError('TOKEN_MISSING', { detail: `no token: give --token-file <file>, set ${TOKEN_ENV}, or give --token` });
  }
  const token = text.trim();
  if (token === '') throw new MutualError('TOKEN_MISSING', { detail: `${source} is empty` });
  return token;
}

function readTokenFile(file: string): string {
  let fd: number;
  try {
    // No O_NONBLOCK: `--token-file <(...)` is a pipe whose writer may not have written yet.
    fd = fs.openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new MutualError('TOKEN_MISSING', { detail: `token file ${file} does not exist`, path: file });
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isFile()) {
      if (st.mode & 0o077) {
        const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
        throw new MutualError('KEY_FILE_INSECURE', { detail: `token file ${file} has mode 0${mode}; it must be 0600 or 0400 (others could enroll with it first)`, path: file });
      }
    } else if (!st.isFIFO() && !st.isCharacterDevice()) {
      throw new MutualError('TOKEN_MISSING', { detail: `token file ${file} is not a file`, path: file });
    }
    // Read at most one byte more than allowed, so a pipe cannot make us hold more.
    const buf = Buffer.alloc(MAX_TOKEN_BYTES + 1);
    let n = 0;
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > MAX_TOKEN_BYTES) throw new MutualError('INPUT_TOO_LARGE', { detail: `token file ${file} holds more than ${MAX_TOKEN_BYTES} bytes; a token is about 1 KB`, path: file });
    }
    return buf.subarray(0, n).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}
