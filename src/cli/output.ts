/**
 * How the CLI writes what it issued and how it reports failures.
 */
import { MutualError, isMutualError } from '../core/errors.ts';
export { writeIssued, type IssuedFiles } from '../ca/write-issued.ts';

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

/** Prints a failure the way a person can act on it; returns the exit code. */
export function reportError(e: unknown, json: boolean): number {
  if (isMutualError(e)) {
    if (json) process.stdout.write(JSON.stringify({ error: e.toJSON() }) + '\n');
    else process.stderr.write(`error[${e.code}]: ${e.message}\n  hint: ${e.hint}\n`);
    return e.status < 500 || e.status === 495 ? EXIT.REJECTED : EXIT.CA_ERROR;
  }
  const err = e as NodeJS.ErrnoException;
  if (err && (err.code === 'ENOENT' || err.code === 'EACCES' || err.code === 'EISDIR')) {
    if (json) process.stdout.write(JSON.stringify({ error: { code: err.code, message: err.message, hint: 'check the path and its permissions' } }) + '\n');
    else process.stderr.write(`error[${err.code}]: ${err.message}\n  hint: check the path and its permissions.\n`);
    return EXIT.REJECTED;
  }
  process.stderr.write(`error: ${err?.stack ?? String(e)}\n`);
  return EXIT.FAILURE;
}

