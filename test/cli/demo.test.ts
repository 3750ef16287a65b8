/**
 * `npm start` (`node src/cli/main.ts demo`), run twice in a fresh folder without
 * MUTUAL_CA_PASSPHRASE, as a first-time user would: the first run makes a CA, the second reuses it;
 * both show the 200 with the caller's SPIFFE identity, the 496 without a certificate, and the 495
 * after the revocation.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from '../helpers/test-ca.ts';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { freePort, waitFor } from '../helpers/server.ts';
import { hasTool } from '../helpers/tools.ts';
import { BIN, REPO, explain, json, leaks, mode, mutual, sha256, type CliResult } from './cli-helper.ts';

const cwd = tempDir('mutual-cli-demo-');
after(() => fs.rmSync(cwd, { recursive: true, force: true }));
const home = path.join(cwd, '.mutual');
const passphraseFile = path.join(cwd, '.mutual-demo-passphrase');
/** What package.json's `start` script runs, with the state folder in the temp folder. */
const demo = () => mutual(['demo', '--home', home], { script: path.join(REPO, 'src', 'cli', 'main.ts'), cwd, passphrase: null });

function assertCalls(r: CliResult): void {
  assert.equal(r.status, 0, explain(r));
  assert.match(r.stdout, /^5\. .*\b200 hello spiffe:\/\/demo\.internal\/dev\/payments$/m, r.stdout);
  assert.match(r.stdout, /^6\. .*\b496 /m, r.stdout);
  assert.match(r.stdout, /^8\. .*\b495 .*CERT_REVOKED/m, r.stdout);
}

let rootAfterFirst: string;
test('ok/first run creates a CA and shows mTLS, a refusal without a certificate, and a revoked certificate refused', async () => {
  const r = await demo();
  assertCalls(r);
  assert.match(r.stdout, /^1\. +Created a CA/m);
  assert.ok(fs.existsSync(path.join(home, 'config.yaml')));
  assert.equal(mode(passphraseFile), 0o600);
  assert.ok(fs.existsSync(path.join(cwd, '.mutual-offline', 'root.key.pem')), 'the root key is beside the state folder');
  assert.ok(!fs.existsSync(path.join(home, 'root.key.pem')));
  rootAfterFirst = sha256(path.join(home, 'ca', 'root.pem'));
});

test('ok/second run reuses the CA', async () => {
  const r = await demo();
  assertCalls(r);
  assert.match(r.stdout, /^1\. +Using the existing CA/m);
  assert.equal(sha256(path.join(home, 'ca', 'root.pem')), rootAfterFirst);
});

test('ok/the demo CA works with the CLI afterwards', async () => {
  const [list, audit] = await Promise.all([
    mutual(['--json', '--home', home, '--passphrase-file', passphraseFile, 'list', '--all'], { passphrase: null }),
    mutual(['--json', '--home', home, 'audit', 'verify'], { passphrase: null }),
  ]);
  assert.equal(list.status, 0, explain(list));
  const rows = json(list) as { identity?: string; status: string; role: string }[];
  const payments = rows.filter((c) => c.identity === 'spiffe://demo.internal/dev/payments');
  assert.equal(payments.length, 2, 'one client certificate per run');
  assert.ok(payments.every((c) => c.status === 'revoked'));
  assert.equal(rows.filter((c) => c.role === 'server').length, 2);
  assert.equal(audit.status, 0, explain(audit));
});

/** The "Try next" commands a demo run printed, as bash command lines running this checkout's CLI. */
function tryNext(r: CliResult): string[] {
  const lines = r.stdout.slice(r.stdout.indexOf('Try next:')).split('\n').filter((l) => l.startsWith('  npx mutual '));
  assert.ok(lines.length >= 3, r.stdout);
  // `npx mutual` is the CLI of the checkout npm start runs in; here the temp folder is not one.
  return lines.map((l) => l.trim().replace(/^npx mutual /, `"${process.execPath}" "${BIN}" `));
}

