/**
 * The air-gapped flow through the CLI: `intermediate csr` -> `offline sign-intermediate` ->
 * `intermediate install`, with the same key and with a new one, and `offline crl --revoke`. OpenSSL
 * judges the chains and the root CRL.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { hasTool, openssl, runAsync } from '../helpers/tools.ts';
import { startCaServer } from '../../src/server/ca-server.ts';
import { tempDir, TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { errorCode, explain, json, leaks, mode, mutual, sha256, WRONG_PASSPHRASE, type CliResult } from './cli-helper.ts';
import { openAuthority } from '../../src/ca/open-authority.ts';

const dir = tempDir('mutual-cli-offline-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const home = path.join(dir, 'home');
const offline = path.join(dir, 'offline');
const ca = (f: string) => path.join(home, 'ca', f);
const keys = (f: string) => path.join(home, 'keys', f);
const p = (...parts: string[]) => path.join(dir, ...parts);
const cli = (args: string[], o: Parameters<typeof mutual>[1] = {}) => mutual(['--home', home, ...args], o);
const offlineDir = ['--offline-dir', offline];

const expectOk = (r: CliResult) => assert.equal(r.status, 0, explain(r));
function expectError(r: CliResult, exit: number, code: string): void {
  assert.equal(r.status, exit, explain(r));
  assert.equal(errorCode(r), code, explain(r));
}
const x509 = (file: string) => new crypto.X509Certificate(fs.readFileSync(file));
const spki = (file: string) => x509(file).publicKey.export({ type: 'spki', format: 'der' });
/** openssl verify of a leaf against the root and one intermediate. */
function verify(leaf: string, intermediate: string, purpose = 'sslserver', extra: string[] = []) {
  return openssl(['verify', '-x509_strict', '-purpose', purpose, ...extra, '-CAfile', ca('root.pem'), '-untrusted', intermediate, leaf]);
}
/** Issues a server certificate into `name/`; returns its serial. */
async function issueServer(name: string): Promise<string> {
  const r = await cli(['--json', 'issue', 'server', `${name}.acme.internal`, '--out', p(name)]);
  expectOk(r);
  return json(r).serial;
}

before(async () => {
  expectOk(await cli(['init', '--trust-domain', 'acme.internal', '--name', 'Acme', '--offline-dir', offline]));
  fs.copyFileSync(ca('server-ca.pem'), p('server-ca.orig.pem'));
});

const skipNoOpenssl = { skip: !hasTool('openssl') && process.env.MUTUAL_INTEROP !== 'require' ? 'openssl is not installed (apt-get install openssl)' : false };

