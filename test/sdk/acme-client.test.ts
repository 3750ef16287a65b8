/**
 * The ACME client's edges against a scripted server (node:http on port 0), answers a real CA
 * rarely gives on demand: a nonce refused once and twice, an answer over the size limit, renewal
 * information with and without Retry-After, a directory without renewalInfo, a server that is
 * not there, and the account key file made once with mode 0600. The whole flow against real
 * servers is test/agent/acme.test.ts.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { AcmeClient, acmeAccountKey, MAX_ACME_JSON_BYTES } from '../../src/sdk/acme-client.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { makeTestCa, tempDir, type TestCa } from '../helpers/test-ca.ts';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { buildCsr } from '../../src/core/csr.ts';

type Handler = (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) => void;
let handler: Handler = (_q, _b, res) => res.writeHead(404).end();
let server: http.Server;
let base: string;
let tc: TestCa;
let leafPem: string;
const dir = tempDir('mutual-acme-client-');
const seen: { method: string; url: string; nonce?: string; replayNonce: string }[] = [];
let nonceCount = 0;

before(async () => {
  server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      let nonce: string | undefined;
      if (body.length) nonce = JSON.parse(Buffer.from(JSON.parse(body.toString()).protected, 'base64url').toString()).nonce;
      const replayNonce = `n${++nonceCount}`;
      seen.push({ method: req.method!, url: req.url!, nonce, replayNonce });
      res.setHeader('replay-nonce', replayNonce);
      handler(req, body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  tc = await makeTestCa();
  const key = generateKeyPair('p256').privateKey;
  const csr = buildCsr({ privateKey: key, commonName: 'web.acme.internal', names: { dns: ['web.acme.internal'], ip: [], uri: [] } });
  leafPem = (await tc.ca.issue({ role: 'server', csr, names: { dns: ['web.acme.internal'], ip: [], uri: [] }, days: 1 })).certificatePem;
});

after(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await tc.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const json = (res: http.ServerResponse, status: number, body: object, headers: Record<string, string> = {}) =>
  res.writeHead(status, { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json', ...headers }).end(JSON.stringify(body));

/** A directory, with renewalInfo unless told otherwise; other paths go to `rest`. */
function script(rest: Handler, o: { ari?: boolean } = {}): void {
  seen.length = 0;
  handler = (req, body, res) => {
    if (req.url === '/dir') return json(res, 200, { newNonce: `${base}/nonce`, newAccount: `${base}/acct`, newOrder: `${base}/order`, ...(o.ari === false ? {} : { renewalInfo: `${base}/ari` }) });
    if (req.url === '/nonce') return res.writeHead(204).end();
    rest(req, body, res);
  };
}

const client = (now = () => new Date('2026-12-03T12:00:00Z')) => new AcmeClient({ directoryUrl: `${base}/dir`, accountKey: generateKeyPair('p256').privateKey, now });

test('ok/badNonce: retried once with the nonce of the refusal', async () => {
  let n = 0;
  script((req, _b, res) => {
    if (req.url === '/acct' && n++ === 0) return json(res, 400, { type: 'urn:ietf:params:acme:error:badNonce', detail: 'stale' });
    if (req.url === '/acct') return json(res, 200, { status: 'valid' }, { location: `${base}/acct/1` });
    res.writeHead(404).end();
  });
  assert.equal(await client().account(), `${base}/acct/1`);
  const posts = seen.filter((s) => s.url === '/acct');
  assert.equal(posts.length, 2);
  assert.notEqual(posts[0].nonce, posts[1].nonce);
  // The retry used the nonce the refusal carried.
  assert.equal(posts[1].nonce, posts[0].replayNonce);
});

test('fail/badNonce twice: ACME_CLIENT_FAILED with the problem type', async () => {
  script((req, _b, res) => json(res, 400, { type: 'urn:ietf:params:acme:error:badNonce', detail: 'stale' }));
  await assert.rejects(client().account(), (e) => isMutualError(e, 'ACME_CLIENT_FAILED') && e.fields.problem === 'urn:ietf:params:acme:error:badNonce' && /badNonce: stale/.test(String(e.fields.detail)));
  assert.equal(seen.filter((s) => s.url === '/acct').length, 2);
});

test('fail/an answer over the size limit: FETCH_FAILED EFBIG', async () => {
  script((req, _b, res) => json(res, 200, { status: 'valid', pad: 'x'.repeat(MAX_ACME_JSON_BYTES) }, { location: `${base}/acct/1` }));
  await assert.rejects(client().account(), (e) => isMutualError(e, 'FETCH_FAILED') && e.fields.reason === 'EFBIG');
});

test('fail/no server: CA_UNAVAILABLE', async () => {
  const c = new AcmeClient({ directoryUrl: 'http://127.0.0.1:1/dir', accountKey: generateKeyPair('p256').privateKey });
  await assert.rejects(c.directory(), (e) => isMutualError(e, 'CA_UNAVAILABLE'));
});

test('fail/not a directory: ACME_CLIENT_FAILED', async () => {
  handler = (_q, _b, res) => json(res, 200, { hello: 'world' });
  await assert.rejects(client().directory(), (e) => isMutualError(e, 'ACME_CLIENT_FAILED') && /no newNonce/.test(String(e.fields.detail)));
});

