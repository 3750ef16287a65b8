/**
 * Issue 13, items 12 and 13, against a real `mutual serve` process:
 * - the admin key `mutual init` writes is encrypted (as the CA keys are) and OpenSSL and curl read
 *   it with its passphrase; `mutual ca list|revoke` refuse an admin key that group or others can
 *   read (KEY_FILE_INSECURE, the CA keys' check), encrypted or not, and used to take it at 0644;
 * - `mutual ca enroll` takes the token from `--token-file` or `MUTUAL_TOKEN`, so it is not in `ps`;
 *   `--token` still works; an empty or missing token is TOKEN_MISSING.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { TEST_PASSPHRASE, tempDir } from '../helpers/test-ca.ts';
import { curl, freePort, send, waitFor } from '../helpers/server.ts';
import { openssl, requireTool } from '../helpers/tools.ts';
import { BIN, errorCode, explain, json, mutual, P12_PASSWORD, type CliResult } from './cli-helper.ts';
import { assertEncryptedKeyFile } from '../helpers/key-files.ts';

const dir = tempDir('mutual-cli-secrets-');
const home = path.join(dir, 'home');
const adminDir = path.join(home, 'admin');
const adminKey = path.join(adminDir, 'key.pem');
const rootPem = path.join(home, 'ca', 'root.pem');
/** A separate passphrase for the admin key (MUTUAL_ADMIN_PASSPHRASE at init). */
const ADMIN_PASSPHRASE = 'admin-key-passphrase-42';
const cli = (args: string[], o: Parameters<typeof mutual>[1] = {}) => mutual(['--home', home, '--json', ...args], o);

function expectOk(r: CliResult): void {
  assert.equal(r.status, 0, explain(r));
}
function expectError(r: CliResult, exit: number, code: string): void {
  assert.equal(r.status, exit, explain(r));
  assert.equal(errorCode(r), code, explain(r));
}
/** A file with this content and mode, in a 0700 folder. */
function secretFile(name: string, content: string, mode = 0o600): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, Buffer.from(content, 'latin1'), { mode });
  fs.chmodSync(f, mode);
  return f;
}

let server: ChildProcess | undefined;
let caUrl = '';