/** Runs a command line with bash as a user would paste it: no terminal, so no prompt can rescue it. */
function bash(line: string, o: { cwd: string; env?: Record<string, string> }): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...o.env };
    if (!o.env?.MUTUAL_CA_PASSPHRASE) delete env.MUTUAL_CA_PASSPHRASE;
    delete env.MUTUAL_HOME;
    const child = spawn('bash', ['-c', line], { cwd: o.cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (out += d));
    child.on('close', (status) => resolve({ status, out }));
  });
}

test('ok/every "Try next" command works as printed (the passphrase file is named)', async () => {
  const r = await demo();
  assertCalls(r);
  for (const line of tryNext(r)) {
    const x = await bash(line, { cwd });
    assert.equal(x.status, 0, `${line}\n${x.out}`);
  }
});

test('ok/on an existing CA of another trust domain the printed names are its own', async () => {
  const other = tempDir('mutual-cli-demo-other-');
  try {
    const otherHome = path.join(other, 'state');
    const init = await mutual(['--home', otherHome, 'init', '--trust-domain', 'acme.internal'], { cwd: other });
    assert.equal(init.status, 0, explain(init));
    const r = await mutual(['demo', '--home', otherHome], { script: path.join(REPO, 'src', 'cli', 'main.ts'), cwd: other });
    assert.equal(r.status, 0, explain(r));
    const lines = tryNext(r);
    assert.ok(lines.some((l) => l.includes('api.acme.internal')), r.stdout);
    for (const line of lines) {
      const x = await bash(line, { cwd: other, env: { MUTUAL_CA_PASSPHRASE: TEST_PASSPHRASE } });
      assert.equal(x.status, 0, `${line}\n${x.out}`);
    }
  } finally {
    fs.rmSync(other, { recursive: true, force: true });
  }
});

/** The pids of processes whose working folder is `dir` (what `npm start` there left running). */
function processesIn(dir: string): number[] {
  const found: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readlinkSync(`/proc/${e}/cwd`) === dir) found.push(Number(e));
    } catch {
      // Gone, or not ours to read.
    }
  }
  return found;
}

test('ok/killing the npm pid of `npm start` stops the CA server and frees its port', async (t) => {
  if (!hasTool('npm') || !fs.existsSync('/proc/self/cwd')) return t.skip('needs npm and /proc');
  // npm start as npm runs it: the repository's own start script, in a package folder (a temp one,
  // so the state folder is made there).
  const pkg = fs.realpathSync(tempDir('mutual-cli-npm-start-'));
  try {
    const start = (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
    fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'npm-start-test', private: true, type: 'module', scripts: { start } }));
    fs.symlinkSync(path.join(REPO, 'src'), path.join(pkg, 'src'));
    fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(pkg, 'node_modules'));
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.MUTUAL_CA_PASSPHRASE;
    delete env.MUTUAL_HOME;
    const npm = spawn('npm', ['start', '--', '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], { cwd: pkg, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    npm.stderr.on('data', (d: Buffer) => (err += d));
    npm.stdout.resume();
    const exited = new Promise<void>((r) => npm.on('exit', () => r()));
    await waitFor('the CA server of npm start', 120_000, () => (err.includes('mutual CA server on') ? true : undefined));
    assert.ok(processesIn(pkg).length >= 1);

    npm.kill('SIGTERM');
    await exited;
    // The server stops (finishing in-flight requests first): no process is left in the folder,
    // and the port is free.
    const left = await waitFor('no process left', 30_000, () => (processesIn(pkg).length === 0 ? true : undefined)).catch(() => false);
    const survivors = processesIn(pkg);
    for (const pid of survivors) process.kill(pid, 'SIGKILL');
    assert.ok(left, `still running after npm was killed: ${survivors.join(', ')}\n${err}`);
    const refused = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, '127.0.0.1');
      sock.on('connect', () => {
        sock.destroy();
        resolve(false);
      });
      sock.on('error', () => resolve(true));
    });
    assert.ok(refused, `port ${port} still accepts connections`);
  } finally {
    fs.rmSync(pkg, { recursive: true, force: true });
  }
});

test('ok/no output contains the demo passphrase or a private key', () => {
  const generated = fs.readFileSync(passphraseFile, 'utf8').trim();
  assert.ok(generated.length >= 12);
  assert.deepEqual(leaks([generated, 'PRIVATE KEY']), []);
});
