/**
 * CLI behaviour and exit codes: every command of issue 3's usage block run as a real subprocess
 * against one CA made by `mutual init`, with OpenSSL judging the artefacts.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { openssl, requireTool } from '../helpers/tools.ts';
import { tempDir, TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { errorCode, explain, json, leaks, mode, mutual, P12_PASSWORD, sha256, walk, WRONG_PASSPHRASE, type CliResult } from './cli-helper.ts';

const dir = tempDir('mutual-cli-commands-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const home = path.join(dir, 'home');
const offline = path.join(dir, 'offline');
const rootPem = path.join(home, 'ca', 'root.pem');
const p = (...parts: string[]) => path.join(dir, ...parts);
/** `mutual --home <home> ...args` */
const cli = (args: string[], o: Parameters<typeof mutual>[1] = {}) => mutual(['--home', home, ...args], o);

function expectOk(r: CliResult): void {
  assert.equal(r.status, 0, explain(r));
}
/** A failed `--json` run: exit code and error code. */
function expectError(r: CliResult, exit: number, code: string): void {
  assert.equal(r.status, exit, explain(r));
  assert.equal(errorCode(r), code, explain(r));
}
const opensslOk = (args: string[]) => {
  const r = openssl(args);
  assert.equal(r.status, 0, `openssl ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
  return r.stdout + r.stderr;
};
const serialOf = (certFile: string) => new crypto.X509Certificate(fs.readFileSync(certFile)).serialNumber.toLowerCase();

// Serials issued along the way, shared by the later tests.
const serials: Record<string, string> = {};

test('ok/init builds the hierarchy, keeps the root key out of the state folder', async () => {
  const r = await cli(['init', '--trust-domain', 'acme.internal', '--name', 'Acme', '--offline-dir', offline]);
  expectOk(r);
  assert.ok(r.stdout.includes(offline), `the output names the offline folder\n${r.stdout}`);

  for (const d of [home, path.join(home, 'keys'), path.join(home, 'admin'), offline]) assert.equal(mode(d), 0o700, d);
  const keyFiles = [path.join(home, 'keys', 'server-ca.key.pem'), path.join(home, 'keys', 'client-ca.key.pem'), path.join(home, 'keys', 'token.key.pem'), path.join(home, 'admin', 'key.pem'), path.join(offline, 'root.key.pem')];
  for (const f of keyFiles) assert.equal(mode(f), 0o600, f);
  assert.equal(mode(path.join(home, 'config.yaml')), 0o600);

  // The only private keys under home: the two intermediates and the token signing key (encrypted) and the admin's leaf key.
  const withKeys = walk(home).filter((f) => fs.readFileSync(f).includes('PRIVATE KEY')).map((f) => path.relative(home, f)).sort();
  assert.deepEqual(withKeys, ['admin/key.pem', 'keys/client-ca.key.pem', 'keys/server-ca.key.pem', 'keys/token.key.pem']);
  // The CA keys are encrypted: unreadable without the passphrase, readable with it.
  for (const f of keyFiles.filter((f) => !f.endsWith('admin/key.pem'))) {
    assert.throws(() => crypto.createPrivateKey(fs.readFileSync(f)), f);
    assert.equal(crypto.createPrivateKey({ key: fs.readFileSync(f), passphrase: TEST_PASSPHRASE }).type, 'private');
  }

  // The root key in the offline folder belongs to the root certificate.
  const rootKey = crypto.createPrivateKey({ key: fs.readFileSync(path.join(offline, 'root.key.pem')), passphrase: TEST_PASSPHRASE });
  const rootCert = new crypto.X509Certificate(fs.readFileSync(rootPem));
  assert.ok(crypto.createPublicKey(rootKey).export({ type: 'spki', format: 'der' }).equals(rootCert.publicKey.export({ type: 'spki', format: 'der' })));

  // No passphrase anywhere in the state folder (config, database, PEM files).
  const config = fs.readFileSync(path.join(home, 'config.yaml'), 'utf8');
  assert.ok(!config.includes(TEST_PASSPHRASE));
  for (const f of walk(home)) assert.ok(!fs.readFileSync(f).includes(TEST_PASSPHRASE), `${f} holds the passphrase`);
});

test('ok/openssl reads the encrypted CA keys with the passphrase', (t) => {
  if (!requireTool(t, 'openssl')) return;
  for (const f of [path.join(home, 'keys', 'server-ca.key.pem'), path.join(offline, 'root.key.pem')]) {
    opensslOk(['pkey', '-in', f, '-passin', `pass:${TEST_PASSPHRASE}`, '-noout']);
    assert.notEqual(openssl(['pkey', '-in', f, '-passin', 'pass:not-the-passphrase', '-noout']).status, 0);
  }
});

test('ok/init without --offline-dir puts the root key beside the state folder', async () => {
  const home2 = p('second', 'state');
  const r = await mutual(['--json', '--home', home2, 'init', '--trust-domain', 'beta.internal']);
  expectOk(r);
  const want = p('second', 'state-offline');
  assert.equal(json(r).offlineDir, want);
  assert.ok(fs.existsSync(path.join(want, 'root.key.pem')));
  assert.ok(!walk(home2).some((f) => path.basename(f).startsWith('root.key')));
});

test('fail/init twice', async (t) => {
  const cases = [
    { name: 'fail/init: same state folder', args: ['--json', '--home', home, 'init', '--trust-domain', 'acme.internal', '--offline-dir', p('offline-other')], fresh: p('offline-other') },
    { name: 'fail/init: same offline folder', args: ['--json', '--home', p('home-other'), 'init', '--trust-domain', 'acme.internal', '--offline-dir', offline], fresh: p('home-other') },
  ];
  const before = sha256(path.join(offline, 'root.key.pem'));
  const results = await Promise.all(cases.map((c) => mutual(c.args)));
  for (const [i, c] of cases.entries()) {
    await t.test(c.name, () => {
      expectError(results[i], 3, 'CA_ALREADY_INITIALIZED');
      assert.ok(!fs.existsSync(c.fresh), `${c.fresh} was created`);
    });
  }
  assert.equal(sha256(path.join(offline, 'root.key.pem')), before);
});

test('ok/issue server: files, modes, and OpenSSL verifies it as a server certificate', async (t) => {
  const out = p('api');
  const r = await cli(['--json', 'issue', 'server', 'api.acme.internal', '--ip', '127.0.0.1', '--out', out]);
  expectOk(r);
  const j = json(r);
  serials.api = j.serial;
  for (const f of ['cert.pem', 'key.pem', 'chain.pem', 'fullchain.pem']) assert.ok(fs.existsSync(path.join(out, f)), f);
  assert.ok(!fs.existsSync(path.join(out, 'bundle.p12')));
  assert.equal(mode(path.join(out, 'key.pem')), 0o600);
  assert.equal(serialOf(path.join(out, 'cert.pem')), j.serial);
  assert.equal(fs.readFileSync(path.join(out, 'chain.pem'), 'utf8'), fs.readFileSync(path.join(home, 'ca', 'server-ca.pem'), 'utf8'));
  assert.equal(fs.readFileSync(path.join(out, 'fullchain.pem'), 'utf8'), fs.readFileSync(path.join(out, 'cert.pem'), 'utf8') + fs.readFileSync(path.join(out, 'chain.pem'), 'utf8'));
  // The key belongs to the certificate.
  const key = crypto.createPrivateKey(fs.readFileSync(path.join(out, 'key.pem')));
  assert.ok(new crypto.X509Certificate(fs.readFileSync(path.join(out, 'cert.pem'))).checkPrivateKey(key));

  if (!requireTool(t, 'openssl')) return;
  const verify = (purpose: string) => openssl(['verify', '-x509_strict', '-purpose', purpose, '-CAfile', rootPem, '-untrusted', path.join(out, 'chain.pem'), path.join(out, 'cert.pem')]);
  const ok = verify('sslserver');
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /cert\.pem: OK/);
  assert.notEqual(verify('sslclient').status, 0, 'a server certificate must not verify as a client certificate');
  const san = opensslOk(['x509', '-in', path.join(out, 'cert.pem'), '-noout', '-ext', 'subjectAltName']);
  assert.match(san, /DNS:api\.acme\.internal/);
  assert.match(san, /IP Address:127\.0\.0\.1/);
});

test('fail/issue', async (t) => {
  const apiBefore = sha256(p('api', 'cert.pem'));
  const cases = [
    { name: 'fail/issue: --out already holds a key', args: ['issue', 'server', 'api.acme.internal', '--out', p('api')], exit: 3, code: 'OUTPUT_EXISTS', out: undefined },
    { name: 'fail/issue: name outside the trust domain', args: ['issue', 'server', 'evil.example.com', '--out', p('evil')], exit: 3, code: 'POLICY_NAME_NOT_ALLOWED', out: p('evil') },
    { name: 'fail/issue: identity of another trust domain', args: ['issue', 'client', 'spiffe://other.internal/prod/x', '--out', p('other-td')], exit: 3, code: 'POLICY_BAD_IDENTITY', out: p('other-td') },
    { name: 'fail/issue: lifetime over the profile maximum', args: ['issue', 'server', 'long.acme.internal', '--days', '5000', '--out', p('long')], exit: 3, code: 'POLICY_VALIDITY_TOO_LONG', out: p('long') },
    { name: 'fail/issue: --ttl over the profile maximum', args: ['issue', 'server', 'long.acme.internal', '--ttl', '398d', '--out', p('long')], exit: 3, code: 'POLICY_VALIDITY_TOO_LONG', out: p('long') },
    { name: 'fail/issue: --ttl under 5 minutes', args: ['issue', 'client', 'brief', '--ttl', '299s', '--out', p('brief')], exit: 3, code: 'POLICY_VALIDITY_TOO_SHORT', out: p('brief') },
  ];
  const results = await Promise.all(cases.map((c) => cli(['--json', ...c.args])));
  for (const [i, c] of cases.entries()) {
    await t.test(c.name, () => {
      expectError(results[i], c.exit, c.code);
      if (c.out) assert.ok(!fs.existsSync(c.out), `${c.out} was written`);
    });
  }
  assert.equal(sha256(p('api', 'cert.pem')), apiBefore, 'the existing certificate was replaced');
});

test('ok/issue client --p12: SPIFFE identity, PKCS#12 that OpenSSL opens', async (t) => {
  const out = p('payments');
  const r = await cli(['--json', 'issue', 'client', 'payments', '--env', 'prod', '--out', out, '--p12']);
  expectOk(r);
  const j = json(r);
  serials.payments = j.serial;
  assert.equal(j.identity, 'spiffe://acme.internal/prod/payments');
  for (const f of ['key.pem', 'bundle.p12']) assert.equal(mode(path.join(out, f)), 0o600, f);
  const x = new crypto.X509Certificate(fs.readFileSync(path.join(out, 'cert.pem')));
  assert.equal(x.subjectAltName, 'URI:spiffe://acme.internal/prod/payments');
  assert.match(x.subject, /CN=payments/);

  if (!requireTool(t, 'openssl')) return;
  const p12 = path.join(out, 'bundle.p12');
  const info = opensslOk(['pkcs12', '-info', '-noout', '-in', p12, '-passin', `pass:${P12_PASSWORD}`]);
  assert.match(info, /PBES2/, 'PKCS#12 uses PBES2 (no RC2/3DES)');
  assert.notEqual(openssl(['pkcs12', '-info', '-noout', '-in', p12, '-passin', 'pass:wrong-password']).status, 0);
  // The certificate inside is the one on disk.
  const inside = opensslOk(['pkcs12', '-in', p12, '-passin', `pass:${P12_PASSWORD}`, '-nokeys', '-clcerts']);
  assert.equal(new crypto.X509Certificate(inside.slice(inside.indexOf('-----BEGIN CERTIFICATE-----'))).fingerprint256, x.fingerprint256);
  const verify = (purpose: string) => openssl(['verify', '-x509_strict', '-purpose', purpose, '-CAfile', rootPem, '-untrusted', path.join(out, 'chain.pem'), path.join(out, 'cert.pem')]);
  assert.equal(verify('sslclient').status, 0);
  assert.notEqual(verify('sslserver').status, 0, 'a client certificate must not verify as a server certificate');
});

test('ok/sign CSRs made by OpenSSL', async (t) => {
  if (!requireTool(t, 'openssl')) return;
  // A client CSR (PEM) and a server CSR (DER); the requester keeps the keys.
  opensslOk(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('billing.key'), '-out', p('billing.csr'),
    '-subj', '/CN=billing', '-addext', 'subjectAltName=URI:spiffe://acme.internal/prod/billing']);
  opensslOk(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('web.key'), '-outform', 'DER', '-out', p('web.csr.der'),
    '-subj', '/CN=web.acme.internal', '-addext', 'subjectAltName=DNS:web.acme.internal']);
  const [client, server] = await Promise.all([
    cli(['--json', 'sign', p('billing.csr'), '--profile', 'client']),
    cli(['sign', p('web.csr.der'), '--profile', 'server', '--out', p('web.pem')]),
  ]);
  await t.test('ok/sign --profile client (PEM CSR, --json)', () => {
    expectOk(client);
    const j = json(client);
    serials.billing = j.serial;
    fs.writeFileSync(p('billing.pem'), j.certificate);
    const x = new crypto.X509Certificate(j.certificate);
    assert.equal(x.serialNumber.toLowerCase(), j.serial);
    assert.equal(x.subjectAltName, 'URI:spiffe://acme.internal/prod/billing');
    assert.ok(x.checkPrivateKey(crypto.createPrivateKey(fs.readFileSync(p('billing.key')))), 'the certificate carries the CSR key');
    const v = openssl(['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', rootPem, '-untrusted', path.join(home, 'ca', 'client-ca.pem'), p('billing.pem')]);
    assert.equal(v.status, 0, v.stdout + v.stderr);
  });
  await t.test('ok/sign --profile server (DER CSR, --out)', () => {
    expectOk(server);
    const x = new crypto.X509Certificate(fs.readFileSync(p('web.pem')));
    serials.web = x.serialNumber.toLowerCase();
    assert.ok(server.stdout.includes(serials.web));
    assert.ok(x.checkPrivateKey(crypto.createPrivateKey(fs.readFileSync(p('web.key')))));
    const v = openssl(['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', rootPem, '-untrusted', path.join(home, 'ca', 'server-ca.pem'), p('web.pem')]);
    assert.equal(v.status, 0, v.stdout + v.stderr);
  });
});

test('ok/revoke by serial and by certificate file', async (t) => {
  await t.test('ok/revoke <serial>', async () => {
    const r = await cli(['--json', 'revoke', serials.billing]);
    expectOk(r);
    assert.equal(json(r).serial, serials.billing);
    assert.equal(json(r).reason, 'unspecified');
  });
  await t.test('ok/revoke cert.pem --reason keyCompromise', async () => {
    const r = await cli(['--json', 'revoke', p('api', 'cert.pem'), '--reason', 'keyCompromise']);
    expectOk(r);
    assert.equal(json(r).serial, serials.api);
    assert.equal(json(r).reason, 'keyCompromise');
  });
  await t.test('ok/revoke an OpenSSL-style serial (upper case, colons)', async () => {
    const colons = serials.web.toUpperCase().match(/../g)!.join(':');
    const r = await cli(['--json', 'revoke', colons, '--reason', 'superseded']);
    expectOk(r);
    assert.equal(json(r).serial, serials.web);
  });
  const cases = [
    { name: 'fail/revoke: already revoked', args: ['revoke', serials.api], exit: 3, code: 'CERT_ALREADY_REVOKED' },
    { name: 'fail/revoke: unknown serial', args: ['revoke', 'abcdef0123456789'], exit: 3, code: 'CERT_NOT_FOUND' },
    { name: 'fail/revoke: not a serial nor a file', args: ['revoke', 'no-such-file.pem'], exit: 3, code: 'SERIAL_INVALID' },
  ];
  const results = await Promise.all(cases.map((c) => cli(['--json', ...c.args])));
  for (const [i, c] of cases.entries()) await t.test(c.name, () => expectError(results[i], c.exit, c.code));
});

test('ok/crl: OpenSSL parses and verifies the CRLs, and rejects the revoked certificates with them', async (t) => {
  if (!requireTool(t, 'openssl')) return;
  const [client, server, root, rootDer] = await Promise.all([
    cli(['crl', '--issuer', 'client', '--out', p('client.crl')]),
    cli(['crl', '--issuer', 'server']),
    cli(['crl', '--issuer', 'root']),
    cli(['crl', '--issuer', 'root', '--out', p('root.crl')]),
  ]);
  for (const r of [client, server, root, rootDer]) expectOk(r);
  fs.writeFileSync(p('server.crl.pem'), server.stdout);
  fs.writeFileSync(p('root.crl.pem'), root.stdout);
  assert.match(server.stdout, /^-----BEGIN X509 CRL-----\n/);
  assert.equal(fs.readFileSync(p('client.crl'))[0], 0x30, '--out x.crl writes DER');

  await t.test('ok/crl --issuer client --out f.crl lists the revoked serial', () => {
    const text = opensslOk(['crl', '-inform', 'DER', '-in', p('client.crl'), '-noout', '-text']);
    assert.ok(text.includes(serials.billing.toUpperCase()), text);
    assert.ok(!text.includes(serials.payments.toUpperCase()), 'a valid certificate is not on the CRL');
    assert.match(text, /CRL Number/);
    assert.match(opensslOk(['crl', '-inform', 'DER', '-in', p('client.crl'), '-CAfile', path.join(home, 'ca', 'client-ca.pem'), '-noout']), /verify OK/);
  });
  await t.test('ok/crl --issuer server (PEM on stdout) lists both revoked server certificates', () => {
    const text = opensslOk(['crl', '-in', p('server.crl.pem'), '-noout', '-text']);
    for (const s of [serials.api, serials.web]) assert.ok(text.includes(s.toUpperCase()), s);
    assert.match(text, /Key Compromise/);
  });
  await t.test('ok/crl --issuer root', () => {
    const text = opensslOk(['crl', '-in', p('root.crl.pem'), '-noout', '-text']);
    assert.match(text, /Issuer: .*CN ?= ?Acme Root CA/);
    assert.match(opensslOk(['crl', '-in', p('root.crl.pem'), '-CAfile', rootPem, '-noout']), /verify OK/);
    assert.ok(fs.readFileSync(p('root.crl')).equals(fs.readFileSync(path.join(home, 'ca', 'root.crl'))));
  });
  await t.test('ok/openssl verify -crl_check_all: revoked detected, valid passes', () => {
    const check = (cert: string, chain: string, purpose: string, crl: string) => openssl(['verify', '-x509_strict', '-purpose', purpose, '-crl_check_all',
      '-CAfile', rootPem, '-untrusted', chain, '-CRLfile', crl, '-CRLfile', p('root.crl.pem'), cert]);
    const clientCrlPem = p('client.crl.pem');
    opensslOk(['crl', '-inform', 'DER', '-in', p('client.crl'), '-out', clientCrlPem]);
    const revoked = check(p('api', 'cert.pem'), p('api', 'chain.pem'), 'sslserver', p('server.crl.pem'));
    assert.notEqual(revoked.status, 0);
    assert.match(revoked.stdout + revoked.stderr, /revoked/);
    const revokedClient = check(p('billing.pem'), path.join(home, 'ca', 'client-ca.pem'), 'sslclient', clientCrlPem);
    assert.notEqual(revokedClient.status, 0);
    const valid = check(p('payments', 'cert.pem'), p('payments', 'chain.pem'), 'sslclient', clientCrlPem);
    assert.equal(valid.status, 0, valid.stdout + valid.stderr);
  });
});

test('ok/list', async (t) => {
  const short = await cli(['--json', 'issue', 'server', 'short.acme.internal', '--days', '10', '--out', p('short')]);
  expectOk(short);
  serials.short = json(short).serial;
  const [all, revoked, in30, in100, text] = await Promise.all([
    cli(['--json', 'list']),
    cli(['--json', 'list', '--status', 'revoked']),
    cli(['--json', 'list', '--expiring', '30d']),
    cli(['--json', 'list', '--expiring', '100d']),
    cli(['list']),
  ]);
  const ser = (r: CliResult) => (json(r) as { serial: string }[]).map((c) => c.serial).sort();
  await t.test('ok/list --json lists every certificate with its status', () => {
    expectOk(all);
    const rows = json(all) as { serial: string; role: string; status: string; identity?: string }[];
    const want = [serials.api, serials.payments, serials.billing, serials.web, serials.short];
    for (const s of want) assert.ok(rows.some((r) => r.serial === s), s);
    assert.ok(rows.some((r) => r.identity === 'spiffe://acme.internal/admin/admin'), 'the admin certificate from init');
    assert.equal(rows.find((r) => r.serial === serials.api)!.status, 'revoked');
    assert.equal(rows.find((r) => r.serial === serials.payments)!.status, 'valid');
    assert.equal(rows.find((r) => r.serial === serials.payments)!.role, 'client');
  });
  await t.test('ok/list --status revoked', () => {
    expectOk(revoked);
    assert.deepEqual(ser(revoked), [serials.api, serials.billing, serials.web].sort());
  });
  await t.test('ok/list --expiring 30d vs 100d', () => {
    expectOk(in30);
    expectOk(in100);
    assert.deepEqual(ser(in30), [serials.short]);
    assert.deepEqual(ser(in100), ser(all));
  });
  await t.test('ok/list (text)', () => {
    expectOk(text);
    for (const s of [serials.api, serials.short]) assert.ok(text.stdout.includes(s), s);
  });
});

test('ok/inspect shows the inventory status', async (t) => {
  const [revokedText, revokedJson, validJson] = await Promise.all([
    cli(['inspect', p('api', 'cert.pem')]),
    cli(['--json', 'inspect', p('api', 'cert.pem')]),
    cli(['--json', 'inspect', p('payments', 'cert.pem')]),
  ]);
  await t.test('ok/inspect (text) of a revoked certificate', () => {
    expectOk(revokedText);
    assert.ok(revokedText.stdout.includes(serials.api));
    assert.match(revokedText.stdout, /revoked/);
    assert.match(revokedText.stdout, /api\.acme\.internal/);
  });
  await t.test('ok/inspect --json of a revoked certificate', () => {
    expectOk(revokedJson);
    const j = json(revokedJson);
    assert.equal(j.serial, serials.api);
    assert.equal(j.role, 'server');
    assert.deepEqual(j.names.dns, ['api.acme.internal']);
    assert.match(j.status, /^revoked/);
    assert.match(j.status, /keyCompromise/);
  });
  await t.test('ok/inspect --json of a valid client certificate', () => {
    expectOk(validJson);
    const j = json(validJson);
    assert.equal(j.identity, 'spiffe://acme.internal/prod/payments');
    assert.equal(j.role, 'client');
    assert.match(j.status, /^valid/);
  });
});

test('ok/bundle prints the CA certificates', async (t) => {
  const which = ['root', 'server', 'client', 'all'] as const;
  const results = await Promise.all(which.map((w) => cli(['bundle', w])));
  const file = (n: string) => fs.readFileSync(path.join(home, 'ca', n), 'utf8');
  const want = { root: file('root.pem'), server: file('server-ca.pem'), client: file('client-ca.pem'), all: file('root.pem') + file('server-ca.pem') + file('client-ca.pem') };
  for (const [i, w] of which.entries()) {
    await t.test(`ok/bundle ${w}`, () => {
      expectOk(results[i]);
      assert.equal(results[i].stdout, want[w]);
    });
  }
});

test('audit verify', async (t) => {
  await t.test('ok/audit verify on the untouched log', async () => {
    const r = await cli(['--json', 'audit', 'verify']);
    expectOk(r);
    // init: the admin certificate and the init entry; then one entry per issuance and revocation.
    assert.equal(json(r).entries, 2 + Object.keys(serials).length + 3);
  });
  // Each tampering on its own copy of the state folder.
  const cases: { name: string; sql: string }[] = [
    { name: 'fail/audit verify: an entry changed', sql: "UPDATE audit SET actor = 'mallory' WHERE seq = 3" },
    { name: 'fail/audit verify: an entry removed', sql: 'DELETE FROM audit WHERE seq = 2' },
    { name: 'fail/audit verify: details changed', sql: `UPDATE audit SET details = '{}' WHERE seq = 1` },
    { name: 'fail/audit verify: the last entry removed', sql: 'DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)' },
    { name: 'fail/audit verify: the whole log removed', sql: 'DELETE FROM audit' },
  ];
  const copies = cases.map((c, i) => {
    const copy = p(`tampered-${i}`);
    fs.cpSync(home, copy, { recursive: true });
    const db = new DatabaseSync(path.join(copy, 'mutual.db'));
    db.exec(c.sql);
    db.close();
    return copy;
  });
  const results = await Promise.all(copies.map((copy) => mutual(['--json', '--home', copy, 'audit', 'verify'])));
  for (const [i, c] of cases.entries()) await t.test(c.name, () => expectError(results[i], 4, 'AUDIT_TAMPERED'));
});

test('ok/concurrent commands on one CA (no "database is locked")', async () => {
  // One process closing (checkpointing the WAL) while another opens the database.
  const runs = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2
    ? cli(['--json', 'list', '--limit', '1'])
    : cli(['--json', 'issue', 'server', `busy${i}.acme.internal`, '--out', p(`busy${i}`)]))));
  for (const r of runs) assert.equal(r.status, 0, explain(r));
});

test('CA passphrase sources', async (t) => {
  const good = p('pass-good');
  fs.writeFileSync(good, TEST_PASSPHRASE + '\n', { mode: 0o600 });
  const open = p('pass-open');
  fs.writeFileSync(open, TEST_PASSPHRASE + '\n', { mode: 0o644 });
  fs.chmodSync(open, 0o644);
  const cases = [
    { name: 'ok/--passphrase-file (0600), no environment variable', args: ['--passphrase-file', good, 'issue', 'server', 'pf.acme.internal', '--out', p('pf')], o: { passphrase: null }, exit: 0, out: p('pf') },
    { name: 'fail/--passphrase-file readable by others', args: ['--passphrase-file', open, 'issue', 'server', 'po.acme.internal', '--out', p('po')], o: { passphrase: null }, exit: 4, code: 'KEY_FILE_INSECURE', out: p('po') },
    { name: 'fail/--passphrase-file missing', args: ['--passphrase-file', p('nope'), 'crl', '--issuer', 'server'], o: { passphrase: null }, exit: 4, code: 'KEY_PASSPHRASE_MISSING' },
    // A new session has no controlling terminal and stdin is /dev/null: nothing to prompt on.
    { name: 'fail/no passphrase and no terminal', args: ['issue', 'server', 'np.acme.internal', '--out', p('np')], o: { passphrase: null, detached: true }, exit: 4, code: 'KEY_PASSPHRASE_MISSING', out: p('np') },
    // The inventory is read without the CA keys (no 600,000-round key unlock on every listing).
    { name: 'ok/list needs no passphrase', args: ['list', '--all'], o: { passphrase: null, detached: true }, exit: 0 },
    { name: 'fail/empty MUTUAL_CA_PASSPHRASE counts as none', args: ['crl', '--issuer', 'server'], o: { passphrase: '', detached: true }, exit: 4, code: 'KEY_PASSPHRASE_MISSING' },
    { name: 'fail/wrong passphrase', args: ['issue', 'server', 'wp.acme.internal', '--out', p('wp')], o: { passphrase: WRONG_PASSPHRASE }, exit: 4, code: 'KEY_PASSPHRASE_WRONG', out: p('wp') },
  ];
  const results = await Promise.all(cases.map((c) => cli(['--json', ...c.args], c.o)));
  for (const [i, c] of cases.entries()) {
    await t.test(c.name, () => {
      if (c.exit === 0) {
        expectOk(results[i]);
        if (c.out) assert.ok(fs.existsSync(path.join(c.out, 'cert.pem')));
        else assert.ok(Array.isArray(JSON.parse(results[i].stdout)), 'the listing, as JSON');
      } else {
        expectError(results[i], c.exit, c.code!);
        if (c.out) assert.ok(!fs.existsSync(c.out), `${c.out} was written`);
      }
    });
  }
});

test('usage errors exit 2', async (t) => {
  const cases = [
    { name: 'fail/unknown command', args: ['frobnicate'] },
    { name: 'fail/unknown option', args: ['list', '--frobnicate'] },
    { name: 'fail/unknown global option', args: ['--frobnicate', 'list'] },
    { name: 'fail/no command', args: [] },
    { name: 'fail/missing required option (--out)', args: ['issue', 'server', 'x.acme.internal'] },
    { name: 'fail/missing argument', args: ['sign', '--profile', 'client'] },
    { name: 'fail/bad choice (--reason)', args: ['revoke', 'abcd', '--reason', 'boredom'] },
    { name: 'fail/bad choice (--profile)', args: ['sign', p('billing.csr'), '--profile', 'admin'] },
    { name: 'fail/missing --issuer', args: ['crl'] },
    { name: 'fail/bundle of an unknown CA', args: ['bundle', 'everything'] },
    { name: 'fail/bad duration (--expiring)', args: ['list', '--expiring', 'soon'] },
  ];
  const results = await Promise.all(cases.map((c) => cli(c.args)));
  for (const [i, c] of cases.entries()) await t.test(c.name, () => assert.equal(results[i].status, 2, explain(results[i])));
  await t.test('ok/--help exits 0', async () => {
    const r = await mutual(['--help']);
    expectOk(r);
    assert.match(r.stdout, /Usage: mutual/);
  });
});

test('no CA: CA_NOT_INITIALIZED, nothing created', async (t) => {
  const empty = p('empty', 'home');
  fs.mkdirSync(path.dirname(empty));
  const existing = p('empty', 'existing');
  fs.mkdirSync(existing, { mode: 0o700 });
  const cases = [
    { name: 'fail/list', args: ['--home', empty, 'list'] },
    { name: 'fail/issue server', args: ['--home', empty, 'issue', 'server', 'a.acme.internal', '--out', p('empty', 'out')] },
    { name: 'fail/issue client', args: ['--home', empty, 'issue', 'client', 'payments', '--out', p('empty', 'out')] },
    { name: 'fail/sign', args: ['--home', empty, 'sign', p('billing.csr'), '--profile', 'client'] },
    { name: 'fail/revoke', args: ['--home', empty, 'revoke', 'abcdef'] },
    { name: 'fail/crl --issuer client', args: ['--home', empty, 'crl', '--issuer', 'client'] },
    { name: 'fail/crl --issuer root', args: ['--home', empty, 'crl', '--issuer', 'root'] },
    { name: 'fail/bundle root', args: ['--home', empty, 'bundle', 'root'] },
    { name: 'fail/audit verify', args: ['--home', empty, 'audit', 'verify'] },
    { name: 'fail/audit verify in an existing folder', args: ['--home', existing, 'audit', 'verify'] },
    { name: 'fail/intermediate csr', args: ['--home', empty, 'intermediate', 'csr', '--role', 'server', '--out', p('empty', 'x.csr')] },
  ];
  const results = await Promise.all(cases.map((c) => mutual(['--json', ...c.args])));
  for (const [i, c] of cases.entries()) await t.test(c.name, () => expectError(results[i], 4, 'CA_NOT_INITIALIZED'));
  await t.test('ok/nothing was created', () => {
    assert.deepEqual(fs.readdirSync(p('empty')).sort(), ['existing']);
    assert.deepEqual(fs.readdirSync(existing), []);
  });
});

// Late in the file: the tests above count the inventory and the audit log.
test('ok/issue --ttl: lifetimes in minutes and hours', async (t) => {
  const cases = [
    { name: 'ok/--ttl 15m', args: ['issue', 'client', 'quarter', '--ttl', '15m'], seconds: 15 * 60 },
    { name: 'ok/--ttl 8h', args: ['issue', 'server', 'eight.acme.internal', '--ttl', '8h'], seconds: 8 * 3600 },
    { name: 'ok/--ttl 5m (the minimum)', args: ['issue', 'client', 'five', '--ttl', '5m'], seconds: 300 },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const out = p(c.name.replace(/\W+/g, '-'));
      const before = Date.now();
      const r = await cli(['--json', ...c.args, '--out', out]);
      expectOk(r);
      const notAfter = Date.parse(json(r).notAfter);
      // Issued between `before` and now, to the second.
      assert.ok(notAfter >= Math.floor(before / 1000) * 1000 + c.seconds * 1000 && notAfter <= Date.now() + c.seconds * 1000, `${c.name}: ${json(r).notAfter}`);
    });
  }
  const both = await cli(['issue', 'client', 'x', '--ttl', '8h', '--days', '1', '--out', p('both')]);
  assert.equal(both.status, 2, 'fail/--ttl with --days is a usage error');
  const bad = await cli(['issue', 'client', 'x', '--ttl', '8 hours', '--out', p('bad-ttl')]);
  assert.equal(bad.status, 2, 'fail/--ttl that is not a duration is a usage error');
  // `mutual token --cert-ttl`: the admin fixes the lifetime of the certificate the token enrolls.
  const token = await cli(['--json', 'token', 'spiffe://acme.internal/prod/short', '--cert-ttl', '8h']);
  expectOk(token);
  const claims = JSON.parse(Buffer.from(json(token).token.split('.')[1], 'base64url').toString('utf8'));
  assert.equal(claims.lft, 8 * 3600, 'ok/token --cert-ttl 8h');
  expectError(await cli(['--json', 'token', 'spiffe://acme.internal/prod/short', '--cert-ttl', '1m']), 3, 'POLICY_VALIDITY_TOO_SHORT');
});

test('ok/revoke reports the renewals it covered', async () => {
  // A renewal in the inventory (renewals come through `mutual serve`; here the authority directly).
  const { openAuthority } = await import('../../src/ca/open-authority.ts');
  const ca = await openAuthority({ home, passphrase: TEST_PASSPHRASE });
  let first: string;
  let renewal: string;
  try {
    const a = await ca.issue({ role: 'client', names: { dns: [], ip: [], uri: ['spiffe://acme.internal/prod/renewed'] }, actor: 'test' });
    first = a.serial;
    renewal = (await ca.renew({ certificate: a.certificate })).serial;
  } finally {
    await ca.close();
  }
  const r = await cli(['--json', 'revoke', first, '--reason', 'keyCompromise']);
  expectOk(r);
  assert.deepEqual(json(r).covered, [renewal]);
  const human = await cli(['list', '--status', 'revoked']);
  assert.ok(human.stdout.includes(renewal), 'the renewal is revoked too');
});

test('ok/no output contains a passphrase or a private key', () => {
  assert.deepEqual(leaks(), []);
});