let before1: string;
test('ok/re-sign the server CA with its current key', skipNoOpenssl, async () => {
  before1 = await issueServer('before');
  expectOk(await cli(['intermediate', 'csr', '--role', 'server', '--out', p('req.csr')]));
  assert.equal(openssl(['req', '-in', p('req.csr'), '-verify', '-noout']).status, 0, 'OpenSSL verifies the intermediate CSR');
  expectOk(await cli(['offline', 'sign-intermediate', p('req.csr'), '--role', 'server', ...offlineDir, '--out', p('new.pem')]));
  const v = openssl(['verify', '-x509_strict', '-CAfile', ca('root.pem'), p('new.pem')]);
  assert.equal(v.status, 0, v.stdout + v.stderr);
  assert.notEqual(x509(p('new.pem')).serialNumber, x509(p('server-ca.orig.pem')).serialNumber);
  assert.ok(spki(p('new.pem')).equals(spki(p('server-ca.orig.pem'))), 'same key');

  const installed = await cli(['intermediate', 'install', p('new.pem'), '--role', 'server']);
  expectOk(installed);
  assert.match(installed.stdout, /Reload `mutual serve` \(every replica: kill -HUP/, 'says what a running server needs');
  assert.equal(fs.readFileSync(ca('server-ca.pem'), 'utf8'), fs.readFileSync(p('new.pem'), 'utf8'));

  const serial = await issueServer('after');
  assert.equal(fs.readFileSync(p('after', 'chain.pem'), 'utf8'), fs.readFileSync(p('new.pem'), 'utf8'), 'chain.pem is the new intermediate');
  const r = verify(p('after', 'cert.pem'), p('new.pem'));
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal(x509(p('after', 'cert.pem')).serialNumber.toLowerCase(), serial);
  // Same name, same key: what the old certificate issued still chains to the new one.
  const old = verify(p('before', 'cert.pem'), p('new.pem'));
  assert.equal(old.status, 0, old.stdout + old.stderr);
});

test('ok/re-sign the server CA with a new key (--new-key)', skipNoOpenssl, async () => {
  expectOk(await cli(['intermediate', 'csr', '--role', 'server', '--new-key', '--out', p('req2.csr')]));
  assert.equal(mode(keys('server-ca.next.key.pem')), 0o600);
  expectOk(await cli(['offline', 'sign-intermediate', p('req2.csr'), '--role', 'server', ...offlineDir, '--out', p('new2.pem')]));
  assert.ok(!spki(p('new2.pem')).equals(spki(p('new.pem'))), 'a different key');
  expectOk(await cli(['intermediate', 'install', p('new2.pem'), '--role', 'server']));
  assert.ok(!fs.existsSync(keys('server-ca.next.key.pem')), 'the next key became the current key');
  assert.equal(mode(keys('server-ca.key.pem')), 0o600);
  const current = crypto.createPrivateKey({ key: fs.readFileSync(keys('server-ca.key.pem')), passphrase: TEST_PASSPHRASE });
  assert.ok(x509(p('new2.pem')).checkPrivateKey(current));
  assert.ok(fs.readdirSync(path.join(home, 'keys')).some((f) => /^server-ca\.prev-.*\.key\.pem$/.test(f)), 'the old key is kept');

  await issueServer('rotated');
  const leaf = x509(p('rotated', 'cert.pem'));
  assert.ok(leaf.verify(x509(p('new2.pem')).publicKey), 'issuance uses the new key');
  assert.ok(!leaf.verify(x509(p('new.pem')).publicKey));
  const ok = verify(p('rotated', 'cert.pem'), p('new2.pem'));
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  assert.notEqual(verify(p('rotated', 'cert.pem'), p('new.pem')).status, 0, 'it does not chain to the old intermediate');
});

test('ok/a certificate issued before the key rotation can still be revoked', skipNoOpenssl, async () => {
  const r = await cli(['--json', 'revoke', before1, '--reason', 'superseded']);
  expectOk(r);
  assert.equal(json(r).serial, before1);
});

test('ok/the CA server answers OCSP for the retired intermediate and serves its CRL', skipNoOpenssl, async () => {
  const authority = await openAuthority({ home, passphrase: TEST_PASSPHRASE });
  const srv = await startCaServer({ ca: authority, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), rateLimit: false });
  try {
    assert.equal(authority.retired.length, 1);
    const name = authority.crlName(authority.retired[0]);
    assert.match(name, /^server\.prev-[0-9a-f]{16}$/);
    const get = async (urlPath: string, file: string) => {
      const r = await runAsync('curl', ['-sS', '--fail', '--cacert', ca('root.pem'), '-o', p(file), `${srv.url}${urlPath}`]);
      assert.equal(r.status, 0, r.stderr);
      return p(file);
    };
    // The retired intermediate and its CRL, from the server; OpenSSL checks the CRL's signature.
    const inter = await get(`/ca/${name}.pem`, 'retired.pem');
    assert.ok(x509(inter).publicKey.export({ type: 'spki', format: 'der' }).equals(spki(p('new.pem'))), 'the retired intermediate');
    const crl = await get(`/crl/${name}.pem`, 'retired.crl.pem');
    fs.writeFileSync(p('root-and-retired.pem'), fs.readFileSync(ca('root.pem'), 'utf8') + fs.readFileSync(inter, 'utf8'));
    const sig = openssl(['crl', '-in', crl, '-CAfile', p('root-and-retired.pem'), '-noout', '-text']);
    assert.match(sig.stdout + sig.stderr, /verify OK/);
    assert.ok(sig.stdout.toUpperCase().includes(before1.toUpperCase()), 'the certificate revoked after the rotation is on it');
    const revokedLeaf = verify(p('before', 'cert.pem'), inter, 'sslserver', ['-crl_check', '-CRLfile', crl]);
    assert.notEqual(revokedLeaf.status, 0);
    assert.match(revokedLeaf.stdout + revokedLeaf.stderr, /certificate revoked/);
    const goodLeaf = verify(p('after', 'cert.pem'), inter, 'sslserver', ['-crl_check', '-CRLfile', crl]);
    assert.equal(goodLeaf.status, 0, goodLeaf.stdout + goodLeaf.stderr);
    // OCSP: what the retired key issued is answered, not refused as unauthorized.
    const ocsp = (leaf: string) => runAsync('openssl', ['ocsp', '-url', `${srv.url}/ocsp`, '-issuer', inter, '-cert', leaf, '-CAfile', ca('root.pem')]);
    const revoked = await ocsp(p('before', 'cert.pem'));
    assert.match(revoked.stdout, /: revoked/, revoked.stdout + revoked.stderr);
    assert.match(revoked.stdout + revoked.stderr, /Response verify OK/);
    const good = await ocsp(p('after', 'cert.pem'));
    assert.match(good.stdout, /: good/, good.stdout + good.stderr);
    // The current intermediate is still served under the plain name.
    const current = await get('/ca/server.pem', 'current.pem');
    assert.ok(x509(current).publicKey.export({ type: 'spki', format: 'der' }).equals(spki(p('new2.pem'))));
    // Under their keys' names, the ones certificates carry in their CRL DP and AIA, each serves its
    // own: what the old key issued leads to the old key's CRL, not to the new one's.
    const oldKeyed = authority.keyedName(authority.retired[0]);
    const newKeyed = authority.keyedName(authority.server);
    assert.match(oldKeyed, /^server\.[0-9a-f]{16}$/);
    assert.notEqual(oldKeyed, newKeyed);
    assert.ok(fs.readFileSync(await get(`/crl/${oldKeyed}.pem`, 'old-keyed.crl.pem')).equals(fs.readFileSync(crl)));
    assert.ok(fs.readFileSync(await get(`/ca/${oldKeyed}.pem`, 'old-keyed.pem')).equals(fs.readFileSync(inter)));
    assert.ok(fs.readFileSync(await get(`/crl/${newKeyed}.pem`, 'new-keyed.crl.pem')).equals(fs.readFileSync(await get('/crl/server.pem', 'current.crl.pem'))));
    assert.ok(fs.readFileSync(await get(`/ca/${newKeyed}.pem`, 'new-keyed.pem')).equals(fs.readFileSync(current)));
    const missing = await runAsync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', ca('root.pem'), `${srv.url}/crl/server.0123456789abcdef.crl`]);
    assert.equal(missing.stdout, '404', 'an unknown key id is not found');
  } finally {
    await srv.close();
    await authority.close();
  }
});

