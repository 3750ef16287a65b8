/**
 * ACME over HTTPS end to end: a real `mutual serve` whose config.yaml enables ACME (so the server
 * builds its lifecycle the way `mutual serve` does), driven by a real ACME client written here with
 * jose (transport-client.ts). One account goes through the whole of RFC 8555: directory, nonces,
 * account, order, http-01 answered by a node:http responder the CA validates against, finalize,
 * download, renewal information, key change, revocation and deactivation. Then the bad inputs, each
 * refused with its ACME error type, a fresh Replay-Nonce, and nothing issued.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { FlattenedSign } from 'jose';
import crypto from 'node:crypto';
import { createEabKey } from '../../src/ca/acme/eab-keys.ts';
import { openAuthority } from '../../src/ca/open-authority.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { startCaServer, type CaServer } from '../../src/server/ca-server.ts';
import { MAX_JWS_BYTES } from '../../src/server/acme/jws.ts';
import { prng } from '../helpers/prng.ts';
import { freePort, opensslAsync, send, waitFor, type SendAnswer } from '../helpers/server.ts';
import { makeTestCa, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';
import { AcmeTestClient, clientKey } from './transport-client.ts';

const TOS = 'https://ca.acme.internal/terms';
const URN = 'urn:ietf:params:acme:error:';

let tc: TestCa;
let srv: CaServer;
let base: string;
let responder: http.Server;
/** token -> key authorization, what the http-01 responder serves. */
const served = new Map<string, string>();

before(async () => {
  responder = http.createServer((req, res) => {
    const token = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '')?.[1];
    const body = token ? served.get(token) : undefined;
    res.writeHead(body ? 200 : 404, { 'content-type': 'application/octet-stream' }).end(body ?? 'not here');
  });
  await new Promise<void>((resolve) => responder.listen(0, '127.0.0.1', resolve));
  const httpPort = (responder.address() as AddressInfo).port;
  const port = await freePort();
  base = `https://127.0.0.1:${port}`;
  tc = await makeTestCa({ url: base });
  // ACME as an operator turns it on: config.yaml, then the CA opened again (as `mutual serve` starts).
  fs.appendFileSync(tc.layout.config, `acme:\n  enabled: true\n  termsOfService: ${TOS}\n  httpPort: ${httpPort}\n  validationTimeout: 5s\n  challenges: [http-01]\n`);
  await tc.ca.close();
  tc.ca = await openAuthority({ home: tc.home, passphrase: TEST_PASSPHRASE });
  srv = await startCaServer({ ca: tc.ca, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port, url: base, publicPort: 0, logger: pino({ level: 'silent' }), rateLimit: false });
});

after(async () => {
  await srv?.close();
  await new Promise<void>((resolve) => responder?.close(() => resolve()));
  await tc?.close();
});

const client = async (alg: Parameters<typeof clientKey>[0] = 'ES256') => new AcmeTestClient(`${base}/acme/directory`, tc.init.rootPem, await clientKey(alg)).start();

/** Serials in the inventory. */
const inventory = async (): Promise<string[]> => (await tc.ca.list({ limit: 10_000 })).map((r) => r.serial).sort();

/** An ACME problem answer: status, type, the problem's content type, a fresh nonce, and Link rel=index. */
function problem(r: SendAnswer, status: number, type: string): void {
  assert.equal(r.status, status, r.body.toString());
  assert.equal(r.headers['content-type'], 'application/problem+json');
  assert.equal(r.json.type, `${URN}${type}`, r.body.toString());
  assert.equal(r.json.status, status);
  assert.match(String(r.headers.link), /\/acme\/directory>;rel="index"/);
}

/** A new account for a client (terms agreed). */
async function register(c: AcmeTestClient): Promise<SendAnswer> {
  const r = await c.post(c.dir.newAccount, { termsOfServiceAgreed: true, contact: ['mailto:ops@acme.internal'] }, { jwk: true });
  if (r.status === 201 || r.status === 200) c.kid = r.headers.location as string;
  return r;
}

