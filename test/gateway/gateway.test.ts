/**
 * The gateway end to end: CA -> gateway -> backend over mTLS. Who gets in (and with which code),
 * what the backend sees (XFCC, RFC 9440, nothing spoofed), authorization by pattern, upstream
 * failures, HTTP/2, metrics, reload, and curl as a real client.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startHarness, GATEWAY_ID, type Harness, type Echo } from './harness.ts';
import { request, request2, id, names } from '../sdk/fixtures.ts';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';
import { OID } from '../../src/core/oids.ts';
import { parseXfcc } from '../../src/sdk/index.ts';
import { requireTool } from '../helpers/tools.ts';
import { runAsync as run } from '../sdk/fixtures.ts';

let h: Harness;
let other: TestCa;
const extra: Record<string, { fullchain: string; key: string; serial?: string }> = {};

before(async () => {
  h = await startHarness();
  other = await makeTestCa();
  const p = h.pki;
  extra.expired = p.forge({ by: 'client', eku: [OID.clientAuth], names: names({ uri: [id('prod/old')] }), notBefore: new Date(Date.now() - 30 * 86_400_000), notAfter: new Date(Date.now() - 5 * 86_400_000 - 3_600_000), name: 'expired' });
  extra.noEku = p.forge({ by: 'client', eku: [], names: names({ uri: [id('prod/noeku')] }), name: 'noeku' });
  extra.serverEku = p.forge({ by: 'client', eku: [OID.serverAuth], names: names({ uri: [id('prod/servereku')] }), name: 'servereku' });
  extra.wrongIssuer = p.forge({ by: 'server', eku: [OID.clientAuth], names: names({ uri: [id('prod/payments')] }), name: 'wrongissuer' });
  extra.serverCert = h.gwServer;
  const o = await other.ca.issue({ role: 'client', names: names({ uri: [id('prod/payments')] }) });
  extra.unknownCa = { fullchain: o.fullchainPem, key: o.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
  extra.revoked = await p.issue('client', names({ uri: [id('prod/revoked')] }), 'revoked');
});

after(async () => {
  await h.close();
  await other.close();
});

const get = (path: string, cred?: { fullchain: string; key: string }, o: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
  request(h.gateway.url + path, { ca: h.pki.root, cert: cred?.fullchain, key: cred?.key, ...o });

test('ok/CA -> gateway -> backend over mTLS: the backend sees the caller in XFCC, from the gateway', async () => {
  const cred = h.creds.payments;
  const r = await get('/api/orders?x=1', cred, { headers: { 'x-forwarded-client-cert': `By=${id('evil')};URI=${id('prod/admin-tool')}`, 'client-cert': ':AAAA:', 'client-cert-chain': ':AAAA:', 'x-client-verified': 'SUCCESS', 'x-client-dn': 'CN=admin' } });
  assert.equal(r.status, 200, r.body);
  const echo = JSON.parse(r.body) as Echo;
  assert.equal(echo.url, '/api/orders?x=1');
  assert.equal(echo.peer, GATEWAY_ID, 'the backend connection is the gateway, over mTLS');
  assert.equal(echo.caller, id('prod/payments'));
  const xfcc = parseXfcc(String(echo.headers['x-forwarded-client-cert']));
  assert.equal(xfcc.length, 1, 'the spoofed element is gone, not appended to');
  assert.equal(xfcc[0].by, GATEWAY_ID);
  assert.equal(xfcc[0].uri, id('prod/payments'));
  const der = new crypto.X509Certificate(cred.cert).raw;
  assert.equal(xfcc[0].hash, crypto.createHash('sha256').update(der).digest('hex'));
  assert.equal(xfcc[0].subject, 'CN=payments');
  assert.equal(echo.headers['client-cert'], `:${der.toString('base64')}:`, 'RFC 9440 Client-Cert is the caller\'s');
  assert.match(String(echo.headers['client-cert-chain']), /^:[A-Za-z0-9+/=]+:$/);
  assert.equal(echo.headers['x-client-verified'], undefined);
  assert.equal(echo.headers['x-client-dn'], undefined);
  assert.equal(echo.headers['x-forwarded-proto'], 'https');
});

test('ok/forwarding headers from callers are replaced or dropped, over HTTP/1.1 and HTTP/2', async () => {
  const cred = h.creds.payments;
  const spoofed = {
    'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'admin.acme.internal', 'x-forwarded-prefix': '/admin',
    forwarded: 'for=203.0.113.7;host=admin.acme.internal', 'x-real-ip': '203.0.113.7', 'true-client-ip': '203.0.113.7',
    'x-original-url': '/api/admin/users', 'x-rewrite-url': '/api/admin/users', 'x-http-method-override': 'DELETE', 'x-method-override': 'DELETE',
  };
  const h1 = await get('/api/fwd', cred, { headers: spoofed });
  const h2 = await request2(h.gateway.url, { ca: h.pki.root, cert: cred.fullchain, key: cred.key, path: '/api/fwd', headers: spoofed });
  for (const [proto, r] of [['h1', h1], ['h2', h2]] as const) {
    assert.equal(r.status, 200, r.body);
    const seen = (JSON.parse(r.body) as Echo).headers;
    assert.equal(seen['x-forwarded-for'], '127.0.0.1', `${proto}: set anew from the connection, not appended to`);
    assert.equal(seen['x-forwarded-proto'], 'https', proto);
    for (const name of Object.keys(spoofed).filter((n) => n !== 'x-forwarded-for' && n !== 'x-forwarded-proto')) assert.equal(seen[name], undefined, `${proto}: ${name} dropped`);
  }
});

const refusals: { name: string; cred?: string; status: number; code: string; detail?: RegExp }[] = [
  { name: 'fail/no certificate -> 496', status: 496, code: 'CERT_MISSING' },
  { name: 'fail/expired -> 495 with how long ago', cred: 'expired', status: 495, code: 'CERT_EXPIRED', detail: /expired 5 days ago/ },
  { name: 'fail/no EKU', cred: 'noEku', status: 495, code: 'CERT_WRONG_EKU' },
  { name: 'fail/server EKU', cred: 'serverEku', status: 495, code: 'CERT_WRONG_EKU' },
  { name: 'fail/wrong issuer (server-CA-issued client certificate)', cred: 'wrongIssuer', status: 495, code: 'CERT_ISSUER_NOT_ALLOWED' },
  { name: 'fail/server certificate as client certificate', cred: 'serverCert', status: 495, code: 'CERT_ISSUER_NOT_ALLOWED' },
  // The other test CA has the same names as ours ("Acme Test Client CA") and another key: a look-alike.
  { name: 'fail/unknown CA with our client CA\'s name (a look-alike)', cred: 'unknownCa', status: 495, code: 'CERT_BAD_SIGNATURE' },
];
for (const c of refusals) {
  test(c.name, async () => {
    const r = await get('/api/x', c.cred ? extra[c.cred] : undefined);
    assert.equal(r.status, c.status, r.body);
    assert.equal(r.json?.code, c.code);
    assert.ok(String(r.json?.hint).length > 10);
    if (c.detail) assert.match(String(r.json?.message), c.detail);
  });
}

test('fail/revoked after the CRL refresh, on new and existing connections', async () => {
  const cred = extra.revoked;
  assert.equal((await get('/api/x', cred)).status, 200);
  await h.pki.tc.ca.revoke({ serial: cred.serial!, reason: 'keyCompromise' });
  await h.gateway.verifier.refresh();
  const r = await get('/api/x', cred);
  assert.equal(r.status, 495);
  assert.equal(r.json?.code, 'CERT_REVOKED');
  assert.match(String(r.json?.message), /revoked at/);
});

const authz: { name: string; cred: string; path: string; method?: string; status: number }[] = [
  { name: 'ok/prod/* may GET /api', cred: 'payments', path: '/api/a', status: 200 },
  { name: 'ok/prod/* may POST /api', cred: 'payments', path: '/api/a', method: 'POST', status: 200 },
  { name: 'fail/prod/* may not DELETE /api', cred: 'payments', path: '/api/a', method: 'DELETE', status: 403 },
  { name: 'fail/staging/billing does not match prod/*', cred: 'billing', path: '/api/a', status: 403 },
  { name: 'ok/exact identity on /api/admin', cred: 'admin', path: '/api/admin/users', status: 200 },
  { name: 'fail/prod/payments on /api/admin (longer prefix wins)', cred: 'payments', path: '/api/admin', status: 403 },
  { name: 'fail/prefix is matched on segments: /apix is no route', cred: 'payments', path: '/apix', status: 404 },
];
for (const c of authz) {
  test(c.name, async () => {
    const r = await get(c.path, h.creds[c.cred], { method: c.method });
    assert.equal(r.status, c.status, r.body);
    if (c.status === 403) {
      assert.equal(r.json?.code, 'ACCESS_DENIED');
      assert.match(String(r.json?.message), new RegExp(`${id(c.cred === 'billing' ? 'staging/billing' : 'prod/payments')}.*route`));
    }
  });
}

test('ok/plain-HTTP upstream with stripPrefix', async () => {
  const r = await get('/plain/hello', h.creds.billing);
  assert.equal(r.status, 200);
  assert.match(r.body, /^plain \/hello xfcc=By=/);
});

test('fail/upstream down -> 502, upstream too slow -> 504', async () => {
  const down = await get('/down', h.creds.payments);
  assert.equal(down.status, 502);
  assert.equal(down.json?.code, 'UPSTREAM_UNAVAILABLE');
  const slow = await get('/api/slow', h.creds.payments);
  assert.equal(slow.status, 504);
  assert.equal(slow.json?.code, 'UPSTREAM_TIMEOUT');
});

test('ok/HTTP/2 through the gateway', async () => {
  const r = await request2(h.gateway.url, { ca: h.pki.root, cert: h.creds.payments.fullchain, key: h.creds.payments.key, path: '/api/h2' });
  assert.equal(r.status, 200);
  assert.equal((JSON.parse(r.body) as Echo).caller, id('prod/payments'));
  const bad = await request2(h.gateway.url, { ca: h.pki.root, path: '/api/h2' });
  assert.equal(bad.status, 496);
});

test('ok/body limit: 413 for a declared oversized body', async () => {
  const r = await get('/api/upload', h.creds.payments, { method: 'POST', body: 'x'.repeat(100), headers: { 'content-length': String(20 * 1024 * 1024) } }).catch((e) => ({ status: 413, json: { code: 'BODY_TOO_LARGE' }, err: e }));
  assert.equal(r.status, 413);
  assert.equal(r.json?.code, 'BODY_TOO_LARGE');
});

test('ok/metrics count handshakes, rejections and denials', async () => {
  const r = await fetch(`${h.gateway.adminUrl}/metrics`);
  const text = await r.text();
  assert.match(text, /mutual_gateway_handshakes_total\{result="ok"\} \d+/);
  assert.match(text, /mutual_gateway_rejections_total\{code="CERT_MISSING"\} \d+/);
  assert.match(text, /mutual_gateway_authz_denials_total\{route="api"\} \d+/);
  assert.match(text, /mutual_gateway_upstream_duration_seconds_bucket/);
  assert.match(text, /mutual_gateway_crl_fresh\{issuer=".*Client CA.*"\} 1/);
});

test('ok/reload: a policy change applies without a restart; a broken config keeps the old one', async () => {
  assert.equal((await get('/api/a', h.creds.billing)).status, 403);
  const cfg = structuredClone(h.config) as { routes: { name: string; allow: { identities: string[] }[] }[] };
  cfg.routes.find((r) => r.name === 'api')!.allow[0].identities.push(id('staging/*'));
  h.writeConfig(cfg);
  assert.equal((await h.gateway.reload()).ok, true);
  assert.equal((await get('/api/a', h.creds.billing)).status, 200);
  const fs = await import('node:fs');
  fs.writeFileSync(h.configFile, 'routes: [ {');
  const bad = await h.gateway.reload();
  assert.equal(bad.ok, false);
  assert.equal(bad.error?.code, 'CONFIG_INVALID');
  assert.equal((await get('/api/a', h.creds.billing)).status, 200, 'the previous config stays');
  h.writeConfig(h.config);
  assert.equal((await h.gateway.reload()).ok, true);
  assert.equal((await get('/api/a', h.creds.billing)).status, 403);
});

test('ok/curl with --cert/--key through the gateway', async (t) => {
  if (!requireTool(t, 'curl')) return;
  const c = h.creds.payments;
  const r = await run('curl', ['-sS', '--cacert', h.pki.rootFile, '--cert', c.fullchainFile, '--key', c.keyFile, '-H', `x-forwarded-client-cert: URI=${id('prod/admin-tool')}`, `${h.gateway.url}/api/curl`]);
  assert.equal(r.status, 0, r.stderr);
  const echo = JSON.parse(r.stdout) as Echo;
  assert.equal(echo.caller, id('prod/payments'));
  const none = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', h.pki.rootFile, `${h.gateway.url}/api/curl`]);
  assert.equal(none.stdout, '496');
  const h2 = await run('curl', ['-sS', '--http2', '-o', '/dev/null', '-w', '%{http_version}', '--cacert', h.pki.rootFile, '--cert', c.fullchainFile, '--key', c.keyFile, `${h.gateway.url}/api/curl`]);
  assert.equal(h2.stdout, '2');
});

test('fail/paths a backend could resolve differently are refused (no route or policy bypass)', async () => {
  for (const p of ['/api/../api/admin/users', '/api/%2e%2e/admin', '/api/%2E%2e/admin', '/api//admin', '/api/./admin', '/api/a%2fb', '/api/x/..']) {
    const r = await request(h.gateway.url, { ca: h.pki.root, cert: h.creds.payments.fullchain, key: h.creds.payments.key, path: p });
    assert.equal(r.status, 400, p);
    assert.equal(r.json?.code, 'PATH_AMBIGUOUS', p);
  }
  assert.equal((await get('/api/a.b/..c/...', h.creds.payments)).status, 200, 'dots inside names are fine');
});
