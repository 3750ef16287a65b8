/**
 * OpenSSL and a token key, through libp11's engine (Debian's libengine-pkcs11-openssl; OpenSSL 3.0
 * in Debian 12 has no pkcs11 provider). What each way of asking openssl for "token speed" measures:
 *
 * - `openssl speed -engine pkcs11 ecdsap256` does not touch the token: speed makes its own software
 *   keys, and the engine only serves keys loaded through it. {@link engineSpeedCheck} shows it by
 *   routing the engine through OpenSC's pkcs11-spy, which logs every PKCS#11 call: none are made.
 * - `openssl pkeyutl -sign -engine pkcs11 -keyform engine -inkey pkcs11:...` does sign on the token,
 *   once per process: {@link pkeyutlLoop} measures process start, engine load, C_Initialize and
 *   login, not signing.
 * - `openssl ca -infiles ... -engine pkcs11 -keyform engine -keyfile pkcs11:...` signs every
 *   certificate with the token key in one process (bench/peers/openssl-ca.ts with a token key).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ecdsaSpeed } from '../lib/openssl-speed.ts';
import type { BenchToken } from '../lib/softhsm-token.ts';

/** libp11's engine as Debian installs it. */
export const PKCS11_ENGINE = '/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so';
/** OpenSC's logging PKCS#11 module, which forwards to the module named in PKCS11SPY. */
export const PKCS11_SPY = '/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so';

/** Whether libp11's engine is installed. */
export function engineInstalled(): boolean {
  return fs.existsSync(PKCS11_ENGINE);
}

/** The environment that makes libp11's engine load the token's module. */
export function engineEnv(token: BenchToken): NodeJS.ProcessEnv {
  return { ...token.env, PKCS11_MODULE_PATH: token.module };
}

/** The URI libp11 reads for a private key of the token (its own syntax: no module-path; PIN from the file). */
export function engineKeyUri(token: BenchToken, label: string): string {
  return `pkcs11:token=${encodeURIComponent(token.label)};object=${encodeURIComponent(label)};type=private?pin-source=file:${token.pinFile}`;
}

/** What {@link engineSpeedCheck} saw. */
export interface EngineSpeedCheck {
  signPerSecond: number;
  /** PKCS#11 calls pkcs11-spy logged during the run (0: the token was never asked). */
  pkcs11Calls: number;
  signCalls: number;
}

/**
 * Runs `openssl speed -engine pkcs11 -seconds 2 ecdsap256` on core 0 with the engine's module
 * routed through pkcs11-spy, and counts the PKCS#11 calls (C_Sign among them) it logged.
 */
export function engineSpeedCheck(token: BenchToken, work: string): EngineSpeedCheck {
  const log = path.join(work, 'pkcs11-spy.log');
  fs.rmSync(log, { force: true });
  const env = { ...token.env, PKCS11_MODULE_PATH: PKCS11_SPY, PKCS11SPY: token.module, PKCS11SPY_OUTPUT: log };
  const [signPerSecond] = ecdsaSpeed({ args: ['-engine', 'pkcs11'], env });
  // The spy writes its log only once the module is loaded: no file, no call.
  const calls = fs.existsSync(log) ? (fs.readFileSync(log, 'utf8').match(/^\d+: C_\w+/gm) ?? []) : [];
  return { signPerSecond, pkcs11Calls: calls.length, signCalls: calls.filter((c) => / C_Sign$/.test(c)).length };
}

/**
 * `count` runs of `openssl pkeyutl -sign` with the token key, one after another on core 0, each over
 * a 32-byte digest; returns signatures per second. The last signature is checked with the CA
 * certificate `certificate` (made from the same key) so a run that signed nothing cannot pass.
 */
export function pkeyutlLoop(token: BenchToken, keyUri: string, certificate: string, work: string, count: number): { signatures: number; seconds: number; perSecond: number } {
  const digest = path.join(work, 'digest.bin');
  const sig = path.join(work, 'digest.sig');
  fs.writeFileSync(digest, Buffer.alloc(32, 7));
  const env = engineEnv(token);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    execFileSync('taskset', ['-c', '0', 'openssl', 'pkeyutl', '-sign', '-engine', 'pkcs11', '-keyform', 'engine', '-inkey', keyUri, '-in', digest, '-out', sig], { env, stdio: 'ignore' });
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const verified = execFileSync('openssl', ['pkeyutl', '-verify', '-certin', '-inkey', certificate, '-in', digest, '-sigfile', sig], { encoding: 'utf8' });
  if (!/Signature Verified Successfully/.test(verified)) throw new Error(`the token's signature does not verify: ${verified}`);
  return { signatures: count, seconds, perSecond: count / seconds };
}