/** A CSR for 127.0.0.1 (and a fresh key), DER. */
const csrFor = (ip = '127.0.0.1'): Buffer => buildCsr({ privateKey: generateKeyPair('p256').privateKey, commonName: ip, names: { dns: [], ip: [ip], uri: [] } });

/** Orders 127.0.0.1, answers its http-01 challenge, and waits for the order to be ready. */
async function readyOrder(c: AcmeTestClient): Promise<{ url: string; order: any }> {
  const created = await c.post(c.dir.newOrder, { identifiers: [{ type: 'ip', value: '127.0.0.1' }] });
  assert.equal(created.status, 201, created.body.toString());
  const url = created.headers.location as string;
  for (const authzUrl of created.json.authorizations as string[]) {
    const authz = (await c.post(authzUrl, '')).json;
    if (authz.status === 'valid') continue;
    const ch = authz.challenges.find((x: any) => x.type === 'http-01');
    served.set(ch.token, `${ch.token}.${c.key.thumbprint}`);
    const r = await c.post(ch.url, {});
    assert.equal(r.status, 200, r.body.toString());
  }
  const order = await waitFor('the order to be ready', 20_000, async () => {
    const o = (await c.post(url, '')).json;
    assert.notEqual(o.status, 'invalid', JSON.stringify(o));
    return o.status === 'ready' ? o : undefined;
  });
  return { url, order };
}

test('ok/directory and nonces', async () => {
  const r = await send(`${base}/acme/directory`, { tls: { ca: tc.init.rootPem } });
  assert.equal(r.status, 200);
  for (const k of ['newNonce', 'newAccount', 'newOrder', 'revokeCert', 'keyChange', 'renewalInfo']) assert.match(r.json[k], new RegExp(`^${base}/acme/`), k);
  assert.equal(r.json.meta.termsOfService, TOS);
  assert.equal(r.json.meta.externalAccountRequired, false);
  assert.match(String(r.headers['replay-nonce']), /^[A-Za-z0-9_-]+$/, 'every ACME answer carries a nonce');
  const head = await send(r.json.newNonce, { method: 'HEAD', tls: { ca: tc.init.rootPem } });
  assert.equal(head.status, 200);
  assert.match(String(head.headers['replay-nonce']), /^[A-Za-z0-9_-]+$/);
  assert.equal(head.headers['cache-control'], 'no-store');
  const get = await send(r.json.newNonce, { tls: { ca: tc.init.rootPem } });
  assert.equal(get.status, 204);
  assert.notEqual(get.headers['replay-nonce'], head.headers['replay-nonce']);
  assert.match(String(get.headers.link), /rel="index"/);
});

