/**
 * How the CLI writes what it issued and how it reports failures.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { MutualError, isMutualError } from '../core/errors.ts';
import { buildPkcs12 } from '../core/pkcs12.ts';
import { readPemOrDer } from '../core/pem.ts';
import { writeFileAtomic } from '../io/atomic-file.ts';

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

/** What `--out DIR` receives. */
export interface IssuedFiles {
  certificatePem: string;
  chainPem: string;
  fullchainPem: string;
  privateKey?: KeyObject;
}

/** Writes cert.pem, key.pem (0600), chain.pem, fullchain.pem and, with a password, bundle.p12 (0600). */
export function writeIssued(dir: string, f: IssuedFiles, o: { p12Password?: string; force?: boolean } = {}): string[] {
  const keyPath = path.join(dir, 'key.pem');
  if (f.privateKey && !o.force && fs.existsSync(keyPath)) {
    throw new MutualError('OUTPUT_EXISTS', { detail: keyPath });
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const put = (name: string, data: string | Buffer, mode = 0o644) => {
    writeFileAtomic(path.join(dir, name), data, { mode });
    written.push(path.join(dir, name));
  };
  // The key goes first: a certificate on disk without its key is useless, a key without a
  // certificate is harmless (and the certificate is already in the inventory).
  if (f.privateKey) put('key.pem', f.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  put('cert.pem', f.certificatePem);
  put('chain.pem', f.chainPem);
  put('fullchain.pem', f.fullchainPem);
  if (o.p12Password !== undefined) {
    if (!f.privateKey) throw new TypeError('a PKCS#12 bundle needs the private key');
    const p12 = buildPkcs12({
      key: f.privateKey,
      certificate: readPemOrDer(f.certificatePem, ['CERTIFICATE']),
      chain: [readPemOrDer(f.chainPem, ['CERTIFICATE'])],
      password: o.p12Password,
    });
    put('bundle.p12', p12, 0o600);
  }
  return written;
}

/** Prints a failure the way a person can act on it; returns the exit code. */
export function reportError(e: unknown, json: boolean): number {
  if (isMutualError(e)) {
    if (json) process.stdout.write(JSON.stringify({ error: e.toJSON() }) + '\n');
    else process.stderr.write(`error[${e.code}]: ${e.message}\n  hint: ${e.hint}\n`);
    return e.status < 500 || e.status === 495 ? EXIT.REJECTED : EXIT.CA_ERROR;
  }
  const err = e as NodeJS.ErrnoException;
  if (err && (err.code === 'ENOENT' || err.code === 'EACCES' || err.code === 'EISDIR')) {
    process.stderr.write(`error[${err.code}]: ${err.message}\n  hint: check the path and its permissions.\n`);
    return EXIT.REJECTED;
  }
  process.stderr.write(`error: ${err?.stack ?? String(e)}\n`);
  return EXIT.FAILURE;
}

/** Parses a duration like `30d`, `12h`, `90m`, `45s`. */
export function parseDuration(text: string): number {
  const m = /^(\d{1,6})([smhd])$/.exec(text.trim());
  if (!m) throw new MutualError('CONFIG_INVALID', { detail: `duration ${JSON.stringify(text)}: use a number and s, m, h or d (e.g. 30d)` });
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}