test('ok/offline crl --revoke puts the old intermediate on the root CRL', skipNoOpenssl, async () => {
  const oldSerial = x509(p('new.pem')).serialNumber;
  const r = await cli(['offline', 'crl', '--revoke', p('new.pem'), ...offlineDir]);
  expectOk(r);
  assert.ok(fs.readFileSync(ca('root.crl')).equals(fs.readFileSync(path.join(offline, 'root.crl'))), 'the root CRL was copied to the state folder');
  const printed = await cli(['crl', '--issuer', 'root']);
  expectOk(printed);
  fs.writeFileSync(p('root.crl.pem'), printed.stdout);
  const text = openssl(['crl', '-in', p('root.crl.pem'), '-noout', '-text']);
  assert.equal(text.status, 0, text.stderr);
  assert.ok(text.stdout.includes(oldSerial), `${oldSerial} not in\n${text.stdout}`);
  assert.ok(!text.stdout.includes(x509(p('new2.pem')).serialNumber), 'the current intermediate is not revoked');
  assert.match(text.stdout, /Cessation Of Operation/);
  assert.match(text.stdout, /CRL Number: *\n *2\b/);
  const sig = openssl(['crl', '-in', p('root.crl.pem'), '-CAfile', ca('root.pem'), '-noout']);
  assert.match(sig.stdout + sig.stderr, /verify OK/);

  // With the root CRL, a chain through the revoked intermediate fails; through the current one it passes.
  const serverCrl = await cli(['crl', '--issuer', 'server']);
  expectOk(serverCrl);
  fs.writeFileSync(p('server.crl.pem'), serverCrl.stdout);
  const withCrls = ['-crl_check_all', '-CRLfile', p('root.crl.pem'), '-CRLfile', p('server.crl.pem')];
  const current = verify(p('rotated', 'cert.pem'), p('new2.pem'), 'sslserver', withCrls);
  assert.equal(current.status, 0, current.stdout + current.stderr);

  const again = await cli(['--json', 'offline', 'crl', '--revoke', p('new.pem'), ...offlineDir]);
  expectError(again, 3, 'CERT_ALREADY_REVOKED');
});