test('ok/the whole life of an account: order, http-01, finalize, download, renewal info, key change, revoke, deactivate', async () => {
  const c = await client();
  const created = await register(c);
  assert.equal(created.status, 201, created.body.toString());
  assert.match(c.kid!, new RegExp(`^${base}/acme/acct/[A-Za-z0-9_-]+$`));
  assert.deepEqual(created.json, { status: 'valid', contact: ['mailto:ops@acme.internal'], termsOfServiceAgreed: true, orders: `${c.kid}/orders` });
  // The same key again: the same account, 200.
  const again = await c.post(c.dir.newAccount, { termsOfServiceAgreed: true }, { jwk: true });
  assert.equal(again.status, 200);
  assert.equal(again.headers.location, c.kid);
  const existing = await c.post(c.dir.newAccount, { onlyReturnExisting: true }, { jwk: true });
  assert.equal(existing.status, 200);
  assert.equal(existing.headers.location, c.kid);

  const { url, order } = await readyOrder(c);
  assert.match(url, new RegExp(`^${base}/acme/order/`));
  assert.match(order.finalize, new RegExp(`^${base}/acme/order/.+/finalize$`));
  assert.ok(!Number.isNaN(Date.parse(order.expires)));
  const authz = (await c.post(order.authorizations[0], '')).json;
  assert.equal(authz.status, 'valid');
  assert.deepEqual(authz.identifier, { type: 'ip', value: '127.0.0.1' });
  const ch = authz.challenges.find((x: any) => x.type === 'http-01');
  assert.match(ch.url, new RegExp(`^${base}/acme/chall/`));
  // POST-as-GET on the challenge: the challenge, and Link rel="up" to its authorization.
  const read = await c.post(ch.url, '');
  assert.equal(read.json.status, 'valid');
  assert.ok(String(read.headers.link).includes(`<${order.authorizations[0]}>;rel="up"`));

  const before = await inventory();
  const issuedCount = async () => (await srv.metrics.issued.get()).values.find((v) => v.labels.role === 'server')?.value ?? 0;
  const counted = await issuedCount();
  const fin = await c.post(order.finalize, { csr: csrFor().toString('base64url') });
  assert.equal(fin.status, 200, fin.body.toString());
  assert.equal(fin.headers.location, url);
  const done = fin.json.status === 'valid' ? fin.json : await waitFor('the order to be valid', 20_000, async () => {
    const o = (await c.post(url, '')).json;
    return o.status === 'valid' ? o : undefined;
  });
  assert.match(done.certificate, new RegExp(`^${base}/acme/cert/`));
  const cert = await c.post(done.certificate, '');
  assert.equal(cert.status, 200);
  assert.equal(cert.headers['content-type'], 'application/pem-certificate-chain');
  const pems = cert.body.toString().match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)!;
  assert.ok(pems.length >= 2, 'leaf and intermediate');
  const leaf = parseCertificate(readPemOrDer(pems[0], ['CERTIFICATE']));
  assert.deepEqual(await inventory(), [...before, leaf.serial].sort(), 'the certificate handed out is in the inventory');
  assert.equal(await issuedCount(), counted + 1, 'counted in mutual_certificates_issued_total');

  // RFC 9773: the window for the certificate, with Retry-After.
  const serial = leaf.serialBytes[0] >= 0x80 ? Buffer.concat([Buffer.from([0]), leaf.serialBytes]) : leaf.serialBytes;
  const certId = `${leaf.authorityKeyId!.toString('base64url')}.${serial.toString('base64url')}`;
  const ari = await send(`${c.dir.renewalInfo}/${certId}`, { tls: { ca: tc.init.rootPem } });
  assert.equal(ari.status, 200, ari.body.toString());
  assert.ok(Date.parse(ari.json.suggestedWindow.start) < Date.parse(ari.json.suggestedWindow.end));
  assert.match(String(ari.headers['retry-after']), /^\d+$/);

  const orders = await c.post(`${c.kid}/orders`, '');
  assert.ok(orders.json.orders.includes(url));

  // Key change: the new key works, the old one no longer does.
  const oldKey = c.key;
  const newKey = await clientKey('ES256');
  const inner = await new FlattenedSign(Buffer.from(JSON.stringify({ account: c.kid, oldKey: oldKey.jwk }))).setProtectedHeader({ alg: 'ES256', jwk: newKey.jwk, url: c.dir.keyChange }).sign(newKey.privateKey);
  const kc = await c.post(c.dir.keyChange, inner);
  assert.equal(kc.status, 200, kc.body.toString());
  const stale = await c.post(c.kid!, '');
  problem(stale, 403, 'malformed');
  c.key = newKey;
  assert.equal((await c.post(c.kid!, '')).status, 200);

  // Revoke by the account, then again: alreadyRevoked.
  const revoked = await c.post(c.dir.revokeCert, { certificate: readPemOrDer(pems[0], ['CERTIFICATE']).toString('base64url'), reason: 4 });
  assert.equal(revoked.status, 200, revoked.body.toString());
  assert.equal((await tc.ca.getCertificate(leaf.serial))?.status, 'revoked');
  // This server's OCSP says so as soon as the revocation has returned, as after /v1/revoke.
  const leafFile = tc.file('acme-leaf.pem', pems[0]);
  const ocsp = await opensslAsync(['ocsp', '-url', `${base}/ocsp`, '-issuer', tc.layout.serverCaCert, '-cert', leafFile, '-CAfile', tc.layout.rootCert, '-no_nonce']);
  assert.match(ocsp.stdout, /: revoked/, ocsp.stdout + ocsp.stderr);
  problem(await c.post(c.dir.revokeCert, { certificate: readPemOrDer(pems[0], ['CERTIFICATE']).toString('base64url') }), 409, 'alreadyRevoked');

  // Deactivation is final.
  const off = await c.post(c.kid!, { status: 'deactivated' });
  assert.equal(off.status, 200);
  assert.equal(off.json.status, 'deactivated');
  problem(await c.post(c.dir.newOrder, { identifiers: [{ type: 'ip', value: '127.0.0.1' }] }), 401, 'unauthorized');
});

