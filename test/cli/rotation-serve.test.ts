/**
 * A running `mutual serve` through a root rollover: /roots.pem, /roots.json and /ca/cross/<name>.pem
 * follow `mutual root install/retire`; after SIGHUP, certificates it issues carry new-by-old in
 * their chain during the overlap, and an admin whose certificate is under the old root still
 * gets in. OpenSSL checks the chain it answers with only the old root as anchor.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { hasTool, openssl } from '../helpers/tools.ts';
import { tempDir, TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { send, waitFor } from '../helpers/server.ts';
import { explain, mutual, startServe, stopProcess, type CliResult } from './cli-helper.ts';

const dir = tempDir('mutual-cli-rotation-serve-');
const home = path.join(dir, 'home');
const offline = path.join(dir, 'offline');
const ca = (...f: string[]) => path.join(home, 'ca', ...f);
const p = (...f: string[]) => path.join(dir, ...f);
const cli = (args: string[]) => mutual(['--home', home, '--json', ...args]);
const expectOk = (r: CliResult) => assert.equal(r.status, 0, explain(r));
const fp = (pem: string | Buffer) => crypto.createHash('sha256').update(new crypto.X509Certificate(pem).raw).digest('hex');

let serve: { url: string; child: ChildProcess; stderr: () => string } | undefined;
after(async () => {
  if (serve) await stopProcess(serve.child);
  fs.rmSync(dir, { recursive: true, force: true });
});
const skip = { skip: !hasTool('openssl') && process.env.MUTUAL_INTEROP !== 'require' ? 'openssl is not installed' : false };

/** Trusts whatever roots.pem (or root.pem) holds now. */
const trust = () => ({ ca: fs.existsSync(ca('roots.pem')) ? fs.readFileSync(ca('roots.pem'), 'utf8') : fs.readFileSync(ca('root.pem'), 'utf8') });
const get = (u: string) => send(`${serve!.url}${u}`, { tls: trust() });
const admin = (d = path.join(home, 'admin')) => ({
  ...trust(),
  cert: fs.readFileSync(path.join(d, 'cert.pem'), 'utf8'),
  key: crypto.createPrivateKey({ key: fs.readFileSync(path.join(d, 'key.pem')), ...(d.endsWith('admin') ? { passphrase: TEST_PASSPHRASE } : {}) }).export({ type: 'pkcs8', format: 'pem' }) as string,
});
function csr(): string {
  const key = p('leaf.key');
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
  return openssl(['req', '-new', '-key', key, '-subj', '/CN=web.acme.internal', '-addext', 'subjectAltName=DNS:web.acme.internal']).stdout;
}

before(async () => {
  expectOk(await cli(['init', '--trust-domain', 'acme.internal', '--name', 'Acme', '--offline-dir', offline]));
  fs.copyFileSync(ca('root.pem'), p('old-root.pem'));
  serve = await startServe(home);
});