test('fail/installing a certificate that is not the right intermediate', skipNoOpenssl, async (t) => {
  // A root of our own with the same name as the CA's, signing the server CA's CSR as a server CA.
  const ext = p('ca.ext');
  fs.writeFileSync(ext, 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nextendedKeyUsage=serverAuth\n');
  const run = (args: string[]) => {
    const r = openssl(args);
    assert.equal(r.status, 0, `openssl ${args.join(' ')}\n${r.stderr}`);
  };
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('fake-root.key'), '-out', p('fake-root.pem'),
    '-subj', '/O=Acme/CN=Acme Root CA', '-days', '30']);
  expectOk(await cli(['intermediate', 'csr', '--role', 'server', '--out', p('req3.csr')]));
  run(['x509', '-req', '-in', p('req3.csr'), '-CA', p('fake-root.pem'), '-CAkey', p('fake-root.key'), '-CAcreateserial', '-extfile', ext, '-days', '30', '-out', p('forged.pem')]);
  // A root-signed server CA for a key that is neither the current nor the next one.
  run(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('stranger.key'), '-out', p('stranger.csr'), '-subj', '/CN=Stranger CA']);
  expectOk(await cli(['offline', 'sign-intermediate', p('stranger.csr'), '--role', 'server', ...offlineDir, '--out', p('stranger.pem')]));

  const installed = sha256(ca('server-ca.pem'));
  const cases = [
    { name: 'fail/install: signed by another root with the same name', file: p('forged.pem'), role: 'server', code: 'CERT_WRONG_ISSUER' },
    { name: 'fail/install: a leaf certificate', file: p('rotated', 'cert.pem'), role: 'server', code: 'CERT_WRONG_ISSUER' },
    { name: 'fail/install: the client CA as --role server', file: ca('client-ca.pem'), role: 'server', code: 'CERT_WRONG_EKU' },
    { name: 'fail/install: the server CA as --role client', file: p('new2.pem'), role: 'client', code: 'CERT_WRONG_EKU' },
    { name: 'fail/install: root-signed, but for a stranger\'s key', file: p('stranger.pem'), role: 'server', code: 'KEY_MISMATCH' },
  ];
  const clientBefore = sha256(ca('client-ca.pem'));
  const results = await Promise.all(cases.map((c) => cli(['--json', 'intermediate', 'install', c.file, '--role', c.role])));
  for (const [i, c] of cases.entries()) {
    await t.test(c.name, () => {
      assert.equal(results[i].status, 3, explain(results[i]));
      assert.equal(errorCode(results[i]), c.code, explain(results[i]));
    });
  }
  assert.equal(sha256(ca('server-ca.pem')), installed, 'the installed server CA is unchanged');
  assert.equal(sha256(ca('client-ca.pem')), clientBefore, 'the installed client CA is unchanged');
});