test('ok/revoke by the certificate\'s own key (jwk), and authorization deactivation', async () => {
  const c = await client();
  await register(c);
  const { order } = await readyOrder(c);
  const certKey = generateKeyPair('p256').privateKey;
  const csr = buildCsr({ privateKey: certKey, commonName: '127.0.0.1', names: { dns: [], ip: ['127.0.0.1'], uri: [] } });
  const fin = await c.post(order.finalize, { csr: csr.toString('base64url') });
  assert.equal(fin.status, 200, fin.body.toString());
  const pem = (await c.post(fin.json.certificate, '')).body.toString();
  const der = readPemOrDer(pem, ['CERTIFICATE']);
  // A client holding only the certificate's key: its JWK signs the revocation.
  const holder = new AcmeTestClient(`${base}/acme/directory`, tc.init.rootPem, await keyFromNode(certKey));
  await holder.start();
  const r = await holder.post(holder.dir.revokeCert, { certificate: der.toString('base64url') }, { jwk: true });
  assert.equal(r.status, 200, r.body.toString());
  assert.equal((await tc.ca.getCertificate(parseCertificate(der).serial))?.status, 'revoked');

  const o2 = (await c.post(c.dir.newOrder, { identifiers: [{ type: 'ip', value: '127.0.0.2' }] })).json;
  const off = await c.post(o2.authorizations[0], { status: 'deactivated' });
  assert.equal(off.status, 200, off.body.toString());
  assert.equal(off.json.status, 'deactivated');
});

test('fail/a challenge answered wrongly: the challenge and the order invalid, with the error as a problem', async () => {
  const c = await client();
  await register(c);
  const created = await c.post(c.dir.newOrder, { identifiers: [{ type: 'ip', value: '127.0.0.1' }] });
  const authz = (await c.post(created.json.authorizations[0], '')).json;
  const ch = authz.challenges.find((x: any) => x.type === 'http-01');
  served.set(ch.token, `${ch.token}.not-the-thumbprint`);
  const r = await c.post(ch.url, {});
  assert.equal(r.status, 200);
  // The validator tries a few times, with a backoff, before it gives up.
  const failed = await waitFor('the challenge to be invalid', 30_000, async () => {
    const x = (await c.post(ch.url, '')).json;
    return x.status === 'invalid' ? x : undefined;
  });
  assert.equal(failed.error.type, `${URN}incorrectResponse`);
  assert.equal(failed.error.status, 403);
  assert.match(failed.error.detail, /127\.0\.0\.1/);
  assert.equal((await c.post(created.headers.location as string, '')).json.status, 'invalid');
});

test('ok/external account binding passes through to the lifecycle (RFC 8555 section 7.3.4); a wrong HMAC is unauthorized', async () => {
  const key = await createEabKey(tc.ca.store.acme, { names: ['127.0.0.1'], now: new Date() });
  const eab = async (c: AcmeTestClient, hmac: Buffer) => {
    const s = await new FlattenedSign(Buffer.from(JSON.stringify(c.key.jwk))).setProtectedHeader({ alg: 'HS256', kid: key.keyId, url: c.dir.newAccount }).sign(hmac);
    return { protected: s.protected, payload: s.payload, signature: s.signature };
  };
  const bad = await client();
  problem(await bad.post(bad.dir.newAccount, { termsOfServiceAgreed: true, externalAccountBinding: await eab(bad, crypto.randomBytes(32)) }, { jwk: true }), 403, 'unauthorized');
  const good = await client();
  const r = await good.post(good.dir.newAccount, { termsOfServiceAgreed: true, externalAccountBinding: await eab(good, key.hmacKey) }, { jwk: true });
  assert.equal(r.status, 201, r.body.toString());
  assert.equal(r.json.status, 'valid');
  problem(await good.post(good.dir.newAccount, { termsOfServiceAgreed: true, externalAccountBinding: 'not a jws' }, { jwk: true }), 400, 'malformed');
});

