/**
 * mutual as an installed dependency (issue 14, item 9): `npm pack` (whose prepack builds dist/),
 * install the tarball into a fresh project, then run its CLI through npx, import `mutual` and
 * `mutual/sdk` from an ES module, and type-check a TypeScript consumer against the shipped
 * .d.ts. Node does not strip types under node_modules, so this is what catches a package that
 * only works from the checkout.
 *
 * The tarball and the installed project are made once and kept for the cases below (a run takes
 * ~10-30 s, most of it npm). npm resolves the dependencies from its cache when it can.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { hasTool, run, type RunResult } from '../helpers/tools.ts';
import { tempDir, TEST_PASSPHRASE } from '../helpers/test-ca.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const VERSION = (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const TSC = path.join(REPO, 'node_modules/typescript/bin/tsc');

/** The pinned Node first on PATH: npm, npx and the package's bin run under it, not the system's Node 20. */
const env = {
  ...process.env,
  PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`,
  MUTUAL_CA_PASSPHRASE: TEST_PASSPHRASE,
  MUTUAL_HOME: undefined,
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
};

const missing = hasTool('npm') ? undefined : 'npm is not installed (apt-get install npm)';
/** Why the cases skip, or undefined to run them: under MUTUAL_INTEROP=require a missing npm fails them. */
const skip = process.env.MUTUAL_INTEROP === 'require' ? undefined : missing;

function check(r: RunResult, what: string): RunResult {
  assert.equal(r.status, 0, `${what} exited ${r.status}\nstdout: ${r.stdout.slice(-3000)}\nstderr: ${r.stderr.slice(-3000)}`);
  return r;
}

let work = '';
let app = '';
let tarball = '';
let issued = false;

/** The installed CLI. */
const mutual = (args: string[]): RunResult => run(path.join(app, 'node_modules/.bin/mutual'), ['--home', 'ca', ...args], { cwd: app, env });

/** A CA in app/ca and a client certificate in app/payments, made once by the installed CLI. */
function issueOnce(): void {
  if (issued) return;
  check(mutual(['init', '--trust-domain', 'example.internal']), 'mutual init');
  check(mutual(['issue', 'client', 'payments', '--out', 'payments']), 'mutual issue client');
  issued = true;
}

before(() => {
  if (missing) {
    if (process.env.MUTUAL_INTEROP === 'require') throw new Error(`${missing}; MUTUAL_INTEROP=require`);
    return;
  }
  work = tempDir('mutual-pack-');
  const packed = check(run('npm', ['pack', '--json', '--pack-destination', work], { cwd: REPO, env, timeout: 300_000 }), 'npm pack');
  // npm pack --json prints the lifecycle scripts' output (prepack's build) before the JSON.
  const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('\n[') + 1)) as { filename: string; files: { path: string }[] }[];
  tarball = path.join(work, info[0].filename);
  fs.writeFileSync(path.join(work, 'files.json'), JSON.stringify(info[0].files.map((f) => f.path)));
  app = path.join(work, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
  check(run('npm', ['install', '--prefer-offline', '--no-package-lock', tarball], { cwd: app, env, timeout: 300_000 }), 'npm install <tarball>');
});

test('ok/the tarball ships compiled JS, types and the bin, and no TypeScript sources', { skip }, () => {
  const files = JSON.parse(fs.readFileSync(path.join(work, 'files.json'), 'utf8')) as string[];
  for (const f of ['bin/mutual.mjs', 'dist/cli/main.js', 'dist/cli/help.txt', 'dist/index.js', 'dist/index.d.ts', 'dist/sdk/index.js', 'dist/sdk/index.d.ts', 'dist/sdk/index.js.map', 'package.json', 'README.md']) {
    assert.ok(files.includes(f), `${f} is missing from the tarball`);
  }
  assert.deepEqual(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), []);
  assert.deepEqual(files.filter((f) => f.startsWith('test/') || f.startsWith('bench/')), []);
  const manifest = JSON.parse(fs.readFileSync(path.join(app, 'node_modules/mutual/package.json'), 'utf8')) as { private?: boolean; engines?: { node?: string } };
  assert.equal(manifest.private, undefined);
  assert.equal(manifest.engines?.node, '>=24');
});

test('ok/npx mutual runs the installed CLI (--version, --help, init, issue)', { skip }, () => {
  const version = check(run('npx', ['--no-install', 'mutual', '--version'], { cwd: app, env }), 'npx mutual --version');
  assert.equal(version.stdout.trim(), VERSION);
  const help = check(run('npx', ['--no-install', 'mutual', '--help'], { cwd: app, env }), 'npx mutual --help');
  for (const c of ['init', 'issue', 'inspect', 'serve', 'agent', 'monitor', 'gateway', 'doctor']) assert.match(help.stdout, new RegExp(`^  ${c}\\b`, 'm'), c);
  // The commands that load the CA, its store and their dependencies, from dist/.
  issueOnce();
  const inspected = check(mutual(['--json', 'inspect', 'payments/cert.pem']), 'mutual inspect').stdout;
  assert.match(inspected, /spiffe:\/\/example\.internal\/prod\/payments/);
  assert.match(inspected, /valid \(in inventory\)/);
});

test('ok/the installed --help on a pipe is the text the build rendered, the same as commander prints', { skip }, () => {
  const fast = check(run(path.join(app, 'node_modules/.bin/mutual'), ['--help'], { cwd: app, env }), 'mutual --help').stdout;
  // The same help through the compiled CLI (commander, 80 columns on a pipe), not the launcher's copy.
  const main = JSON.stringify(pathToFileURL(path.join(app, 'node_modules/mutual/dist/cli/main.js')).href);
  const slow = check(run(process.execPath, ['--input-type=module', '-e', `const { run } = await import(${main}); process.exitCode = await run(['--help']);`], { cwd: app, env }), 'run([--help])').stdout;
  assert.ok(fs.existsSync(path.join(app, 'node_modules/mutual/dist/cli/help.txt')), 'the build rendered dist/cli/help.txt');
  assert.match(fast, /^Usage: mutual /);
  assert.equal(fast, slow);
  // And the launcher answers from that file (without loading commander): a marked copy shows through.
  const file = path.join(app, 'node_modules/mutual/dist/cli/help.txt');
  fs.writeFileSync(file, `${fast}(marked)\n`);
  try {
    assert.match(check(run(path.join(app, 'node_modules/.bin/mutual'), ['--help'], { cwd: app, env }), 'mutual --help').stdout, /\(marked\)\n$/);
  } finally {
    fs.writeFileSync(file, fast);
  }
});

test('ok/an ES module imports mutual and mutual/sdk and verifies a client certificate', { skip }, () => {
  issueOnce();
  fs.writeFileSync(path.join(app, 'consumer.mjs'), `
import crypto from 'node:crypto';
import fs from 'node:fs';
import { parseCertificate, MutualError as CoreError } from 'mutual';
import { PeerVerifier, MutualError } from 'mutual/sdk';

const leaf = new crypto.X509Certificate(fs.readFileSync('payments/cert.pem')).raw;
const verifier = new PeerVerifier({ clientCas: fs.readFileSync('ca/ca/client-ca.pem'), roots: fs.readFileSync('ca/ca/root.pem'), revocation: { mode: 'fail-closed', ocsp: false } });
verifier.loadCrl(fs.readFileSync('ca/ca/client.crl'));
const id = await verifier.verify({ leaf, authorized: true });
let refused;
try {
  await verifier.verify({ authorized: false });
} catch (e) {
  refused = { code: e.code, sameClass: e instanceof MutualError && e instanceof CoreError };
}
verifier.close();
process.stdout.write(JSON.stringify({ spiffeId: id.spiffeId, serialMatches: id.serial === parseCertificate(leaf).serial, refused }));
`);
  const r = check(run(process.execPath, ['consumer.mjs'], { cwd: app, env }), 'node consumer.mjs');
  assert.deepEqual(JSON.parse(r.stdout), { spiffeId: 'spiffe://example.internal/prod/payments', serialMatches: true, refused: { code: 'CERT_MISSING', sameClass: true } });
});

test('ok/the installed SQLite store starts its worker threads (their modules are .js in the package)', { skip }, () => {
  fs.writeFileSync(path.join(app, 'workers.mjs'), `
import { openSqliteStore } from 'mutual';
// A checkpoint after every commit, so the checkpointer thread starts at once.
const store = openSqliteStore({ path: 'workers.db', checkpointAfterBytes: 1 });
let stats = store.checkpointStats();
// Until the thread has answered or failed (it starts in tens of ms; the bound only stops a hang).
for (let i = 0; i < 2000 && stats.done === 0 && !stats.error; i++) {
  await store.audit({ actor: 'consumer', action: 'token', target: 'jti-' + i, details: {} });
  await new Promise((resolve) => setTimeout(resolve, 5));
  stats = store.checkpointStats();
}
await store.close();
process.stdout.write(JSON.stringify({ mode: stats.mode, error: stats.error ?? null, done: stats.done > 0 }));
`);
  const r = check(run(process.execPath, ['workers.mjs'], { cwd: app, env }), 'node workers.mjs');
  assert.deepEqual(JSON.parse(r.stdout), { mode: 'thread', error: null, done: true });
});

test('ok/a TypeScript consumer type-checks against the shipped .d.ts, and a misuse does not', { skip }, () => {
  const dir = path.join(app, 'ts');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'es2024', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true,
      // The shipped declarations are checked too, not skipped.
      skipLibCheck: false,
      // @types/node comes with the package (through @types/pg); the repo's is the fallback.
      types: ['node'], typeRoots: [path.join(app, 'node_modules/@types'), path.join(REPO, 'node_modules/@types')],
    },
    files: ['consumer.ts'],
  }));
  fs.writeFileSync(path.join(dir, 'consumer.ts'), `
import { PeerVerifier, createFetch, identityFromXfcc, type PeerIdentity, type VerifierOptions } from 'mutual/sdk';
import { parseCertificate, type CertificateInfo, type ErrorCode } from 'mutual';

const options: VerifierOptions = { clientCas: 'PEM', revocation: { mode: 'off' } };
const verifier = new PeerVerifier(options);
export async function who(leaf: Buffer): Promise<string | undefined> {
  const id: PeerIdentity = await verifier.verify({ leaf, authorized: true });
  const info: CertificateInfo = parseCertificate(leaf);
  const code: ErrorCode = 'CERT_EXPIRED';
  return id.spiffeId ?? info.serial + code;
}
export const f = typeof createFetch;
export const x = identityFromXfcc;
// @ts-expect-error clientCas is required: the types are real, not any
new PeerVerifier({});
`);
  const r = run(process.execPath, [TSC, '-p', dir], { cwd: app, env });
  assert.equal(r.status, 0, `tsc --noEmit on the consumer:\n${r.stdout}${r.stderr}`);
  // The same check sees a type error in the consumer: the shipped types are what was checked.
  fs.writeFileSync(path.join(dir, 'consumer.ts'), `import { PeerVerifier } from 'mutual/sdk';\nexport const v: PeerVerifier = new PeerVerifier({ clientCas: 42 });\n`);
  const bad = run(process.execPath, [TSC, '-p', dir], { cwd: app, env });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stdout, /consumer\.ts.*TS2322/);
});
