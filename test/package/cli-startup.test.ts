/**
 * Start-up of the CLI (issue 14, item 10): `--version` and `--help` must not load the CA, the
 * stores, the servers, the agent, the monitor or their npm dependencies; a command imports what
 * it runs. Checked on the modules a real `mutual` process loads (a module-load hook passed with
 * --import), never on timings: bench/cli-startup.ts measures those.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { mutual, explain, REPO } from '../cli/cli-helper.ts';
import { tempDir } from '../helpers/test-ca.ts';
import { buildProgram } from '../../src/cli/main.ts';
import { openssl, requireTool } from '../helpers/tools.ts';

/** Writes the URL of every module the process loads to $MUTUAL_MODULE_LOG when it exits. */
const HOOK = `data:text/javascript,${encodeURIComponent(`
import fs from 'node:fs';
import { registerHooks } from 'node:module';
const seen = [];
registerHooks({ load(url, context, next) { seen.push(url); return next(url, context); } });
process.on('exit', () => fs.writeFileSync(process.env.MUTUAL_MODULE_LOG, seen.join('\\n')));
`)}`;

/** The modules `mutual ...args` loaded: npm packages by name, the project's files relative to the repo. */
async function loaded(args: string[], o: { cli?: boolean } = {}): Promise<{ packages: Set<string>; files: string[]; stdout: string }> {
  const log = path.join(tempDir('mutual-modules-'), 'modules.txt');
  const r = await mutual(args, { env: { MUTUAL_MODULE_LOG: log, NODE_OPTIONS: `--import=${HOOK}` } });
  assert.equal(r.status, 0, explain(r));
  const urls = fs.readFileSync(log, 'utf8').split('\n').filter((u) => u.startsWith('file:'));
  const packages = new Set<string>();
  const files: string[] = [];
  for (const u of urls) {
    const p = new URL(u).pathname;
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(p);
    if (m) packages.add(m[1]);
    else files.push(path.relative(REPO, p));
  }
  assert.ok(files.includes(o.cli === false ? 'bin/mutual.mjs' : 'src/cli/main.ts'), `the hook saw the CLI load:\n${urls.join('\n')}`);
  return { packages, files, stdout: r.stdout };
}

/** Modules only a command that runs should load: the CA and its stores, the servers, the agent, the monitor, the SDK. */
const HEAVY = /^src\/(server|gateway|monitor|store|sdk)\/|^src\/agent\/(?!exit-codes\.ts$)|^src\/ca\/(authority|config|init-ca|offline|intermediate|open-ca-store|tokens)\.ts$|^src\/cli\/(compose|demo)\.ts$/;

const heavy = (files: string[]) => files.filter((f) => HEAVY.test(f));
/** The servers, the agent (but its exit codes), the monitor and the SDK. */
const SERVING = /^src\/(server|gateway|monitor|sdk)\/|^src\/agent\/(?!exit-codes\.ts$)/;

/** Key, certificate and PKCS#12 code: what a command that reads or signs needs, not the help text. */
const KEY_CODE = /^src\/keys\/|^src\/core\/(certificate|der|pkcs12|algorithms|crl|csr|ocsp)\.ts$/;

test('ok/mutual --help loads commander and the CLI\'s light helpers only', async () => {
  const r = await loaded(['--help']);
  assert.deepEqual([...r.packages], ['commander']);
  assert.deepEqual(heavy(r.files), []);
  assert.deepEqual(r.files.filter((f) => KEY_CODE.test(f)), []);
});

test('ok/--version alone is answered by the launcher, before the CLI or commander loads', async () => {
  const version = (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
  for (const flag of ['--version', '-V']) {
    const r = await loaded([flag], { cli: false });
    assert.equal(r.stdout.trim(), version);
    assert.deepEqual([...r.packages], []);
    assert.deepEqual(r.files, ['bin/mutual.mjs']);
  }
  // With other options, commander answers it the same.
  const r = await loaded(['--json', '--version']);
  assert.equal(r.stdout.trim(), version);
});

test('ok/--help lists every command without importing them', async () => {
  const r = await loaded(['--help']);
  const names = buildProgram().commands.map((c) => c.name());
  assert.ok(names.length >= 15, names.join(' '));
  for (const n of names) assert.match(r.stdout, new RegExp(`^  ${n}\\b`, 'm'), n);
});

test('ok/inspect without a CA loads neither the servers, the agent, the monitor nor their dependencies', async (t) => {
  if (!requireTool(t, 'openssl')) return;
  const dir = tempDir('mutual-inspect-');
  const cert = path.join(dir, 'cert.pem');
  const made = openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(dir, 'key.pem'), '-out', cert, '-subj', '/CN=inspect.example', '-days', '30']);
  assert.equal(made.status, 0, made.stderr);
  const r = await loaded(['--home', path.join(dir, 'no-ca'), 'inspect', cert]);
  assert.match(r.stdout, /inspect\.example/);
  assert.deepEqual([...r.packages], ['commander']);
  assert.deepEqual(r.files.filter((f) => SERVING.test(f)), []);
});

test('ok/list --json loads the store, not the CA keys, the servers, the agent or the monitor', async () => {
  const home = path.join(tempDir('mutual-list-'), 'home');
  const init = await mutual(['--home', home, 'init', '--trust-domain', 'example.internal']);
  assert.equal(init.status, 0, explain(init));
  const r = await loaded(['--home', home, '--json', 'list']);
  assert.ok(Array.isArray(JSON.parse(r.stdout)));
  assert.ok(r.files.some((f) => f.startsWith('src/store/')), 'the inventory is read from the store');
  // The inventory needs no key: the passphrase is never read, no key file unlocked (600,000 rounds each).
  assert.ok(!r.files.includes('src/keys/passphrase.ts'), 'list read a passphrase');
  assert.ok(!r.files.includes('src/ca/authority.ts'), 'list opened the authority (and its keys)');
  assert.deepEqual(r.files.filter((f) => SERVING.test(f)), []);
  for (const p of ['pino', 'undici', 'prom-client', 'nodemailer', 'jose']) assert.ok(!r.packages.has(p), `list loaded ${p}`);
});