test('ok/replicas: a nonce from one server is good once at another behind the same URL', async () => {
  // A second `mutual serve` on the same CA and store, with the same public base URL (as behind a load balancer).
  const replica = await startCaServer({ ca: tc.ca, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port: 0, url: base, logger: pino({ level: 'silent' }), rateLimit: false });
  try {
    const c = await client();
    await register(c);
    const nonce = await c.freshNonce();
    const at = (u: string) => u.replace(base, `https://127.0.0.1:${replica.port}`);
    const r = await c.post(at(c.kid!), '', { url: c.kid, header: { nonce } });
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.json.status, 'valid');
    problem(await c.post(c.kid!, '', { header: { nonce } }), 400, 'badNonce');
  } finally {
    await replica.close();
  }
});

test('fail/mutated JWS bodies: always a 4xx ACME problem, never a 5xx, nothing issued', async () => {
  const seed = 1603;
  const rnd = prng(seed);
  const c = await client();
  await register(c);
  const before = await inventory();
  const good = await c.jws(c.dir.newOrder, { identifiers: [{ type: 'ip', value: '127.0.0.1' }] });
  const parsed = JSON.parse(good) as Record<string, string>;
  const headerJson = Buffer.from(parsed.protected, 'base64url').toString();
  const mutations: (() => string)[] = [
    // A byte of the JWS text flipped.
    () => { const b = Buffer.from(good); b[Math.floor(rnd() * b.length)] ^= 1 << Math.floor(rnd() * 7); return b.toString('latin1'); },
    // A byte of the protected header's JSON flipped (then re-encoded).
    () => { const h = Buffer.from(headerJson); h[Math.floor(rnd() * h.length)] ^= 1 << Math.floor(rnd() * 7); return JSON.stringify({ ...parsed, protected: h.toString('base64url') }); },
    // The body cut short.
    () => good.slice(0, Math.floor(rnd() * good.length)),
    // A member replaced by another type.
    () => JSON.stringify({ ...parsed, [['protected', 'payload', 'signature'][Math.floor(rnd() * 3)]]: [null, 1, {}, [], true][Math.floor(rnd() * 5)] }),
  ];
  for (let i = 0; i < 120; i++) {
    const raw = mutations[i % mutations.length]();
    const r = await c.post(c.dir.newOrder, '', { raw });
    assert.ok(r.status >= 400 && r.status < 500, `seed ${seed} case ${i}: ${r.status} ${r.body.toString().slice(0, 200)} for ${raw.slice(0, 200)}`);
    assert.equal(r.headers['content-type'], 'application/problem+json', `seed ${seed} case ${i}`);
    assert.match(r.json.type, /^urn:ietf:params:acme:error:/);
  }
  assert.deepEqual(await inventory(), before);
});

/** A test ClientKey over a node KeyObject (a certificate's key). */
async function keyFromNode(k: crypto.KeyObject): Promise<Awaited<ReturnType<typeof clientKey>>> {
  const { calculateJwkThumbprint } = await import('jose');
  const jwk = crypto.createPublicKey(k).export({ format: 'jwk' });
  return { alg: 'ES256', privateKey: k as unknown as CryptoKey, jwk, thumbprint: await calculateJwkThumbprint(jwk) };
}

