/**
 * A throwaway SoftHSM2 token for a benchmark: its own config and token folder under `dir`, a random
 * PIN in a 0600 file, and the `pkcs11:` URI mutual takes as a key store. Benchmarks run outside
 * node:test, so they cannot use test/helpers/softhsm.ts (which cleans up through the test context).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** Where Debian's libsofthsm2 puts the module. */
export const SOFTHSM2_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/** What {@link makeBenchToken} made. */
export interface BenchToken {
  /** The token's label. */
  label: string;
  /** The PKCS#11 module (libsofthsm2.so). */
  module: string;
  /** SoftHSM2's config file naming the token folder; every process using the token needs it. */
  conf: string;
  /** The user PIN's file (0600, no trailing newline). */
  pinFile: string;
  /** The environment for a child that uses the token: this one's with SOFTHSM2_CONF set. */
  env: NodeJS.ProcessEnv;
  /** The key store URI for mutual: `pkcs11:token=LABEL?module-path=...&pin-source=file:...`. */
  uri: string;
}

/**
 * Initializes a token labelled `label` in `dir/tokens` (dir made if needed; no spaces in it, as
 * SoftHSM2's config has no quoting). The PIN goes to softhsm2-util on its command line, which
 * cannot read it from elsewhere: acceptable for a random PIN of a token that lives for one run.
 */
export function makeBenchToken(dir: string, label = 'mutual-bench'): BenchToken {
  if (/\s/.test(dir)) throw new TypeError(`the token folder must not contain spaces: ${dir}`);
  const tokens = path.join(dir, 'tokens');
  fs.mkdirSync(tokens, { recursive: true, mode: 0o700 });
  const conf = path.join(dir, 'softhsm2.conf');
  fs.writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const pin = randomBytes(12).toString('hex');
  const pinFile = path.join(dir, 'user.pin');
  fs.writeFileSync(pinFile, pin, { mode: 0o600 });
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', randomBytes(12).toString('hex')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const uri = `pkcs11:token=${encodeURIComponent(label)}?module-path=${SOFTHSM2_MODULE}&pin-source=file:${pinFile}`;
  return { label, module: SOFTHSM2_MODULE, conf, pinFile, env, uri };
}