test('ok/serve answers the trust bundle, roots.json and the cross-certificates through the rollover', skip, async () => {
  const oldRoot = fp(fs.readFileSync(ca('root.pem')));
  let r = await get('/roots.pem');
  assert.equal(r.body.toString(), fs.readFileSync(ca('root.pem'), 'utf8'), 'before a rotation: the root');
  r = await get('/roots.json');
  assert.equal(r.json.current, oldRoot);
  assert.deepEqual(r.json.roots.map((x: any) => [x.fingerprint, x.status]), [[oldRoot, 'active']]);
  assert.equal(r.json.rotation.phase, 'none');

  expectOk(await cli(['root', 'rotate', '--offline-dir', offline]));
  expectOk(await cli(['root', 'install', '--from', offline]));
  const newRoot = fp(fs.readFileSync(path.join(offline, 'root.pem')));
  r = await get('/roots.pem');
  assert.equal(r.body.toString(), fs.readFileSync(ca('roots.pem'), 'utf8'));
  r = await get('/roots.json');
  assert.deepEqual(r.json.roots.map((x: any) => [x.fingerprint, x.status]), [[oldRoot, 'retiring'], [newRoot, 'active']]);
  assert.ok(r.json.roots[0].retireAt);
  assert.equal(r.json.rotation.phase, 'overlap');
  const cross = Object.fromEntries(r.json.cross.map((c: any) => [c.name, c]));
  assert.deepEqual([cross['new-by-old'].subjectFingerprint, cross['new-by-old'].issuerFingerprint], [newRoot, oldRoot]);
  assert.deepEqual([cross['old-by-new'].subjectFingerprint, cross['old-by-new'].issuerFingerprint], [oldRoot, newRoot]);
  // The contract's check: a relying party that trusts only the old root accepts the new one.
  const byOld = new crypto.X509Certificate(cross['new-by-old'].pem);
  assert.ok(byOld.verify(new crypto.X509Certificate(fs.readFileSync(p('old-root.pem'))).publicKey));
  assert.ok(byOld.publicKey.equals(new crypto.X509Certificate(r.json.roots[1].pem).publicKey));
  r = await get('/ca/cross/new-by-old.pem');
  assert.equal(r.body.toString(), fs.readFileSync(ca('cross', 'new-by-old.pem'), 'utf8'));
  assert.equal((await get('/ca/cross/nope.pem')).status, 404);
  // Public: also on the plain-HTTP paths' list (the HTTPS listener answers them without a client certificate).
  r = await get(`/crl/root-${newRoot.slice(0, 16)}.crl`);
  assert.equal(r.status, 200);
  fs.writeFileSync(p('new-root.crl'), r.body);
  const crl = openssl(['crl', '-inform', 'DER', '-in', p('new-root.crl'), '-noout', '-CAfile', path.join(offline, 'root.pem')]);
  assert.equal(crl.status, 0, crl.stdout + crl.stderr);

  for (const role of ['server', 'client']) {
    expectOk(await cli(['intermediate', 'csr', '--role', role, '--new-key', '--out', p(`${role}.csr`)]));
    expectOk(await cli(['offline', 'sign-intermediate', p(`${role}.csr`), '--role', role, '--offline-dir', offline, '--out', p(`${role}-ca.pem`)]));
    expectOk(await cli(['intermediate', 'install', p(`${role}-ca.pem`), '--role', role]));
  }
  serve!.child.kill('SIGHUP');
  const body = { profile: 'server', csr: csr() };
  // After the reload the server issues from the new intermediate, and the chain carries new-by-old.
  const answer = await waitFor('the reload', 30_000, async () => {
    const a = await send(`${serve!.url}/v1/sign`, { body, tls: admin() });
    assert.equal(a.status, 201, a.body.toString() + serve!.stderr());
    return a.json.chain.includes(fs.readFileSync(ca('cross', 'new-by-old.pem'), 'utf8')) ? a.json : undefined;
  });
  assert.equal(answer.fullchain, answer.certificate + answer.chain);
  fs.writeFileSync(p('leaf.pem'), answer.certificate);
  fs.writeFileSync(p('chain.pem'), answer.chain);
  for (const anchor of [p('old-root.pem'), path.join(offline, 'root.pem')]) {
    const v = openssl(['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', anchor, '-untrusted', p('chain.pem'), p('leaf.pem')]);
    assert.equal(v.status, 0, v.stdout + v.stderr);
  }
  r = await get('/roots.json');
  assert.equal(r.json.current, newRoot, 'root.pem is the new root');
  assert.deepEqual(r.json.roots.map((x: any) => [x.fingerprint, x.status]), [[newRoot, 'active'], [oldRoot, 'retiring']], 'the current root first');
  // A new host enrolling with a token pins the new root and gets it from /roots.pem.
  const token = await cli(['token', 'web2.acme.internal', '--out', p('token')]);
  expectOk(token);
  const enrolled = await cli(['ca', 'enroll', '--ca-url', serve!.url, '--token-file', p('token'), '--out', p('web2')]);
  expectOk(enrolled);
  const v = openssl(['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', p('old-root.pem'), '-untrusted', p('web2', 'chain.pem'), p('web2', 'cert.pem')]);
  assert.equal(v.status, 0, v.stdout + v.stderr);

  // An admin under the new root, for after the retirement.
  expectOk(await cli(['issue', 'client', 'spiffe://acme.internal/admin/second', '--out', p('admin2')]));
  expectOk(await cli(['root', 'retire', '--force']));
  serve!.child.kill('SIGHUP');
  r = await get('/roots.json');
  assert.deepEqual(r.json.roots.map((x: any) => x.fingerprint), [newRoot]);
  assert.equal(r.json.rotation.phase, 'retired');
  // After retirement the chain is the intermediate alone.
  await waitFor('the second reload', 30_000, async () => {
    const a = await send(`${serve!.url}/v1/sign`, { body, tls: admin(p('admin2')) });
    assert.equal(a.status, 201, a.body.toString() + serve!.stderr());
    return a.json.chain === fs.readFileSync(ca('server-ca.pem'), 'utf8') ? true : undefined;
  });
  // The first admin's certificate chains only to the retired root: no longer trusted.
  const old = await send(`${serve!.url}/v1/sign`, { body, tls: admin() });
  assert.equal(old.status, 403);
  assert.equal(old.code, 'AUTH_FORBIDDEN');
});