test('fail/offline commands', async (t) => {
  const cases = [
    { name: 'fail/offline sign-intermediate: wrong root passphrase', args: ['offline', 'sign-intermediate', p('req.csr'), '--role', 'server', ...offlineDir, '--out', p('x1.pem')], o: { passphrase: WRONG_PASSPHRASE }, exit: 4, code: 'KEY_PASSPHRASE_WRONG', out: p('x1.pem') },
    { name: 'fail/offline sign-intermediate: no offline folder', args: ['offline', 'sign-intermediate', p('req.csr'), '--role', 'server', '--offline-dir', p('nowhere'), '--out', p('x2.pem')], o: {}, exit: 4, code: 'KEY_FILE_MISSING', out: p('x2.pem') },
    { name: 'fail/offline sign-intermediate: a certificate instead of a CSR', args: ['offline', 'sign-intermediate', p('new.pem'), '--role', 'server', ...offlineDir, '--out', p('x3.pem')], o: {}, exit: 3, code: 'PEM_WRONG_TYPE', out: p('x3.pem') },
    { name: 'fail/offline crl --revoke a leaf', args: ['offline', 'crl', '--revoke', p('rotated', 'cert.pem'), ...offlineDir], o: {}, exit: 3, code: 'CERT_WRONG_ISSUER' },
  ];
  const state = sha256(path.join(offline, 'root-state.json'));
  const results = await Promise.all(cases.map((c) => cli(['--json', ...c.args], c.o)));
  for (const [i, c] of cases.entries()) {
    await t.test(c.name, () => {
      expectError(results[i], c.exit, c.code);
      if (c.out) assert.ok(!fs.existsSync(c.out), `${c.out} was written`);
    });
  }
  assert.equal(sha256(path.join(offline, 'root-state.json')), state, 'the root CRL state is unchanged');
});

test('ok/after a client CA key rotation, what the old key issued still works: the admin certificate, and renewal', skipNoOpenssl, async () => {
  expectOk(await cli(['issue', 'client', 'payments', '--env', 'prod', '--out', p('payments')]));
  expectOk(await cli(['intermediate', 'csr', '--role', 'client', '--new-key', '--out', p('client.csr')]));
  expectOk(await cli(['offline', 'sign-intermediate', p('client.csr'), '--role', 'client', ...offlineDir, '--out', p('client-new.pem')]));
  expectOk(await cli(['intermediate', 'install', p('client-new.pem'), '--role', 'client']));
  const authority = await openAuthority({ home, passphrase: TEST_PASSPHRASE });
  const srv = await startCaServer({ ca: authority, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), rateLimit: false });
  try {
    assert.ok(authority.retired.some((r) => r.role === 'client-ca'), 'the old client CA is retired, not gone');
    // The leaf alone, no chain: the server must know the retired intermediate itself.
    // `mutual init` encrypts the admin key, with the CA passphrase unless given another.
    const admin = ['--cert', path.join(home, 'admin', 'cert.pem'), '--key', path.join(home, 'admin', 'key.pem'), '--pass', TEST_PASSPHRASE];
    const call = (args: string[], file: string) =>
      runAsync('curl', ['-sS', '-o', p(file), '-w', '%{http_code}', '--cacert', ca('root.pem'), ...args]);
    const list = await call([...admin, `${srv.url}/v1/certificates?limit=1`], 'list.json');
    assert.equal(list.stdout, '200', fs.readFileSync(p('list.json'), 'utf8'));
    const renewed = await call(['--cert', p('payments', 'cert.pem'), '--key', p('payments', 'key.pem'), '-X', 'POST', '-H', 'content-type: application/json', '-d', '{}', `${srv.url}/v1/renew`], 'renewed.json');
    assert.equal(renewed.stdout, '201', fs.readFileSync(p('renewed.json'), 'utf8'));
    fs.writeFileSync(p('renewed.pem'), JSON.parse(fs.readFileSync(p('renewed.json'), 'utf8')).certificate);
    const v = verify(p('renewed.pem'), p('client-new.pem'), 'sslclient');
    assert.equal(v.status, 0, 'the renewed certificate comes from the new key\n' + v.stdout + v.stderr);
    // What a relying party such as nginx needs to accept both keys' certificates and check their
    // revocation: every valid client intermediate, and their CRLs.
    assert.equal((await call([`${srv.url}/ca/client.all.pem`], 'client-all.pem')).stdout, '200');
    assert.equal((await call([`${srv.url}/crl/client.all.pem`], 'client-crls.pem')).stdout, '200');
    const allCas = fs.readFileSync(p('client-all.pem'), 'utf8').match(/-----BEGIN CERTIFICATE-----/g) ?? [];
    assert.equal(allCas.length, 2, 'the new client CA and the retired one');
    assert.ok(fs.readFileSync(p('client-all.pem'), 'utf8').startsWith(fs.readFileSync(p('client-new.pem'), 'utf8')), 'the current one first');
    assert.equal((fs.readFileSync(p('client-crls.pem'), 'utf8').match(/-----BEGIN X509 CRL-----/g) ?? []).length, 2);
    expectOk(await cli(['revoke', p('payments', 'cert.pem'), '--reason', 'superseded']));
    const check = (leaf: string) => openssl(['verify', '-x509_strict', '-purpose', 'sslclient', '-crl_check_all', '-CRLfile', p('client-crls.pem'), '-CRLfile', ca('root.crl'), '-CAfile', ca('root.pem'), '-untrusted', p('client-all.pem'), leaf]);
    // The server rebuilds the retired CRL within about a second of the revocation.
    let revoked = check(p('payments', 'cert.pem'));
    for (let i = 0; i < 50 && revoked.status === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      await call([`${srv.url}/crl/client.all.pem`], 'client-crls.pem');
      revoked = check(p('payments', 'cert.pem'));
    }
    assert.notEqual(revoked.status, 0);
    assert.match(revoked.stdout + revoked.stderr, /certificate revoked/, 'the old key\'s certificate is checked against the old key\'s CRL');
    const good = check(p('renewed.pem'));
    assert.equal(good.status, 0, 'the new key\'s certificate, with every CRL\n' + good.stdout + good.stderr);
    const admin2 = check(path.join(home, 'admin', 'cert.pem'));
    assert.equal(admin2.status, 0, 'an unrevoked certificate of the old key passes\n' + admin2.stdout + admin2.stderr);
  } finally {
    await srv.close();
    await authority.close();
  }
});

