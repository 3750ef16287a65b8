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
import { REPO, explain, json, leaks, mode, mutual, sha256, type CliResult } from './cli-helper.ts';

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

test('ok/no output contains the demo passphrase or a private key', () => {
  const generated = fs.readFileSync(passphraseFile, 'utf8').trim();
  assert.ok(generated.length >= 12);
  assert.deepEqual(leaks([generated, 'PRIVATE KEY']), []);
});
