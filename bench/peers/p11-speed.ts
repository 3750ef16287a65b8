/**
 * The token's own limit: bench/peers/p11-speed.c, built here at run time with gcc against p11-kit's
 * pkcs11.h (Debian's libp11-kit-dev), signing in a C_SignInit/C_Sign loop with no Node around it.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { BenchToken } from '../lib/softhsm-token.ts';

/** Where Debian's libp11-kit-dev puts the PKCS#11 header (`p11-kit/pkcs11.h` under it). */
export const P11_KIT_INCLUDE = '/usr/include/p11-kit-1';

/** What one p11-speed run measured. */
export interface P11SpeedResult {
  threads: number;
  signatures: number;
  seconds: number;
  perSecond: number;
  /** Mean microseconds of one C_SignInit, and of one C_Sign, in the first thread. */
  initMicros: number;
  signMicros: number;
}

/** Compiles p11-speed.c into `dir` and returns the binary's path. Throws with gcc's output if it fails. */
export function buildP11Speed(dir: string): string {
  if (!fs.existsSync(path.join(P11_KIT_INCLUDE, 'p11-kit', 'pkcs11.h'))) {
    throw new Error(`${P11_KIT_INCLUDE}/p11-kit/pkcs11.h is missing: apt-get install libp11-kit-dev`);
  }
  const out = path.join(dir, 'p11-speed');
  const src = path.join(import.meta.dirname, 'p11-speed.c');
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-pthread', `-I${P11_KIT_INCLUDE}`, '-o', out, src, '-ldl'], { stdio: ['ignore', 'ignore', 'inherit'] });
  return out;
}

/**
 * Runs p11-speed on `cpus` (taskset list, e.g. `0` or `0,1`): `key` is a private key's label, `+LABEL`
 * to make a token key pair of that label first, `-` for a session key; `seconds` 0 only makes the key.
 */
export function runP11Speed(bin: string, token: BenchToken, key: string, seconds: number, threads: number, cpus = '0'): P11SpeedResult {
  const out = execFileSync('taskset', ['-c', cpus, bin, token.module, token.label, token.pinFile, key, String(seconds), String(threads)], { env: token.env, encoding: 'utf8' });
  return JSON.parse(out.trim()) as P11SpeedResult;
}