before(async () => {
  // --p12 rewrites the admin folder with the bundle: key.pem must stay encrypted through that.
  expectOk(await cli(['init', '--trust-domain', 'acme.internal', '--offline-dir', path.join(dir, 'offline'), '--p12'], { env: { MUTUAL_ADMIN_PASSPHRASE: ADMIN_PASSPHRASE } }));
  const port = await freePort();
  server = spawn(process.execPath, [BIN, '--home', home, 'serve', '--listen', `127.0.0.1:${port}`, '--log-level', 'warn', '--rate-limit', 'off'], {
    env: { ...process.env, MUTUAL_CA_PASSPHRASE: TEST_PASSPHRASE, MUTUAL_DATABASE_URL: undefined }, stdio: ['ignore', 'ignore', 'inherit'],
  });
  caUrl = `https://127.0.0.1:${port}`;
  const root = fs.readFileSync(rootPem, 'utf8');
  await waitFor(`mutual serve on ${caUrl}`, 30_000, async () => {
    try {
      return (await send(`${caUrl}/health`, { tls: { ca: root } })).status === 200 ? true : undefined;
    } catch {
      return undefined;
    }
  });
});
after(() => {
  server?.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('item 12: the admin key', () => {
  test('ok/init-writes-it-encrypted-0600-and-openssl-reads-it-with-its-passphrase', (t) => {
    assert.equal(fs.statSync(path.join(adminDir, 'bundle.p12')).mode & 0o777, 0o600);
    assert.equal(fs.statSync(adminKey).mode & 0o777, 0o600);
    const pem = fs.readFileSync(adminKey, 'utf8');
    assertEncryptedKeyFile(pem, ADMIN_PASSPHRASE);
    if (!requireTool(t, 'openssl')) return;
    assert.equal(openssl(['pkey', '-in', adminKey, '-passin', `pass:${ADMIN_PASSPHRASE}`, '-noout']).status, 0);
    assert.notEqual(openssl(['pkey', '-in', adminKey, '-passin', `pass:${TEST_PASSPHRASE}`, '-noout']).status, 0);
  });

  test('ok/curl-calls-the-api-with-it-and-its-passphrase', async (t) => {
    if (!requireTool(t, 'curl')) return;
    const base = ['--cacert', rootPem, '--cert', path.join(adminDir, 'cert.pem'), '--key', adminKey];
    const r = await curl([...base, '--pass', ADMIN_PASSPHRASE, '-o', '/dev/null', '-w', '%{http_code}', `${caUrl}/v1/certificates`]);
    assert.equal(r.stdout, '200', r.stderr);
    // Without the passphrase curl cannot use it (no terminal to ask on here).
    assert.notEqual((await curl([...base, '--pass', 'wrong-passphrase', '-o', '/dev/null', `${caUrl}/v1/certificates`])).status, 0);
  });

  const CASES: { name: string; env?: Record<string, string | undefined>; args?: () => string[]; key?: () => string; exit: number; code?: string }[] = [
    { name: 'ok/list-with-MUTUAL_ADMIN_PASSPHRASE', env: { MUTUAL_ADMIN_PASSPHRASE: ADMIN_PASSPHRASE }, exit: 0 },
    { name: 'ok/list-with-admin-passphrase-file', args: () => ['--admin-passphrase-file', secretFile('admin-pass', ADMIN_PASSPHRASE + '\n')], exit: 0 },
    { name: 'ok/list-with-an-unencrypted-0600-key', key: () => secretFile('plain-0600.pem', plainKey()), exit: 0 },
    { name: 'fail/list-with-the-wrong-passphrase', env: { MUTUAL_ADMIN_PASSPHRASE: 'not-the-admin-passphrase' }, exit: 4, code: 'KEY_PASSPHRASE_WRONG' },
    { name: 'fail/list-with-an-encrypted-key-at-0644', env: { MUTUAL_ADMIN_PASSPHRASE: ADMIN_PASSPHRASE }, key: () => secretFile('enc-0644.pem', fs.readFileSync(adminKey, 'utf8'), 0o644), exit: 4, code: 'KEY_FILE_INSECURE' },
    { name: 'fail/list-with-an-unencrypted-key-at-0644', key: () => secretFile('plain-0644.pem', plainKey(), 0o644), exit: 4, code: 'KEY_FILE_INSECURE' },
    { name: 'fail/list-with-an-unencrypted-key-at-0640', key: () => secretFile('plain-0640.pem', plainKey(), 0o640), exit: 4, code: 'KEY_FILE_INSECURE' },
    { name: 'ok/list-with-the-p12-bundle', args: () => ['--p12', path.join(adminDir, 'bundle.p12')], env: { MUTUAL_CA_PASSPHRASE: undefined }, exit: 0 },
    { name: 'ok/list-with-the-p12-bundle-and-a-password-file', args: () => ['--p12', path.join(adminDir, 'bundle.p12'), '--p12-password-file', secretFile('p12-pass', P12_PASSWORD)], env: { MUTUAL_P12_PASSWORD: undefined }, exit: 0 },
    { name: 'fail/list-with-the-p12-bundle-and-a-wrong-password', args: () => ['--p12', path.join(adminDir, 'bundle.p12')], env: { MUTUAL_P12_PASSWORD: 'not-the-p12-password' }, exit: 4, code: 'KEY_PASSPHRASE_WRONG' },
    { name: 'fail/list-with-the-p12-bundle-at-0644', args: () => ['--p12', secretFile('bundle-0644.p12', fs.readFileSync(path.join(adminDir, 'bundle.p12')).toString('latin1'), 0o644)], exit: 4, code: 'KEY_FILE_INSECURE' },
    { name: 'fail/list-with-a-p12-bundle-and-a-key', args: () => ['--p12', path.join(adminDir, 'bundle.p12'), '--key', adminKey], exit: 2 },
    { name: 'fail/list-with-no-passphrase-anywhere', env: { MUTUAL_CA_PASSPHRASE: undefined }, exit: 4, code: 'KEY_PASSPHRASE_MISSING' },
  ];
  /** The admin key, decrypted, as an unencrypted PKCS#8 PEM (a key made before keys were encrypted). */
  const plainKey = () => crypto.createPrivateKey({ key: fs.readFileSync(adminKey), passphrase: ADMIN_PASSPHRASE }).export({ type: 'pkcs8', format: 'pem' }) as string;

  for (const c of CASES) {
    test(c.name, async () => {
      const args = ['ca', 'list', '--ca-url', caUrl, ...(c.args?.() ?? []), ...(c.key ? ['--key', c.key()] : [])];
      const r = await cli(args, { env: c.env, detached: true });
      if (c.exit === 0) {
        expectOk(r);
        assert.ok(json<{ items: unknown[] }>(r).items.length >= 1, explain(r));
      } else if (c.code) expectError(r, c.exit, c.code);
      else assert.equal(r.status, c.exit, explain(r));
    });
  }

  test('fail/init-with-a-short-admin-passphrase-makes-nothing', async () => {
    const h = path.join(dir, 'short-home');
    const r = await mutual(['--home', h, '--json', 'init', '--trust-domain', 'acme.internal', '--offline-dir', path.join(dir, 'short-offline')], { env: { MUTUAL_ADMIN_PASSPHRASE: 'short' } });
    expectError(r, 3, 'KEY_PASSPHRASE_WEAK');
    assert.ok(!fs.existsSync(path.join(h, 'config.yaml')));
  });
});

describe('item 13: the enrollment token', () => {
  const mint = async (service: string): Promise<string> => {
    const r = await mutual(['--home', home, 'token', `spiffe://acme.internal/prod/${service}`, '--ttl', '10m']);
    expectOk(r);
    return r.stdout.trim();
  };
  const enroll = (service: string, args: string[], env: Record<string, string | undefined> = {}) =>
    mutual(['--json', 'ca', 'enroll', '--ca-url', caUrl, '--out', path.join(dir, service), ...args], { env: { MUTUAL_TOKEN: undefined, ...env } });

  test('ok/token-file-keeps-it-off-the-command-line', async () => {
    const token = await mint('from-file');
    const r = await enroll('from-file', ['--token-file', secretFile('token-a', token + '\n')]);
    expectOk(r);
    assert.ok(!r.args.join(' ').includes(token));
    assert.ok(fs.existsSync(path.join(dir, 'from-file', 'cert.pem')));
  });

  test('ok/token-out-writes-a-0600-file-enroll-takes', async () => {
    const file = path.join(dir, 'token-out');
    expectOk(await mutual(['--home', home, 'token', 'spiffe://acme.internal/prod/from-out', '--out', file]));
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    expectOk(await enroll('from-out', ['--token-file', file]));
  });

  test('ok/MUTUAL_TOKEN', async () => {
    const token = await mint('from-env');
    const r = await enroll('from-env', [], { MUTUAL_TOKEN: token });
    expectOk(r);
  });

  test('ok/--token-still-works', async () => {
    expectOk(await enroll('from-flag', ['--token', await mint('from-flag')]));
  });

  const FAILS: { name: string; args: () => string[]; env?: Record<string, string>; exit: number; code?: string }[] = [
    { name: 'fail/no-token-anywhere', args: () => [], exit: 3, code: 'TOKEN_MISSING' },
    { name: 'fail/empty-token-flag', args: () => ['--token', ''], exit: 3, code: 'TOKEN_MISSING' },
    { name: 'fail/empty-MUTUAL_TOKEN', args: () => [], env: { MUTUAL_TOKEN: '  \n' }, exit: 3, code: 'TOKEN_MISSING' },
    { name: 'fail/empty-token-file', args: () => ['--token-file', secretFile('token-empty', '\n')], exit: 3, code: 'TOKEN_MISSING' },
    { name: 'fail/missing-token-file', args: () => ['--token-file', path.join(dir, 'no-such-token')], exit: 3, code: 'TOKEN_MISSING' },
    { name: 'fail/token-file-readable-by-others', args: () => ['--token-file', secretFile('token-0644', 'x.y.z\n', 0o644)], exit: 4, code: 'KEY_FILE_INSECURE' },
    { name: 'fail/token-file-too-large', args: () => ['--token-file', secretFile('token-big', 'a'.repeat(17 * 1024))], exit: 3, code: 'INPUT_TOO_LARGE' },
    { name: 'fail/token-file-and-token-together', args: () => ['--token-file', secretFile('token-b', 'x.y.z'), '--token', 'x.y.z'], exit: 2 },
  ];
  for (const c of FAILS) {
    test(c.name, async () => {
      const r = await enroll('never', c.args(), c.env);
      if (c.code) expectError(r, c.exit, c.code);
      else assert.equal(r.status, c.exit, explain(r));
      assert.ok(!fs.existsSync(path.join(dir, 'never')));
    });
  }
});
