/**
 * The SDK's CA client against a scripted CA: a real HTTPS server (certificate from the test CA)
 * that answers each path with whatever the case says, hostile answers included. The happy paths
 * against `mutual serve` itself are in test/server/api.test.ts and test/agent/*.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { makePki, names, type Credential, type Pki } from './fixtures.ts';
import { adminCall, enroll, fetchCaCertificates, fetchCrl, fetchPinnedRoot, fingerprintOf, renew, MAX_RESPONSE_BYTES } from '../../src/sdk/ca-client.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';

interface Scripted {
  status: number;
  body: string | Buffer;
  headers?: Record<string, string>;
}

let pki: Pki;
let other: Pki;
let client: Credential;
let server: https.Server;
let url: string;
let answers: Record<string, Scripted> = {};
const hits: string[] = [];

const json = (status: number, body: unknown): Scripted => ({ status, body: JSON.stringify(body), headers: { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json' } });
/** A token whose claims name `sha` as the root (the CA would verify its signature; the client only reads it). */
const token = (sha: string) => `e30.${Buffer.from(JSON.stringify({ sans: { dns: ['svc.acme.internal'] }, sha })).toString('base64url')}.sig`;

before(async () => {
  pki = await makePki();
  other = await makePki({ name: 'Other' });
  const tlsCred = await pki.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'scripted-ca');
  client = await pki.issue('client', names({ uri: ['spiffe://acme.internal/test/svc'] }), 'svc');
  server = https.createServer({ cert: tlsCred.fullchain, key: tlsCred.key }, (req, res) => {
    hits.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => {
      const a = answers[req.url ?? ''] ?? json(404, { code: 'NOT_FOUND', detail: 'no such path' });
      res.writeHead(a.status, a.headers).end(a.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await pki?.close();
  await other?.close();
});

const rejectsWith = async (p: Promise<unknown>, code: ErrorCode, detail?: RegExp) => {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isMutualError(e), `a MutualError, not ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (detail) assert.match(String(e.fields.detail), detail);
    return true;
  });
};

const issued = () => ({ serial: '01', notAfter: new Date().toISOString(), certificate: client.cert, chain: pki.clientCa, fullchain: client.fullchain });

const CASES: { name: string; answers: () => Record<string, Scripted>; run: () => Promise<unknown>; code: ErrorCode; detail?: RegExp }[] = [
  { name: 'fail/enroll: a 201 without certificate, chain and fullchain', answers: () => ({ '/v1/enroll': json(201, { serial: '01' }) }), run: () => enroll({ caUrl: url, token: token(fingerprintOf(pki.root)), root: pki.root }), code: 'CA_UNTRUSTED', detail: /^enrollment: / },
  { name: 'fail/enroll: a 201 that is not JSON', answers: () => ({ '/v1/enroll': { status: 201, body: 'certificate follows' } }), run: () => enroll({ caUrl: url, token: token(fingerprintOf(pki.root)), root: pki.root }), code: 'CA_UNTRUSTED' },
  { name: 'fail/renew: a certificate that is not a string', answers: () => ({ '/v1/renew': json(201, { ...issued(), certificate: 42 }) }), run: () => renew({ caUrl: url, certificate: client.cert, key: client.key, root: pki.root }), code: 'CA_UNTRUSTED', detail: /^renewal: / },
  { name: 'fail/renew: the problem code the CA names is kept', answers: () => ({ '/v1/renew': json(403, { code: 'CERT_REVOKED', detail: 'revoked' }) }), run: () => renew({ caUrl: url, certificate: client.cert, key: client.key, root: pki.root }), code: 'CERT_REVOKED', detail: /^renewal: revoked$/ },
  { name: 'fail/renew: a code the registry does not know is CA_UNAVAILABLE', answers: () => ({ '/v1/renew': json(500, { code: 'SOMETHING_ELSE' }) }), run: () => renew({ caUrl: url, certificate: client.cert, key: client.key, root: pki.root }), code: 'CA_UNAVAILABLE' },
  { name: 'fail/admin: 401 without a problem code is AUTH_REQUIRED', answers: () => ({ '/v1/certificates': { status: 401, body: '' } }), run: () => adminCall({ caUrl: url, path: '/v1/certificates', root: pki.root }), code: 'AUTH_REQUIRED' },
  { name: 'fail/a redirect is not followed', answers: () => ({ '/roots.pem': { status: 302, body: '', headers: { location: 'https://example.invalid/roots.pem' } } }), run: () => fetchPinnedRoot(url, fingerprintOf(pki.root)), code: 'CA_UNAVAILABLE', detail: /HTTP 302/ },
  { name: 'fail/pinned root: another root', answers: () => ({ '/roots.pem': { status: 200, body: other.root } }), run: () => fetchPinnedRoot(url, fingerprintOf(pki.root)), code: 'CA_UNTRUSTED', detail: /pinned root/ },
  { name: 'fail/pinned root: not a certificate', answers: () => ({ '/roots.pem': { status: 200, body: 'hello' } }), run: () => fetchPinnedRoot(url, fingerprintOf(pki.root)), code: 'CA_UNTRUSTED' },
  { name: 'fail/an answer larger than MAX_RESPONSE_BYTES is CA_ANSWER_INVALID (the CA answered, unusably)', answers: () => ({ '/crl/client.crl': { status: 200, body: Buffer.alloc(MAX_RESPONSE_BYTES + 1) } }), run: () => fetchCrl(url, pki.root, 'client'), code: 'CA_ANSWER_INVALID', detail: /larger than/ },
  { name: 'fail/the server is not certified by the pinned root', answers: () => ({ '/crl/client.crl': { status: 200, body: 'x' } }), run: () => fetchCrl(url, other.root, 'client'), code: 'CA_UNTRUSTED' },
  {
    name: 'fail/CA certificates: an intermediate not signed by the pinned root',
    answers: () => ({ '/roots.pem': { status: 200, body: pki.root }, '/ca/server.pem': { status: 200, body: other.serverCa }, '/ca/client.pem': { status: 200, body: pki.clientCa } }),
    run: () => fetchCaCertificates(url, pki.root), code: 'CA_UNTRUSTED', detail: /server CA/,
  },
];

for (const c of CASES) {
  test(c.name, async () => {
    answers = c.answers();
    await rejectsWith(c.run(), c.code, c.detail);
  });
}

test('ok/CA certificates and a CRL from a CA without key rotations (404 on the .all.pem lists)', async () => {
  const crl = await pki.crl();
  answers = {
    '/roots.pem': { status: 200, body: pki.root + other.root }, '/ca/server.pem': { status: 200, body: pki.serverCa }, '/ca/client.pem': { status: 200, body: pki.clientCa },
    '/crl/client.crl': { status: 200, body: crl },
  };
  const cas = await fetchCaCertificates(`${url}/`, pki.root);
  assert.deepEqual({ ...cas, root: fingerprintOf(cas.root) }, { root: fingerprintOf(pki.root), 'server-ca': pki.serverCa, 'client-ca': pki.clientCa, retired: [] });
  assert.deepEqual(await fetchCrl(url, pki.root, 'client'), crl);
  await assert.rejects(fetchCrl(url, pki.root, '../roots' as 'client'), TypeError);
});

test('fail/a CA URL that is not https is not called (the token or key would go in clear)', async () => {
  let called = 0;
  const plain = http.createServer((_req, res) => {
    called++;
    res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(issued()));
  });
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  try {
    const plainUrl = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
    await rejectsWith(enroll({ caUrl: plainUrl, token: token(fingerprintOf(pki.root)), root: pki.root }), 'CA_UNAVAILABLE', /https/);
    await rejectsWith(renew({ caUrl: plainUrl, certificate: client.cert, key: client.key, root: pki.root }), 'CA_UNAVAILABLE', /https/);
    assert.equal(called, 0);
  } finally {
    plain.closeAllConnections();
    await new Promise((r) => plain.close(r));
  }
});