test('ok/widening the permitted names: config.yaml alone is refused with a detail that says what to re-sign; after re-signing OpenSSL verifies', skipNoOpenssl, async () => {
  const config = path.join(home, 'config.yaml');
  fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace(/permitIp: \[\]/, 'permitIp: ["10.0.0.0/8"]'));
  const refused = await cli(['--json', 'issue', 'server', 'wide.acme.internal', '--ip', '10.0.0.5', '--out', p('wide')]);
  expectError(refused, 3, 'POLICY_NAME_NOT_ALLOWED');
  assert.match(refused.stderr + refused.stdout, /config\.yaml permits it, but the server-ca certificate's name constraints do not/);
  assert.ok(!fs.existsSync(p('wide')), 'nothing written');
  expectOk(await cli(['intermediate', 'csr', '--role', 'server', '--out', p('wide.csr')]));
  expectOk(await cli(['offline', 'sign-intermediate', p('wide.csr'), '--role', 'server', ...offlineDir, '--out', p('wide-ca.pem')]));
  expectOk(await cli(['intermediate', 'install', p('wide-ca.pem'), '--role', 'server']));
  expectOk(await cli(['issue', 'server', 'wide.acme.internal', '--ip', '10.0.0.5', '--out', p('wide')]));
  const v = verify(p('wide', 'cert.pem'), ca('server-ca.pem'));
  assert.equal(v.status, 0, v.stdout + v.stderr);
  // Still constrained: a range config.yaml does not name.
  expectError(await cli(['--json', 'issue', 'server', 'wide.acme.internal', '--ip', '192.168.1.1', '--out', p('wide2')]), 3, 'POLICY_NAME_NOT_ALLOWED');
});

test('ok/no output contains a passphrase or a private key', () => {
  assert.deepEqual(leaks(), []);
});
