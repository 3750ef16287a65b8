/**
 * A SoftHSM2 token for tests of keys on PKCS#11 (issue 18).
 *
 * SoftHSM2 reads its configuration (SOFTHSM2_CONF) when the module is initialized, and a process
 * loads a module once; so every test file gets ONE token folder, made on first use and named in
 * `process.env.SOFTHSM2_CONF`, and each {@link makeToken} adds a token (its own label and PIN) to it.
 * Child processes (pkcs11-tool, a `mutual` run) need {@link SoftHsmToken.env} to see the same folder.
 *
 * "Token removed" is what was measured on this machine: renaming the token folder under a live
 * process makes C_Sign fail CKR_OBJECT_HANDLE_INVALID and C_Initialize CKR_GENERAL_ERROR; renaming
 * it back and re-initializing works again. {@link SoftHsmToken.remove} and `restore` do that; the
 * folder is shared, so a removal takes away every token of the test file.
 *
 * SoftHSM2 also lists its tokens at C_Initialize only: a token made after this process initialized
 * the module is seen after `await closeKeyStores()` (the next use initializes again).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { requireTool, run } from './tools.ts';

/** Where Debian's softhsm2 package puts the module. */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

/** A token made by {@link makeToken}. */
export interface SoftHsmToken {
  /** The module's absolute path (module-path). */
  module: string;
  /** The SoftHSM2 configuration file (SOFTHSM2_CONF). */
  conf: string;
  /** The per-process folder holding conf, token folder and PIN files (0700). */
  dir: string;
  /** The token's label (token=). */
  label: string;
  /**
   * `pkcs11:token=<label>?module-path=<module>&pin-source=file:<pin file>`: a key store URI, no
   * object or id.
   */
  tokenUri: string;
  /** The user PIN (tests only: it also sits in a 0600 file named by tokenUri's pin-source). */
  pin: string;
  /** The PIN file (0600). */
  pinFile: string;
  /** process.env plus SOFTHSM2_CONF, for child processes. */
  env: NodeJS.ProcessEnv;
  /** Renames the token folder away: every token of this test file disappears. */
  remove(): void;
  /** Renames it back. */
  restore(): void;
}

/**
 * Whether pkcs11js (an optional dependency: it needs a compiler) loads here; like requireTool, a
 * test without it skips, and fails under MUTUAL_INTEROP=require.
 */
function requireBinding(t: TestContext): boolean {
  try {
    createRequire(import.meta.url)('pkcs11js');
    return true;
  } catch {
    const msg = 'the PKCS#11 binding pkcs11js is not built (npm install with g++, make and python3)';
    if (process.env.MUTUAL_INTEROP === 'require') throw new Error(`${msg}; MUTUAL_INTEROP=require`);
    t.skip(msg);
    return false;
  }
}

interface Shared {
  dir: string;
  conf: string;
  tokens: string;
}
let shared: Shared | undefined;

function sharedFolder(): Shared {
  if (shared) return shared;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-softhsm-'));
  fs.chmodSync(dir, 0o700);
  const tokens = path.join(dir, 'tokens');
  fs.mkdirSync(tokens, { mode: 0o700 });
  const conf = path.join(dir, 'softhsm2.conf');
  fs.writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`, { mode: 0o600 });
  process.env.SOFTHSM2_CONF = conf;
  // The folder outlives each test: the module in this process keeps it open until exit.
  process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  shared = { dir, conf, tokens };
  return shared;
}

/**
 * Makes a new SoftHSM2 token in this test file's token folder (see the file's top comment), or skips
 * `t` when softhsm2-util or pkcs11js is missing (fails under MUTUAL_INTEROP=require): returns
 * undefined then.
 * After `t`, the token folder is put back if the test removed it.
 */
export function makeToken(t: TestContext, o: { label?: string } = {}): SoftHsmToken | undefined {
  if (!requireTool(t, 'softhsm2-util', 'softhsm2') || !requireBinding(t)) return undefined;
  const s = sharedFolder();
  const label = o.label ?? `mutual-${crypto.randomBytes(4).toString('hex')}`;
  const pin = crypto.randomBytes(6).toString('hex');
  const soPin = crypto.randomBytes(6).toString('hex');
  const env = { ...process.env, SOFTHSM2_CONF: s.conf };
  const r = run('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', soPin], { env });
  if (r.status !== 0) throw new Error(`softhsm2-util --init-token failed: ${r.stderr || r.stdout}`);
  const pinFile = path.join(s.dir, `${label}.pin`);
  fs.writeFileSync(pinFile, `${pin}\n`, { mode: 0o600 });
  const away = `${s.tokens}.away`;
  const remove = (): void => fs.renameSync(s.tokens, away);
  const restore = (): void => fs.renameSync(away, s.tokens);
  t.after(() => {
    if (fs.existsSync(away) && !fs.existsSync(s.tokens)) restore();
  });
  const tokenUri = `pkcs11:token=${encodeURIComponent(label)}?module-path=${SOFTHSM_MODULE}&pin-source=file:${pinFile}`;
  return { module: SOFTHSM_MODULE, conf: s.conf, dir: s.dir, label, tokenUri, pin, pinFile, env, remove, restore };
}