test('fail/bad input: each refused with its ACME type and a fresh nonce, nothing issued', async (t) => {
  const c = await client();
  await register(c);
  const other = await clientKey();
  const before = await inventory();
  const orderUrl = (await c.post(c.dir.newOrder, { identifiers: [{ type: 'ip', value: '127.0.0.1' }] })).headers.location as string;
  const finalizeUrl = `${orderUrl}/finalize`;

  await t.test('fail/replayed-nonce', async () => {
    const nonce = await c.freshNonce();
    const first = await c.post(c.kid!, '', { header: { nonce } });
    assert.equal(first.status, 200);
    const replay = await c.post(c.kid!, '', { header: { nonce } });
    problem(replay, 400, 'badNonce');
    const fresh = replay.headers['replay-nonce'] as string;
    assert.match(fresh, /^[A-Za-z0-9_-]+$/);
    assert.notEqual(fresh, nonce);
    // The nonce of the refusal works.
    assert.equal((await c.post(c.kid!, '', { header: { nonce: fresh } })).status, 200);
  });
  await t.test('fail/wrong-url', async () => problem(await c.post(c.kid!, '', { url: `${base}/acme/acct/elsewhere` }), 403, 'unauthorized'));
  await t.test('fail/signed-by-another-key', async () => problem(await c.post(c.kid!, '', { signWith: other }), 403, 'malformed'));
  await t.test('fail/alg-none', async () => {
    const raw = AcmeTestClient.unsigned({ alg: 'none', kid: c.kid, nonce: await c.freshNonce(), url: c.kid }, '', '');
    const r = await c.post(c.kid!, '', { raw });
    problem(r, 400, 'badSignatureAlgorithm');
    assert.deepEqual(r.json.algorithms, ['ES256', 'ES384', 'RS256', 'EdDSA']);
  });
  await t.test('fail/HS256', async () => {
    const s = await new FlattenedSign(new Uint8Array()).setProtectedHeader({ alg: 'HS256', kid: c.kid, nonce: await c.freshNonce(), url: c.kid }).sign(crypto.randomBytes(32));
    problem(await c.post(c.kid!, '', { raw: JSON.stringify(s) }), 400, 'badSignatureAlgorithm');
  });
  await t.test('fail/jwk-with-private-key', async () => {
    const withD = { ...other.jwk, d: Buffer.alloc(32, 1).toString('base64url') };
    problem(await c.post(c.dir.newAccount, { termsOfServiceAgreed: true }, { jwk: true, header: { jwk: withD } }), 400, 'malformed');
  });
  await t.test('fail/oversized', async () => {
    const r = await c.post(c.kid!, '', { raw: JSON.stringify({ protected: 'eyJ9', payload: 'A'.repeat(MAX_JWS_BYTES), signature: 'AA' }) });
    problem(r, 413, 'malformed');
  });
  await t.test('fail/kid-of-another-server', async () => problem(await c.post(c.kid!, '', { header: { kid: 'https://acme.example.org/acme/acct/abc' } }), 400, 'malformed'));
  await t.test('fail/kid-unknown', async () => problem(await c.post(c.kid!, '', { header: { kid: `${base}/acme/acct/nosuchaccount` } }), 400, 'accountDoesNotExist'));
  await t.test('fail/account-of-another-kid', async () => {
    const d = await client();
    await register(d);
    problem(await c.post(d.kid!, ''), 403, 'unauthorized');
  });
  await t.test('fail/GET-on-a-POST-as-GET-resource', async () => {
    const r = await c.get(orderUrl);
    problem(r, 405, 'malformed');
    assert.equal(r.headers.allow, 'POST');
  });
  await t.test('fail/POST-on-new-nonce', async () => {
    const r = await c.post(c.dir.newNonce, '');
    problem(r, 405, 'malformed');
    assert.equal(r.headers.allow, 'GET, HEAD');
  });
  await t.test('fail/unknown-acme-path', async () => problem(await c.post(`${base}/acme/nothing-here`, ''), 404, 'malformed'));
  await t.test('fail/wrong-content-type', async () => problem(await c.post(c.kid!, '', { contentType: 'application/json' }), 415, 'malformed'));
  await t.test('fail/payload-not-an-object', async () => problem(await c.post(c.dir.newOrder, ['x']), 400, 'malformed'));
  await t.test('fail/unknown-account-key-on-onlyReturnExisting', async () => {
    const e = new AcmeTestClient(`${base}/acme/directory`, tc.init.rootPem, other);
    await e.start();
    problem(await e.post(e.dir.newAccount, { onlyReturnExisting: true }, { jwk: true }), 400, 'accountDoesNotExist');
  });
  await t.test('fail/finalize-before-ready', async () => problem(await c.post(finalizeUrl, { csr: csrFor().toString('base64url') }), 403, 'orderNotReady'));
  await t.test('fail/unsupported-identifier', async () => problem(await c.post(c.dir.newOrder, { identifiers: [{ type: 'email', value: 'a@b' }] }), 400, 'unsupportedIdentifier'));
  await t.test('fail/terms-not-agreed', async () => {
    const e = new AcmeTestClient(`${base}/acme/directory`, tc.init.rootPem, await clientKey());
    await e.start();
    const r = await e.post(e.dir.newAccount, { contact: ['mailto:ops@acme.internal'] }, { jwk: true });
    problem(r, 403, 'userActionRequired');
    assert.ok(String(r.headers.link).includes(`<${TOS}>;rel="terms-of-service"`));
  });
  await t.test('fail/rejected-identifier', async () => problem(await c.post(c.dir.newOrder, { identifiers: [{ type: 'dns', value: 'www.example.com' }] }), 400, 'rejectedIdentifier'));
  await t.test('fail/key-change-to-a-key-in-use', async () => {
    const d = await client();
    await register(d);
    const inner = await new FlattenedSign(Buffer.from(JSON.stringify({ account: c.kid, oldKey: c.key.jwk }))).setProtectedHeader({ alg: d.key.alg, jwk: d.key.jwk, url: c.dir.keyChange }).sign(d.key.privateKey);
    const r = await c.post(c.dir.keyChange, inner);
    problem(r, 409, 'malformed');
    assert.equal(r.headers.location, d.kid, 'Location names the account that has the key (RFC 8555 section 7.3.5)');
  });
  await t.test('fail/acme-not-on-the-plain-http-listener', async () => {
    const r = await new Promise<number>((resolve, reject) => http.get(`${srv.publicUrl}/acme/directory`, (res) => {
      res.resume();
      resolve(res.statusCode!);
    }).on('error', reject));
    assert.equal(r, 404);
  });
  assert.deepEqual(await inventory(), before, 'no bad request issued anything');
});

