/**
 * How fast this machine's core 0 signs and verifies P-256 in software: the line every issuance
 * benchmark prints, so figures from different VMs can be set against BASELINES.md's 51,500 sign/s.
 */
import { execFileSync } from 'node:child_process';

/** Options for {@link ecdsaSpeed}. */
export interface EcdsaSpeedOptions {
  /** More arguments before `ecdsap256`, e.g. `['-engine', 'pkcs11']`. */
  args?: readonly string[];
  /** The environment of openssl; default this process's. */
  env?: NodeJS.ProcessEnv;
}

/** `openssl speed -seconds 2 ecdsap256` pinned to core 0: [signatures/s, verifications/s]. */
export function ecdsaSpeed(o: EcdsaSpeedOptions = {}): [number, number] {
  const out = execFileSync('taskset', ['-c', '0', 'openssl', 'speed', '-seconds', '2', ...(o.args ?? []), 'ecdsap256'], { encoding: 'utf8', env: o.env, stdio: ['ignore', 'pipe', 'ignore'] });
  const m = /nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)/.exec(out);
  if (!m) throw new Error(`cannot read openssl speed's output:\n${out}`);
  return [Math.round(Number(m[1])), Math.round(Number(m[2]))];
}
