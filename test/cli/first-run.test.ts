/**
 * Issue 14 ("first run"), items 2, 5 and 6, on the real CLI process and a real `mutual serve`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { initCa } from '../../src/ca/init-ca.ts';
import { homeLayout } from '../../src/ca/home.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { readTokenClaims } from '../../src/sdk/ca-client.ts';
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
  // initCa without adminKeyPassphrase leaves the admin key unencrypted (0600).
  admin = { cert: fs.readFileSync(path.join(layout.adminDir, 'cert.pem'), 'utf8'), key: fs.readFileSync(path.join(layout.adminDir, 'key.pem'), 'utf8'), ca: fs.readFileSync(layout.rootCert, 'utf8') };
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

describe('item 5: one way to report errors, one grammar for options', () => {
  test('fail/a-missing-or-unreadable-file-has-a-documented-code', async () => {
    const missing = await mutual(['inspect', '/nonexistent']);
    assert.equal(missing.status, 3, explain(missing));
    assert.match(missing.stderr, /^error\[FILE_NOT_FOUND\]: .*\/nonexistent/m);
    assert.doesNotMatch(missing.stderr, /ENOENT\]/);
    expectError(await mutual(['--json', 'inspect', '/nonexistent']), 3, 'FILE_NOT_FOUND');
    expectError(await mutual(['--json', 'inspect', dir]), 3, 'FILE_UNREADABLE');
  });

  test('fail/usage-errors-are-json-with---json', async () => {
    for (const args of [['--json', 'list', '--expiring', 'banana'], ['--json', 'no-such-command'], ['--json', 'issue', 'server']]) {
      const r = await mutual(['--home', home, ...args]);
      expectError(r, 2, 'USAGE_INVALID');
      const e = json(r).error;
      assert.equal(typeof e.message, 'string');
      assert.equal(typeof e.hint, 'string');
    }
    // Without --json: commander's text, exit 2, nothing on stdout.
    const plain = await mutual(['--home', home, 'list', '--expiring', 'banana']);
    assert.equal(plain.status, 2, explain(plain));
    assert.equal(plain.stdout, '');
    assert.match(plain.stderr, /banana/);
  });

  // A value that does not parse is a usage error (exit 2) whichever command and option take it.
  const badValues: { name: string; args: string[] }[] = [
    { name: 'token --ttl 99y', args: ['token', 'spiffe://acme.internal/prod/x', '--ttl', '99y'] },
    { name: 'token --ttl over 7 days', args: ['token', 'spiffe://acme.internal/prod/x', '--ttl', '8d'] },
    { name: 'token --cert-ttl soon', args: ['token', 'spiffe://acme.internal/prod/x', '--cert-ttl', 'soon'] },
    { name: 'list --expiring banana', args: ['list', '--expiring', 'banana'] },
    { name: 'ca list --expiring banana', args: ['ca', 'list', '--ca-url', 'https://127.0.0.1:1', '--expiring', 'banana'] },
    { name: 'issue --days 0', args: ['issue', 'server', 'x.acme.internal', '--out', path.join(dir, 'never'), '--days', '0'] },
    { name: 'serve --grace-seconds x', args: ['serve', '--grace-seconds', 'x'] },
    { name: 'serve --grace-seconds over 30 days', args: ['serve', '--grace-seconds', '2592001'] },
    { name: 'serve --rate-limit fast', args: ['serve', '--rate-limit', 'fast'] },
    { name: 'serve --listen nowhere', args: ['serve', '--listen', 'nowhere'] },
  ];
  for (const c of badValues) {
    test(`fail/bad-option-value-is-a-usage-error/${c.name}`, async () => {
      expectError(await mutual(['--json', '--home', home, ...c.args]), 2, 'USAGE_INVALID');
    });
  }

  test('ok/list-and-ca-list-take-the-same---expiring-grammar (a bare number is days)', async () => {
    const short = await mutual(['--json', '--home', home, 'issue', 'server', 'short.acme.internal', '--ttl', '1h', '--out', path.join(dir, 'short')]);
    expectOk(short);
    const serial = json(short).serial as string;
    const caList = (exp: string) => mutual(['--json', '--home', home, 'ca', 'list', '--ca-url', server!.url, '--expiring', exp]);
    const local = (exp: string) => mutual(['--json', '--home', home, 'list', '--expiring', exp]);
    for (const [run, items] of [[caList, (r: CliResult) => json(r).items], [local, (r: CliResult) => json(r)]] as const) {
      for (const exp of ['2h', '30d', '30']) {
        const r = await run(exp);
        expectOk(r);
        assert.ok(items(r).some((i: { serial: string }) => i.serial === serial), `${exp}: ${explain(r)}`);
      }
      // The 90-day admin certificate is not within 2 hours, and is within 100 days.
      const few = await run('2h');
      assert.ok(items(few).every((i: { role: string; notAfter: string }) => new Date(i.notAfter).getTime() < Date.now() + 3 * 3_600_000), explain(few));
      assert.ok(items(await run('100')).length > items(few).length);
    }
  });

  test('ok/serve---help-states-each-default-once', async () => {
    const r = await mutual(['serve', '--help']);
    expectOk(r);
    // One entry per option: its description and the continuation lines commander wraps it onto.
    const entries = r.stdout.split(/\n(?=  -)/);
    const grace = entries.find((e) => e.includes('--grace-seconds'));
    assert.ok(grace);
    for (const e of entries) assert.ok((e.match(/default/g) ?? []).length <= 1, e);
  });

  test('fail/a-malformed-serial-is-SERIAL_INVALID-400-not-CERT_NOT_FOUND-404', async () => {
    const tls = admin;
    const bad = await send(`${server!.url}/v1/revoke`, { body: { serial: 'not-a-serial' }, tls });
    assert.equal(bad.status, 400);
    assert.equal(bad.code, 'SERIAL_INVALID');
    const unknown = await send(`${server!.url}/v1/revoke`, { body: { serial: 'ab'.repeat(16) }, tls });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.code, 'CERT_NOT_FOUND');
    expectError(await mutual(['--json', '--home', home, 'revoke', 'not-a-serial']), 3, 'SERIAL_INVALID');
  });
});

describe('item 6: the root fingerprint, printed where the docs say', () => {
  test('ok/init-prints-it-and-mutual-fingerprint-prints-it-in-the-form-agent.yaml-takes', async () => {
    const fresh = path.join(dir, 'fresh');
    const init = await mutual(['--home', fresh, 'init', '--trust-domain', 'acme.internal', '--offline-dir', path.join(dir, 'fresh-offline')]);
    expectOk(init);
    const expected = crypto.createHash('sha256').update(readPemOrDer(fs.readFileSync(homeLayout(fresh).rootCert), ['CERTIFICATE'])).digest('hex');
    assert.ok(init.stdout.includes(expected), explain(init));
    const printed = await mutual(['--home', fresh, 'fingerprint']);
    expectOk(printed);
    assert.equal(printed.stdout, `${expected}\n`);
    // agent.yaml's ca.rootFingerprint accepts it; a token made here carries the same.
    assert.match(printed.stdout.trim(), /^[0-9a-f]{64}$/);
    const token = await mutual(['--home', fresh, 'token', 'spiffe://acme.internal/prod/x']);
    expectOk(token);
    assert.equal(readTokenClaims(token.stdout.trim()).rootFingerprint, expected);
    const j = await mutual(['--json', 'fingerprint', homeLayout(fresh).serverCaCert]);
    expectOk(j);
    assert.notEqual(json(j).fingerprint, expected);
  });
});