test('ok/without an https base URL, ACME URLs follow the request\'s Host (the plain listener may be --url)', async () => {
  const plainUrl = await startCaServer({ ca: tc.ca, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port: 0, url: 'http://127.0.0.1:1', logger: pino({ level: 'silent' }), rateLimit: false });
  try {
    const here = `https://127.0.0.1:${plainUrl.port}`;
    const c = await new AcmeTestClient(`${here}/acme/directory`, tc.init.rootPem, await clientKey()).start();
    assert.equal(c.dir.newAccount, `${here}/acme/new-account`);
    const r = await register(c);
    assert.equal(r.status, 201, r.body.toString());
    assert.match(c.kid!, new RegExp(`^${here}/acme/acct/`));
    // A Host no URL can be built on (sent raw: Node's client would check the certificate against it).
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = tls.connect({ host: '127.0.0.1', port: plainUrl.port, ca: tc.init.rootPem, servername: 'localhost' }, () => sock.end('GET /acme/directory HTTP/1.1\r\nHost: a_b\r\nConnection: close\r\n\r\n'));
      let text = '';
      sock.on('data', (d) => (text += d));
      sock.on('end', () => resolve(text));
      sock.on('error', reject);
    });
    assert.match(raw, /^HTTP\/1\.1 400 /);
    assert.match(raw, /urn:ietf:params:acme:error:malformed/);
  } finally {
    await plainUrl.close();
  }
});

test('fail/a server with ACME turned off answers 404 under /acme/ (ACME_DISABLED)', async () => {
  const off = await startCaServer({ ca: tc.ca, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), rateLimit: false, acme: false });
  try {
    const r = await send(`${off.url}/acme/directory`, { tls: { ca: tc.init.rootPem } });
    assert.equal(r.status, 404);
    assert.equal(r.headers['content-type'], 'application/problem+json');
    assert.equal(r.json.type, `${URN}malformed`);
  } finally {
    await off.close();
  }
});