test('ok/renewalInfo: the window, Retry-After in seconds, the RFC 9773 id in the path', async () => {
  script((req, _b, res) => json(res, 200, { suggestedWindow: { start: '2026-12-04T00:00:00Z', end: '2026-12-04T06:00:00Z' } }, { 'retry-after': '120' }));
  const ri = await client().renewalInfo(leafPem);
  assert.deepEqual(ri && [ri.start.toISOString(), ri.end.toISOString(), ri.retryAfter.toISOString()], ['2026-12-04T00:00:00.000Z', '2026-12-04T06:00:00.000Z', '2026-12-03T12:02:00.000Z']);
  assert.match(seen.at(-1)!.url, /^\/ari\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  assert.equal(seen.at(-1)!.method, 'GET');
});

test('ok/renewalInfo: none without renewalInfo in the directory, none for a certificate the server does not know', async () => {
  script(() => assert.fail('not asked'), { ari: false });
  assert.equal(await client().renewalInfo(leafPem), undefined);
  script((_q, _b, res) => json(res, 404, { type: 'urn:ietf:params:acme:error:malformed' }));
  assert.equal(await client().renewalInfo(leafPem), undefined);
});

test('fail/renewalInfo: a window that ends before it starts', async () => {
  script((_q, _b, res) => json(res, 200, { suggestedWindow: { start: '2026-12-04T06:00:00Z', end: '2026-12-04T00:00:00Z' } }));
  await assert.rejects(client().renewalInfo(leafPem), (e) => isMutualError(e, 'ACME_CLIENT_FAILED'));
});

test('ok/account key: made once (P-256, 0600), read after; another kind of key is refused', () => {
  const file = path.join(dir, 'acme', 'account.key');
  const k1 = acmeAccountKey(file);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.equal(k1.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const k2 = acmeAccountKey(file);
  assert.deepEqual(k2.export({ format: 'jwk' }), k1.export({ format: 'jwk' }));
  const other = path.join(dir, 'rsa.key');
  fs.writeFileSync(other, generateKeyPair('rsa2048').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  assert.throws(() => acmeAccountKey(other), (e) => isMutualError(e, 'CONFIG_INVALID'));
});

/** A whole order on the scripted server: the order is `processing` (with `retryAfter`) `busy` times before it is ready. */
function scriptOrder(busy: number, retryAfter: string | undefined, chain: string): void {
  let polls = 0;
  script((req, _b, res) => {
    const u = req.url!;
    if (u === '/acct') return json(res, 200, { status: 'valid' }, { location: `${base}/acct/1` });
    const order = (status: string) => ({ status, identifiers: [{ type: 'dns', value: 'web.acme.internal' }], authorizations: [`${base}/authz/1`], finalize: `${base}/fin/1`, ...(status === 'valid' ? { certificate: `${base}/cert/1` } : {}) });
    if (u === '/order') return json(res, 201, order('pending'), { location: `${base}/order/1` });
    if (u === '/authz/1') return json(res, 200, { status: 'valid', identifier: { type: 'dns', value: 'web.acme.internal' }, challenges: [] });
    if (u === '/order/1') return polls++ < busy ? json(res, 200, order('processing'), retryAfter ? { 'retry-after': retryAfter } : {}) : json(res, 200, order(polls > busy + 1 ? 'valid' : 'ready'));
    if (u === '/fin/1') return json(res, 200, order('processing'));
    if (u === '/cert/1') return res.writeHead(200, { 'content-type': 'application/pem-certificate-chain' }).end(chain);
    res.writeHead(404).end();
  });
}

const noSolver = { type: 'http-01' as const, present: async () => assert.fail('no challenge is pending'), cleanup: async () => {} };

test('ok/order: polls wait as Retry-After says (capped), finalize, the chain split into leaf and issuers', async () => {
  const chainPem = `${leafPem}${tc.init.rootPem}`;
  scriptOrder(2, '3', chainPem);
  const waits: number[] = [];
  const c = new AcmeClient({ directoryUrl: `${base}/dir`, accountKey: generateKeyPair('p256').privateKey, now: () => new Date('2026-12-03T12:00:00Z'), sleep: async (ms) => void waits.push(ms) });
  const key = generateKeyPair('p256').privateKey;
  const got = await c.obtain({ names: { dns: ['web.acme.internal'], ip: [] }, csr: buildCsr({ privateKey: key, commonName: 'web.acme.internal', names: { dns: ['web.acme.internal'], ip: [], uri: [] } }), solver: noSolver });
  assert.equal(got.certificate.trim(), leafPem.trim());
  assert.equal(got.chain.trim(), tc.init.rootPem.trim());
  // Two waits of Retry-After (3 s) before ready; after finalize the first poll finds it valid.
  assert.deepEqual(waits, [3000, 3000]);
  assert.ok(seen.some((s) => s.url === '/cert/1' && s.method === 'POST'));
  // A Retry-After beyond the cap waits the cap.
  scriptOrder(1, '3600', chainPem);
  waits.length = 0;
  await c.obtain({ names: { dns: ['web.acme.internal'], ip: [] }, csr: Buffer.from('30', 'hex'), solver: noSolver });
  assert.equal(waits[0], 30_000);
});

test('fail/order: still processing after the poll bound: ACME_CLIENT_FAILED, no endless wait', async () => {
  scriptOrder(Number.MAX_SAFE_INTEGER, undefined, '');
  let waits = 0;
  const c = new AcmeClient({ directoryUrl: `${base}/dir`, accountKey: generateKeyPair('p256').privateKey, sleep: async () => void waits++ });
  await assert.rejects(c.obtain({ names: { dns: ['web.acme.internal'], ip: [] }, csr: Buffer.from('30', 'hex'), solver: noSolver }), (e) => isMutualError(e, 'ACME_CLIENT_FAILED') && /after 60 polls/.test(String(e.fields.detail)));
  assert.equal(waits, 59);
});
