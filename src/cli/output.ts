/**
 * How the CLI writes what it issued and how it reports failures.
 */
import { MutualError, isMutualError } from '../core/errors.ts';

/** Exit codes (documented in docs/cli.md). */
export const EXIT = {
  OK: 0,
  /** Unexpected failure (a bug, or the system). */
  FAILURE: 1,
  /** The command line is wrong. */
  USAGE: 2,
  /** The input was refused (bad CSR, name not allowed, revoked...): a 4xx-class MutualError. */
  REJECTED: 3,
  /** The CA could not do it (not initialized, key locked, store failure): a 5xx-class MutualError. */
  CA_ERROR: 4,
} as const;

/** File system errors a user can act on, and the registry code each is reported as. */
const FS_ERRORS: Record<string, 'FILE_NOT_FOUND' | 'FILE_UNREADABLE'> = {
  ENOENT: 'FILE_NOT_FOUND', ENOTDIR: 'FILE_NOT_FOUND', EACCES: 'FILE_UNREADABLE', EPERM: 'FILE_UNREADABLE', EISDIR: 'FILE_UNREADABLE',
};

/**
 * The coded error for a failure: a MutualError as is; a file system error on a path the user
 * gave (ENOENT, EACCES, ...) as FILE_NOT_FOUND / FILE_UNREADABLE, so every error the CLI prints
 * has a code docs/errors.md documents. Anything else: undefined (a bug, printed with its stack).
 */
export function codedError(e: unknown): MutualError | undefined {
  if (isMutualError(e)) return e;
  const err = e as NodeJS.ErrnoException | null;
  const code = err && typeof err.code === 'string' ? FS_ERRORS[err.code] : undefined;
  if (!code) return undefined;
  const why = { ENOENT: 'no such file', ENOTDIR: 'no such file', EACCES: 'permission denied', EPERM: 'permission denied', EISDIR: 'a folder, not a file' }[err!.code!];
  const what = err!.path ? `${err!.path}: ${why} (${err!.code})` : err!.message;
  return new MutualError(code, { detail: what, ...(err!.path ? { path: err!.path } : {}) }, { cause: e });
}

/** Prints a failure the way a person can act on it; returns the exit code. */
export function reportError(e: unknown, json: boolean): number {
  const coded = codedError(e);
  if (coded) {
    if (json) process.stdout.write(JSON.stringify({ error: coded.toJSON() }) + '\n');
    else process.stderr.write(`error[${coded.code}]: ${coded.message}\n  hint: ${coded.hint}\n`);
    return coded.status < 500 || coded.status === 495 ? EXIT.REJECTED : EXIT.CA_ERROR;
  }
  const err = e as Error | undefined;
  process.stderr.write(`error: ${err?.stack ?? String(e)}\n`);
  return EXIT.FAILURE;
}

/**
 * Prints a command line error (commander's message, e.g. "error: option '--ttl <duration>'
 * argument '99y' is invalid. expected a duration ...") as USAGE_INVALID: as JSON on stdout with
 * `--json`, like every other error, else as commander already printed it. Exit code 2.
 */
export function reportUsageError(message: string, json: boolean): number {
  if (json) {
    const e = new MutualError('USAGE_INVALID', { detail: message.replace(/^error:\s*/, '').trim() });
    process.stdout.write(JSON.stringify({ error: e.toJSON() }) + '\n');
  }
  return EXIT.USAGE;
}

