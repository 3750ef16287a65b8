/**
 * A CA whose keys are on PKCS#11 tokens (SoftHSM2), through the real CLI: `mutual init
 * --key-store --root-key-store` (the root on a token of its own), a server and a client
 * certificate, a revocation and its CRL, OCSP through `mutual serve`, the offline root CRL. OpenSSL
 * judges every chain, CRL and OCSP answer; pkcs11-tool shows the CA keys are on the token and never
 * extractable; no file of the state or offline folder holds a private key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeToken } from '../helpers/softhsm.ts';
import { tempDir } from '../helpers/test-ca.ts';
import { freePort, waitFor } from '../helpers/server.ts';
import { openssl, requireTool, run } from '../helpers/tools.ts';
import { explain, json, mutual, walk, type CliResult } from '../cli/cli-helper.ts';
import { spawn } from 'node:child_process';

const expectOk = (r: CliResult) => assert.equal(r.status, 0, explain(r));

test('ok/init, issue, revoke, CRL and OCSP with every CA key on a token', async (t) => {
  const tok = makeToken(t, { label: 'mutual-online' });
  const rootTok = makeToken(t, { label: 'mutual-root' });
  if (!tok || !rootTok || !requireTool(t, 'openssl') || !requireTool(t, 'pkcs11-tool', 'opensc')) return;
  const dir = tempDir('mutual-hsm-cli-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const home = path.join(dir, 'home');
  const offline = path.join(dir, 'offline');
  const ca = (f: string) => path.join(home, 'ca', f);
  const cli = (args: string[]) => mutual(['--home', home, ...args]);

  const publicPort = await freePort();
  expectOk(await cli(['init', '--trust-domain', 'acme.internal', '--name', 'Acme HSM', '--offline-dir', offline,
    '--url', `http://127.0.0.1:${publicPort}`, '--key-store', tok.tokenUri, '--root-key-store', rootTok.tokenUri, '--enrollment-token-key', 'store']));

  await t.test('ok/the key files are references to the tokens', async () => {
    const r = await cli(['--json', 'keys', '--offline-dir', offline]);
    expectOk(r);
    const keys = json<{ name: string; kind: string; uri?: string }[]>(r);
    const by = new Map(keys.map((k) => [k.name, k]));
    for (const name of ['server-ca', 'client-ca', 'token']) {
      assert.equal(by.get(name)?.kind, 'pkcs11', name);
      assert.match(by.get(name)!.uri!, /token=mutual-online/, name);
    }
    assert.equal(by.get('root')?.kind, 'pkcs11');
    assert.match(by.get('root')!.uri!, /token=mutual-root/);
    assert.ok(!r.stdout.includes(tok.pin) && !r.stdout.includes(rootTok.pin), 'no PIN in the output');
  });

  const leaf = (name: string) => path.join(dir, name);
  // Every key the online CA opens is on the token: no CA passphrase is needed (none is set here).
  const noPass = (args: string[]) => mutual(['--home', home, ...args], { passphrase: null });
  expectOk(await noPass(['issue', 'server', 'api.acme.internal', '--out', leaf('api')]));
  expectOk(await noPass(['issue', 'client', 'payments', '--out', leaf('payments')]));

  await t.test('ok/OpenSSL verifies the server and client chains', () => {
    for (const [dirName, purpose, inter] of [['api', 'sslserver', 'server-ca.pem'], ['payments', 'sslclient', 'client-ca.pem']] as const) {
      const v = openssl(['verify', '-x509_strict', '-purpose', purpose, '-CAfile', ca('root.pem'), '-untrusted', ca(inter), path.join(leaf(dirName), 'cert.pem')]);
      assert.equal(v.status, 0, v.stdout + v.stderr);
    }
  });

  await t.test('ok/a revocation, and the client CA\'s and the root\'s CRLs verify', async () => {
    expectOk(await cli(['revoke', path.join(leaf('payments'), 'cert.pem'), '--reason', 'keyCompromise']));
    expectOk(await cli(['crl', '--issuer', 'client', '--out', leaf('client.crl')]));
    const c = openssl(['crl', '-in', leaf('client.crl'), '-inform', 'DER', '-CAfile', ca('client-ca.pem'), '-noout', '-text']);
    assert.equal(c.status, 0, c.stdout + c.stderr);
    assert.match(c.stderr + c.stdout, /verify OK/);
    assert.match(c.stdout, /Key Compromise/);
    // The offline root (on its own token, no passphrase asked) renews its CRL.
    expectOk(await mutual(['--home', home, 'offline', 'crl', '--offline-dir', offline], { passphrase: null }));
    const r = openssl(['crl', '-in', path.join(offline, 'root.crl'), '-inform', 'DER', '-CAfile', path.join(offline, 'root.pem'), '-noout']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stderr + r.stdout, /verify OK/);
  });

  await t.test('ok/OCSP through mutual serve: good and revoked, OpenSSL verifies the answers', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [path.resolve(import.meta.dirname, '../../bin/mutual.mjs'), '--home', home, 'serve', '--listen', `127.0.0.1:${port}`,
      '--public-listen', `127.0.0.1:${publicPort}`, '--log-level', 'warn'], { env: { ...tok.env, MUTUAL_CA_PASSPHRASE: undefined }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise((r) => child.on('close', r));
    try {
      await waitFor('mutual serve', 30_000, async () => {
        if (child.exitCode !== null) throw new Error(`mutual serve exited: ${out}`);
        try {
          return (await fetch(`http://127.0.0.1:${publicPort}/ready`)).status === 200 ? true : undefined;
        } catch {
          return undefined;
        }
      });
      const ocsp = (cert: string, issuer: string) => openssl(['ocsp', '-url', `http://127.0.0.1:${publicPort}/ocsp`, '-issuer', ca(issuer), '-cert', cert,
        '-CAfile', ca('root.pem'), '-verify_other', ca(issuer)]);
      const good = ocsp(path.join(leaf('api'), 'cert.pem'), 'server-ca.pem');
      assert.equal(good.status, 0, good.stdout + good.stderr);
      assert.match(good.stderr + good.stdout, /Response verify OK/);
      assert.match(good.stdout, /: good/);
      const revoked = ocsp(path.join(leaf('payments'), 'cert.pem'), 'client-ca.pem');
      assert.match(revoked.stderr + revoked.stdout, /Response verify OK/);
      assert.match(revoked.stdout, /: revoked/);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
    assert.equal(child.exitCode, 0, out);
  });

  await t.test('ok/pkcs11-tool: the CA keys are on the tokens, sensitive and never extractable', () => {
    for (const [token, labels] of [[tok, ['mutual-server-ca', 'mutual-client-ca', 'mutual-token']], [rootTok, ['mutual-root']]] as const) {
      const r = run('pkcs11-tool', ['--module', token.module, '--token-label', token.label, '--login', '--pin', token.pin, '-O'], { env: token.env });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      // pkcs11-tool prints one block per object: "Private Key Object; EC ..." then its attributes.
      const blocks = r.stdout.split(/\n(?=\S)/).filter((b) => b.startsWith('Private Key Object'));
      for (const label of labels) {
        const block = blocks.find((b) => new RegExp(`label:\\s+${label}-`).test(b));
        assert.ok(block, `${label} is not a private key on ${token.label}:\n${r.stdout}`);
        assert.match(block, /never extractable/, block);
        assert.match(block, /sensitive/, block);
      }
      // No OCSP responder key was left on the token (they live in memory by default).
      assert.doesNotMatch(r.stdout, /mutual-ocsp-/);
    }
  });

  await t.test('ok/no file in the state or offline folder holds a private key', () => {
    // admin/ holds the first admin's own credential (its key encrypted), for the operator to
    // move to the admin's machine: it is a leaf's key, not one of the CA's.
    const files = [...walk(home), ...walk(offline)].filter((f) => !f.startsWith(path.join(home, 'admin') + path.sep));
    assert.ok(files.some((f) => f.endsWith('server-ca.key.pem')) && files.some((f) => f.endsWith('root.key.pem')));
    for (const f of files) assert.ok(!fs.readFileSync(f).includes('PRIVATE KEY'), `${f} holds a private key`);
    for (const f of files) {
      const text = fs.readFileSync(f);
      assert.ok(!text.includes(tok.pin) && !text.includes(rootTok.pin), `${f} holds a PIN`);
    }
  });
});

test('fail/init with a token that is not there leaves nothing behind', async (t) => {
  const tok = makeToken(t);
  if (!tok) return;
  const dir = tempDir('mutual-hsm-cli-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const home = path.join(dir, 'home');
  const offline = path.join(dir, 'offline');
  const missing = tok.tokenUri.replace(`token=${tok.label}`, 'token=no-such-token');
  const r = await mutual(['--json', '--home', home, 'init', '--trust-domain', 'acme.internal', '--offline-dir', offline, '--key-store', missing]);
  assert.notEqual(r.status, 0, explain(r));
  assert.equal(json<{ error: { code: string } }>(r).error.code, 'HSM_TOKEN_NOT_FOUND', explain(r));
  assert.ok(!fs.existsSync(home) && !fs.existsSync(offline), 'init left folders behind');
  const bad = await mutual(['--json', '--home', home, 'init', '--trust-domain', 'acme.internal', '--offline-dir', offline, '--key-store', 'pkcs11:token=x?module-path=lib.so']);
  assert.equal(json<{ error: { code: string } }>(bad).error.code, 'PKCS11_URI_INVALID', explain(bad));
  assert.ok(!fs.existsSync(home) && !fs.existsSync(offline), 'init left folders behind');
});
