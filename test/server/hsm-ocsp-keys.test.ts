/**
 * `keys.ocspResponderKeys: store`: the delegated OCSP responders' keys are made on the token as
 * session objects. Through `mutual serve`, OpenSSL verifies the answers; the responder certificate
 * certifies a key the token made (its Signer reports the token's health); pkcs11-tool finds no
 * responder key on the token once the server has exited (nothing was made as a token object). A
 * token that goes away and comes back has lost them: the server makes new responders by itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { readConfig } from '../../src/ca/index.ts';
import { validateConfig } from '../../src/ca/config.ts';
import { closeKeyStores } from '../../src/keys/index.ts';
import { makeToken } from '../helpers/softhsm.ts';
import { makeTestCa } from '../helpers/test-ca.ts';
import { freePort, spawnServe, waitFor } from '../helpers/server.ts';
import { openssl, requireTool, run } from '../helpers/tools.ts';

test('ok/OCSP responder keys on the token as session objects', async (t) => {
  const tok = makeToken(t);
  if (!tok || !requireTool(t, 'openssl') || !requireTool(t, 'pkcs11-tool', 'opensc')) return;
  const publicPort = await freePort();
  const tc = await makeTestCa({ keyStore: { kind: 'pkcs11', uri: tok.tokenUri }, keysConfig: { ocspResponderKeys: 'store' }, url: `http://127.0.0.1:${publicPort}` });
  t.after(() => fs.rmSync(tc.dir, { recursive: true, force: true }));
  assert.equal(readConfig(tc.layout.config).keys?.ocspResponderKeys, 'store');

  // In this process: a responder's key is the token's (a Signer with health), not one in memory.
  const r = await tc.ca.issueOcspResponder(tc.ca.server, 3600);
  assert.equal(typeof r.signer.health, 'function');
  assert.deepEqual(await r.signer.health!(), { available: true });
  const leaf = await tc.ca.issue({ role: 'server', names: { dns: ['api.acme.internal'], ip: [], uri: [] }, actor: 'test' });
  const later = await tc.ca.issue({ role: 'server', names: { dns: ['later.acme.internal'], ip: [], uri: [] }, actor: 'test' });
  await tc.ca.close();
  await closeKeyStores();

  const srv = await spawnServe(tc, undefined, ['--public-listen', `127.0.0.1:${publicPort}`]);
  try {
    const ocsp = (cert: string) => openssl(['ocsp', '-url', `http://127.0.0.1:${publicPort}/ocsp`, '-issuer', tc.layout.serverCaCert, '-cert', cert, '-CAfile', tc.layout.rootCert, '-verify_other', tc.layout.serverCaCert]);
    const o = ocsp(tc.file('leaf.pem', leaf.certificatePem));
    assert.match(o.stdout + o.stderr, /Response verify OK/);
    assert.match(o.stdout, /: good/);

    // The token goes away and comes back: its session objects (the responder keys) are gone, so
    // the server makes new responders by itself and answers again, verified.
    const ready = async () => (await fetch(`http://127.0.0.1:${publicPort}/ready`)).status;
    tok.remove();
    await waitFor('/ready 503', 10_000, async () => ((await ready()) === 503 ? true : undefined));
    tok.restore();
    await waitFor('/ready 200', 20_000, async () => ((await ready()) === 200 ? true : undefined));
    const laterPem = tc.file('later.pem', later.certificatePem);
    const again = await waitFor('an OCSP answer after the restore', 20_000, () => {
      const r = ocsp(laterPem);
      return /Response verify OK/.test(r.stdout + r.stderr) ? r : undefined;
    });
    assert.match(again.stdout, /: good/);
    assert.equal(srv.child.exitCode, null);
  } finally {
    srv.child.kill('SIGTERM');
    assert.equal((await srv.exited).code, 0, srv.output());
  }
  const list = run('pkcs11-tool', ['--module', tok.module, '--token-label', tok.label, '--login', '--pin', tok.pin, '-O'], { env: tok.env });
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /mutual-server-ca-/);
  assert.doesNotMatch(list.stdout, /mutual-ocsp-/, 'a responder key outlived the server');
});

test('fail/keys: section refusals', () => {
  const base = { trustDomain: 'acme.internal', name: 'Acme' };
  const token = 'pkcs11:token=x?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/mutual/pin';
  const cases: [string, unknown][] = [
    ['fail/ocspResponderKeys store without a token', { ocspResponderKeys: 'store' }],
    ['fail/enrollmentTokenKey store without a token', { enrollmentTokenKey: 'store' }],
    ['fail/store is not a pkcs11: URI', { store: 'file' }],
    ['fail/store with the PIN in it', { store: 'pkcs11:token=x?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234' }],
    ['fail/an unknown field', { store: token, hsm: true }],
    ['fail/ocspResponderKeys neither memory nor store', { store: token, ocspResponderKeys: 'disk' }],
  ];
  for (const [name, keys] of cases) {
    assert.throws(() => validateConfig({ ...base, keys }), (e: { code?: string }) => e.code === 'CONFIG_INVALID', name);
  }
  const ok = validateConfig({ ...base, keys: { store: token } });
  assert.deepEqual(ok.keys, { store: token, ocspResponderKeys: 'memory', enrollmentTokenKey: 'file' });
  // What init writes reads back the same.
  assert.deepEqual(validateConfig(JSON.parse(JSON.stringify({ ...base, keys: ok.keys }))).keys, ok.keys);
});
