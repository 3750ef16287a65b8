/**
 * Issue 14 ("first run"), items 2, 5 and 6, on the real CLI process and a real `mutual serve`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { initCa } from '../../src/ca/init-ca.ts';
import { homeLayout } from '../../src/ca/home.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { TEST_PASSPHRASE, tempDir } from '../helpers/test-ca.ts';
import { send } from '../helpers/server.ts';
import { errorCode, explain, json, mutual, startServe, stopProcess, type CliResult } from './cli-helper.ts';

const dir = tempDir('mutual-first-run-');
const home = path.join(dir, 'home');
const layout = homeLayout(home);
let server: { url: string; child: ChildProcess } | undefined;
let admin: { cert: string; key: string; ca: string };

before(async () => {
  await initCa({ home, offlineDir: path.join(dir, 'offline'), trustDomain: 'acme.internal', name: 'Acme Test', passphrase: TEST_PASSPHRASE });
  server = await startServe(home);
  // init encrypts the admin key with the CA passphrase; the TLS client takes it decrypted.
  const key = crypto.createPrivateKey({ key: fs.readFileSync(path.join(layout.adminDir, 'key.pem'), 'utf8'), passphrase: TEST_PASSPHRASE });
  admin = { cert: fs.readFileSync(path.join(layout.adminDir, 'cert.pem'), 'utf8'), key: key.export({ type: 'pkcs8', format: 'pem' }) as string, ca: fs.readFileSync(layout.rootCert, 'utf8') };
});
after(async () => {
  if (server) await stopProcess(server.child);
  fs.rmSync(dir, { recursive: true, force: true });
});

function expectOk(r: CliResult): void {
  assert.equal(r.status, 0, explain(r));
}
function expectError(r: CliResult, exit: number, code: string): void {
  assert.equal(r.status, exit, explain(r));
  assert.equal(errorCode(r), code, explain(r));
}

describe('item 2: ca enroll --out never replaces a key without --force', () => {
  test('fail/existing-key-is-OUTPUT_EXISTS-before-the-token-is-spent, ok/--force-replaces-it', async () => {
    const out = path.join(dir, 'payments');
    const token = path.join(dir, 'token-enroll');
    expectOk(await mutual(['--home', home, 'issue', 'client', 'payments', '--out', out]));
    const before = fs.readFileSync(path.join(out, 'key.pem'));
    expectOk(await mutual(['--home', home, 'token', 'spiffe://acme.internal/prod/payments', '--out', token]));

    expectError(await mutual(['--json', 'ca', 'enroll', '--ca-url', server!.url, '--token-file', token, '--out', out]), 3, 'OUTPUT_EXISTS');
    assert.deepEqual(fs.readFileSync(path.join(out, 'key.pem')), before);

    // The same token still works: it was not spent on the refused run.
    const r = await mutual(['--json', 'ca', 'enroll', '--ca-url', server!.url, '--token-file', token, '--out', out, '--force']);
    expectOk(r);
    assert.notDeepEqual(fs.readFileSync(path.join(out, 'key.pem')), before);
    assert.equal(json(r).serial.length > 0, true);
  });
});
