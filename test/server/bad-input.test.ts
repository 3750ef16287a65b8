/**
 * Bad input against a real `mutual serve`: malformed and oversized bodies, garbage CSRs, forbidden
 * names, replayed/expired/forged tokens, renewal with a revoked or expired certificate, the wrong
 * client certificates on admin routes, unknown routes and rate limits. Each is answered with a coded
 * 4xx problem; afterwards nothing was issued by any of them and the server still answers.
 */
import { test, before, after } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { loadTokenKey, mintToken } from '../../src/ca/tokens.ts';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { readPemOrDer, toPem } from '../../src/core/pem.ts';
import { readEncryptedKey } from '../../src/keys/encrypted-key-file.ts';
import { MAX_BODY_BYTES } from '../../src/server/http-util.ts';
import type { CaServer } from '../../src/server/ca-server.ts';
import { makeTestCa, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';
import { requireTool } from '../helpers/tools.ts';
import { opensslAsync, send, startTestServer, type SendAnswer, type SendTls, type TestServer } from '../helpers/server.ts';

const TD = 'acme.internal';
const ID = (svc: string) => `spiffe://${TD}/prod/${svc}`;
const noNames = { dns: [], ip: [], uri: [] };

let s: TestServer;
let foreign: TestCa;
/** Serials in the inventory before any test ran. */
let initial: Set<string>;
/** Serials the tests issued on purpose (the good requests beside the bad ones). */
const legit = new Set<string>();
let root: string;
/** A client certificate issued in `before` (its serial is looked up on admin routes). */
let clientSerial = '';
/** TLS identities the cases present. */
const who: Record<'none' | 'admin' | 'client' | 'serverCert' | 'forgedByServerCa' | 'foreignAdmin' | 'revokedAdmin', SendTls> = {} as never;
let n = 0;
const tmp = (name: string) => path.join(s.tc.dir, `${n++}-${name}`);

/** A PEM CSR made by the project's builder for the given names (fresh P-256 key). */
function csrFor(names: { dns?: string[]; ip?: string[]; uri?: string[] }, cn = 'bad'): { csr: string; key: crypto.KeyObject } {
  const { privateKey } = generateKeyPair('p256');
  return { csr: toPem(buildCsr({ privateKey, commonName: cn, names: { ...noNames, ...names } }), 'CERTIFICATE REQUEST'), key: privateKey };
}

/** Issues directly through the CA (as the CLI would) and remembers the serial as a good issuance. */
async function issueDirect(role: 'server' | 'client', names: { dns?: string[]; uri?: string[] }, lifetimeSeconds?: number): Promise<SendTls & { serial: string; cert: string; key: string }> {
  const r = await s.tc.ca.issue({ role, names: { ...noNames, ...names }, lifetimeSeconds, actor: 'test' });
  legit.add(r.serial);
  return { ca: root, serial: r.serial, cert: r.certificatePem, key: r.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
}

/** A request to the main server. */
const call = (p: string, o: Omit<Parameters<typeof send>[1], 'tls'> & { as?: SendTls } = {}): Promise<SendAnswer> => send(`${s.url}${p}`, { ...o, tls: o.as ?? who.admin });

/** Asserts a problem+json answer with this status and code. */
function problem(r: SendAnswer, status: number, code: string, what: string): void {
  assert.equal(r.code, code, `${what}: ${r.status} ${r.body.toString('utf8').slice(0, 300)}`);
  assert.equal(r.status, status, what);
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/, what);
  assert.equal(r.json.status, status, what);
  assert.match(r.json.requestId, /^[0-9a-f]{12}-[0-9a-z]+$/, what);
  assert.equal(r.headers['x-request-id'], r.json.requestId, what);
}

/** A token for names, made over the API. */
async function token(names: string[], ttlSeconds = 300): Promise<string> {
  const r = await call('/v1/tokens', { body: { names, ttlSeconds } });
  assert.equal(r.status, 201, r.body.toString());
  return r.json.token;
}

/** Enrolls with a token and a CSR; remembers what it issued. */
async function enrollWith(tok: string, csr: string): Promise<SendAnswer> {
  const r = await send(`${s.url}/v1/enroll`, { body: { csr }, headers: { authorization: `Bearer ${tok}` }, tls: who.none });
  if (r.status === 201) legit.add(r.json.serial);
  return r;
}

before(async () => {
  s = await startTestServer();
  root = s.tc.init.rootPem;
  initial = new Set((await s.tc.ca.list({ limit: 1_000_000 })).map((r) => r.serial));
  who.none = { ca: root };
  who.admin = { ca: root, cert: s.admin.cert, key: s.admin.key };
  const client = await issueDirect('client', { uri: [ID('payments')] });
  clientSerial = client.serial;
  who.client = client;
  who.serverCert = await issueDirect('server', { dns: [`svc.${TD}`] });
  // Another CA of the same trust domain: its admin certificate must mean nothing here.
  foreign = await makeTestCa();
  who.foreignAdmin = { ca: root, cert: foreign.init.admin.certificatePem, key: foreign.init.admin.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
  // A second admin, revoked before use.
  const second = await issueDirect('client', { uri: [`spiffe://${TD}/admin/second`] });
  const rv = await call('/v1/revoke', { body: { serial: second.serial, reason: 'keyCompromise' } });
  assert.equal(rv.status, 200);
  who.revokedAdmin = second;
});
after(async () => {
  await s?.close();
  await foreign?.close();
});

// ------------------------------------------------------------------------------------------------

test('fail/malformed-bodies', async (t: TestContext) => {
  const good = csrFor({ dns: [`bad-body.${TD}`] }).csr;
  const cases: { name: string; body: string | Buffer | object; headers?: Record<string, string>; chunked?: boolean; status: number; code: string }[] = [
    { name: 'fail/not-json', body: '{"profile": "server", ', headers: { 'content-type': 'application/json' }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/empty-body', body: '', headers: { 'content-type': 'application/json' }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/json-array', body: '[1, 2]', headers: { 'content-type': 'application/json' }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/json-string', body: '"csr"', headers: { 'content-type': 'application/json' }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/json-null', body: 'null', headers: { 'content-type': 'application/json' }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/json-number', body: '42', headers: { 'content-type': 'application/json' }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/wrong-content-type', body: JSON.stringify({ profile: 'server', csr: good }), headers: { 'content-type': 'text/plain' }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/form-content-type', body: `profile=server&csr=${encodeURIComponent(good)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/oversized-declared', body: JSON.stringify({ profile: 'server', csr: good, pad: 'x'.repeat(MAX_BODY_BYTES) }), status: 413, code: 'REQUEST_TOO_LARGE' },
    { name: 'fail/oversized-chunked', body: JSON.stringify({ profile: 'server', csr: good, pad: 'x'.repeat(MAX_BODY_BYTES) }), headers: { 'content-type': 'application/json' }, chunked: true, status: 413, code: 'REQUEST_TOO_LARGE' },
    { name: 'fail/missing-csr', body: { profile: 'server' }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/csr-not-a-string', body: { profile: 'server', csr: { pem: good } }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/unknown-profile', body: { profile: 'ca', csr: good }, status: 400, code: 'POLICY_UNKNOWN_PROFILE' },
    { name: 'fail/days-negative', body: { profile: 'server', csr: good, days: -1 }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/days-fraction', body: { profile: 'server', csr: good, days: 1.5 }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/days-too-many', body: { profile: 'server', csr: good, days: 100_000 }, status: 400, code: 'POLICY_VALIDITY_TOO_LONG' },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      let r: SendAnswer;
      try {
        r = await call('/v1/sign', { body: c.body, headers: c.headers, chunked: c.chunked });
      } catch (e) {
        assert.fail(`${c.name}: the connection failed instead of a coded answer (${(e as Error).message})`);
      }
      problem(r, c.status, c.code, c.name);
    });
  }
});

test('fail/garbage-csrs-and-forbidden-names', async (t: TestContext) => {
  const good = csrFor({ dns: [`bad-csr.${TD}`] });
  const der = readPemOrDer(good.csr, ['CERTIFICATE REQUEST']);
  const flipped = Buffer.from(der);
  flipped[flipped.length - 5] ^= 0x01;
  const cases: { name: string; profile?: string; csr: string; status: number; code: string }[] = [
    { name: 'fail/not-pem', csr: 'garbage', status: 400, code: 'PEM_MALFORMED' },
    { name: 'fail/pem-of-junk', csr: toPem(Buffer.from('this is not a CSR at all'), 'CERTIFICATE REQUEST'), status: 400, code: 'CSR_MALFORMED' },
    { name: 'fail/pem-of-empty-sequence', csr: toPem(Buffer.from([0x30, 0x00]), 'CERTIFICATE REQUEST'), status: 400, code: 'CSR_MALFORMED' },
    { name: 'fail/truncated', csr: toPem(der.subarray(0, der.length - 10), 'CERTIFICATE REQUEST'), status: 400, code: 'CSR_MALFORMED' },
    { name: 'fail/trailing-bytes', csr: toPem(Buffer.concat([der, Buffer.from([0, 0])]), 'CERTIFICATE REQUEST'), status: 400, code: 'CSR_MALFORMED' },
    { name: 'fail/a-certificate-not-a-csr', csr: s.admin.cert, status: 400, code: 'PEM_WRONG_TYPE' },
    { name: 'fail/bad-signature', csr: toPem(flipped, 'CERTIFICATE REQUEST'), status: 400, code: 'CSR_BAD_SIGNATURE' },
    { name: 'fail/dns-outside-policy', csr: csrFor({ dns: ['bad.example.com'] }).csr, status: 403, code: 'POLICY_NAME_NOT_ALLOWED' },
    { name: 'fail/ip-outside-policy', csr: csrFor({ ip: ['10.9.9.9'] }).csr, status: 403, code: 'POLICY_NAME_NOT_ALLOWED' },
    { name: 'fail/wildcard', csr: csrFor({ dns: [`*.${TD}`] }).csr, status: 403, code: 'POLICY_NAME_NOT_ALLOWED' },
    { name: 'fail/server-without-names', csr: csrFor({}).csr, status: 400, code: 'POLICY_NO_NAMES' },
    { name: 'fail/client-without-identity', profile: 'client', csr: csrFor({}).csr, status: 400, code: 'POLICY_NO_NAMES' },
    { name: 'fail/client-other-trust-domain', profile: 'client', csr: csrFor({ uri: ['spiffe://evil.internal/prod/bad'] }).csr, status: 400, code: 'POLICY_BAD_IDENTITY' },
    { name: 'fail/client-identity-not-spiffe', profile: 'client', csr: csrFor({ uri: ['https://bad.acme.internal/x'] }).csr, status: 400, code: 'POLICY_BAD_IDENTITY' },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => problem(await call('/v1/sign', { body: { profile: c.profile ?? 'server', csr: c.csr } }), c.status, c.code, c.name));
  }
  // CSRs asking for what the profile decides, made by OpenSSL as a user would.
  if (!requireTool(t, 'openssl')) return;
  const ossl = [
    { name: 'fail/csr-asks-for-ca', profile: 'server', ext: ['-addext', `subjectAltName=DNS:bad-ca.${TD}`, '-addext', 'basicConstraints=critical,CA:TRUE'], code: 'CSR_FORBIDDEN_EXTENSION', status: 400 },
    { name: 'fail/client-csr-asks-for-serverauth', profile: 'client', ext: ['-addext', `subjectAltName=URI:${ID('bad-eku')}`, '-addext', 'extendedKeyUsage=serverAuth'], code: 'CSR_FORBIDDEN_EXTENSION', status: 400 },
    { name: 'fail/weak-rsa-key', profile: 'server', ext: ['-addext', `subjectAltName=DNS:bad-rsa.${TD}`], newkey: ['-newkey', 'rsa:1024'], code: 'KEY_WEAK', status: 400 },
  ];
  for (const c of ossl) await t.test(c.name, async () => {
    const csrFile = tmp('req.csr');
    const r0 = await opensslAsync(['req', '-new', ...(c.newkey ?? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']), '-nodes', '-keyout', tmp('key.pem'), '-subj', '/CN=bad', ...c.ext, '-out', csrFile]);
    assert.equal(r0.status, 0, r0.stderr);
    const r = await call('/v1/sign', { body: { profile: c.profile, csr: fs.readFileSync(csrFile, 'utf8') } });
    problem(r, c.status, c.code, c.name);
  });
});

test('fail/tokens', async (t: TestContext) => {
  const tokenKey = loadTokenKey(s.tc.layout.keysDir, TEST_PASSPHRASE);
  const rootFingerprint = crypto.createHash('sha256').update(readPemOrDer(root, ['CERTIFICATE'])).digest('hex');
  const names = { ...noNames, uri: [ID('bad-token')] };
  const csr = csrFor({ uri: [ID('bad-token')] }).csr;
  const valid = await token([ID('bad-token')]);
  const [h, p, sig] = valid.split('.');
  const mid = Math.floor(sig.length / 2);
  const flippedSig = `${h}.${p}.${sig.slice(0, mid)}${sig[mid] === 'A' ? 'B' : 'A'}${sig.slice(mid + 1)}`;
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  const widened = `${h}.${Buffer.from(JSON.stringify({ ...claims, sans: { ...claims.sans, uri: [`spiffe://${TD}/admin/bad`] } })).toString('base64url')}.${sig}`;
  const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${p}.`;
  const otherKey = (await mintToken({ key: generateKeyPair('p256').privateKey, names, ttlSeconds: 300, rootFingerprint, madeBy: 'evil' })).token;
  const expired = (await mintToken({ key: tokenKey, names, ttlSeconds: 60, rootFingerprint, madeBy: 'test', now: new Date(Date.now() - 3_600_000) })).token;
  const cases: { name: string; auth?: string; status: number; code: string }[] = [
    { name: 'fail/no-authorization', status: 401, code: 'AUTH_REQUIRED' },
    { name: 'fail/basic-auth', auth: 'Basic YWRtaW46YWRtaW4=', status: 401, code: 'AUTH_REQUIRED' },
    { name: 'fail/garbage-token', auth: 'Bearer garbage', status: 401, code: 'TOKEN_INVALID' },
    { name: 'fail/oversized-token', auth: `Bearer ${'a'.repeat(9000)}`, status: 401, code: 'TOKEN_INVALID' },
    { name: 'fail/flipped-signature', auth: `Bearer ${flippedSig}`, status: 401, code: 'TOKEN_INVALID' },
    { name: 'fail/widened-names-same-signature', auth: `Bearer ${widened}`, status: 401, code: 'TOKEN_INVALID' },
    { name: 'fail/alg-none', auth: `Bearer ${unsigned}`, status: 401, code: 'TOKEN_INVALID' },
    { name: 'fail/signed-by-another-key', auth: `Bearer ${otherKey}`, status: 401, code: 'TOKEN_INVALID' },
    { name: 'fail/expired', auth: `Bearer ${expired}`, status: 401, code: 'TOKEN_EXPIRED' },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const r = await send(`${s.url}/v1/enroll`, { body: { csr }, headers: c.auth ? { authorization: c.auth } : {}, tls: who.none });
      problem(r, c.status, c.code, c.name);
    });
  }
  // None of those spent the valid token.
  const ok = await enrollWith(valid, csr);
  assert.equal(ok.status, 201, ok.body.toString());
  problem(await enrollWith(valid, csr), 401, 'TOKEN_REPLAYED', 'fail/replayed');
});

test('fail/token-names', async (t: TestContext) => {
  const tok = await token([ID('bad-names-a')]);
  const cases = [
    { name: 'fail/other-identity', csr: csrFor({ uri: [ID('bad-names-b')] }).csr },
    { name: 'fail/extra-dns-name', csr: csrFor({ uri: [ID('bad-names-a')], dns: [`bad-extra.${TD}`] }).csr },
    { name: 'fail/admin-identity', csr: csrFor({ uri: [`spiffe://${TD}/admin/bad`] }).csr },
  ];
  for (const c of cases) await t.test(c.name, async () => problem(await enrollWith(tok, c.csr), 403, 'TOKEN_NAME_MISMATCH', c.name));
  // A server token does not give a client certificate and vice versa.
  const serverTok = await token([`bad-role.${TD}`]);
  problem(await enrollWith(serverTok, csrFor({ uri: [ID('bad-role')] }).csr), 403, 'TOKEN_NAME_MISMATCH', 'fail/server-token-for-identity');
  // The token is still good for its own names.
  const r = await enrollWith(tok, csrFor({ uri: [ID('bad-names-a')] }).csr);
  assert.equal(r.status, 201);
  assert.equal(r.json.identity, ID('bad-names-a'));
});

test('fail/token-forbidden-names-and-ttl', async (t: TestContext) => {
  const cases: { name: string; body: object; status: number; code: string }[] = [
    { name: 'fail/dns-outside-policy', body: { names: ['bad.example.com'] }, status: 403, code: 'POLICY_NAME_NOT_ALLOWED' },
    { name: 'fail/identity-other-trust-domain', body: { names: ['spiffe://evil.internal/prod/x'] }, status: 400, code: 'POLICY_BAD_IDENTITY' },
    { name: 'fail/no-names', body: { names: [] }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/names-not-strings', body: { names: [1, 2] }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/names-missing', body: {}, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/ttl-too-long', body: { names: [`ttl.${TD}`], ttlSeconds: 365 * 86_400 }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/ttl-not-a-number', body: { names: [`ttl.${TD}`], ttlSeconds: 'ten minutes' }, status: 400, code: 'REQUEST_MALFORMED' },
    { name: 'fail/ttl-zero', body: { names: [`ttl.${TD}`], ttlSeconds: 0 }, status: 400, code: 'REQUEST_MALFORMED' },
  ];
  for (const c of cases) await t.test(c.name, async () => problem(await call('/v1/tokens', { body: c.body }), c.status, c.code, c.name));
  // Only an admin makes tokens.
  problem(await call('/v1/tokens', { body: { names: [ID('x')] }, as: who.client }), 403, 'AUTH_FORBIDDEN', 'fail/token-by-non-admin');
  problem(await call('/v1/tokens', { body: { names: [ID('x')] }, as: who.none }), 401, 'AUTH_REQUIRED', 'fail/token-without-cert');
});

test('fail/bad-csr-does-not-burn-the-token', async (t: TestContext) => {
  const id = ID('bad-csr-burn');
  const good = csrFor({ uri: [id] }).csr;
  const der = readPemOrDer(good, ['CERTIFICATE REQUEST']);
  const flipped = Buffer.from(der);
  flipped[flipped.length - 5] ^= 0x01;
  const cases = [
    { name: 'fail/garbage-csr', csr: 'garbage', code: 'PEM_MALFORMED' },
    { name: 'fail/truncated-csr', csr: toPem(der.subarray(0, der.length - 10), 'CERTIFICATE REQUEST'), code: 'CSR_MALFORMED' },
    // Structurally fine but without proof of possession: refused before the token is spent.
    { name: 'fail/bad-signature-csr', csr: toPem(flipped, 'CERTIFICATE REQUEST'), code: 'CSR_BAD_SIGNATURE' },
  ];
  if (requireTool(t, 'openssl')) {
    // A well-formed CSR for the token's identity, with a key the CA refuses.
    const csrFile = tmp('weak.csr');
    const r = await opensslAsync(['req', '-new', '-newkey', 'rsa:1024', '-nodes', '-keyout', tmp('weak.key'), '-subj', '/CN=weak', '-addext', `subjectAltName=URI:${id}`, '-out', csrFile]);
    assert.equal(r.status, 0, r.stderr);
    cases.push({ name: 'fail/weak-key-csr', csr: fs.readFileSync(csrFile, 'utf8'), code: 'KEY_WEAK' });
  }
  for (const c of cases) await t.test(c.name, async () => {
    const tok = await token([id]);
    const r = await enrollWith(tok, c.csr);
    assert.equal(r.code, c.code, `${c.name}: ${r.body}`);
    // The same token then works with a good CSR, once.
    const retry = await enrollWith(tok, good);
    assert.equal(retry.status, 201, `${c.name}: the failed request spent the token (${retry.code})`);
    problem(await enrollWith(tok, good), 401, 'TOKEN_REPLAYED', `${c.name}: then replayed`);
  });
});

test('fail/token-used-twice-at-once', async () => {
  const tok = await token([ID('bad-race')]);
  const csr = csrFor({ uri: [ID('bad-race')] }).csr;
  const results = await Promise.all(Array.from({ length: 8 }, () => enrollWith(tok, csr)));
  assert.equal(results.filter((r) => r.status === 201).length, 1);
  for (const r of results.filter((x) => x.status !== 201)) problem(r, 401, 'TOKEN_REPLAYED', 'fail/concurrent-replay');
});

test('fail/renewal', async () => {
  // A revoked certificate.
  const revoked = await issueDirect('client', { uri: [ID('bad-renew-revoked')] });
  assert.equal((await call('/v1/revoke', { body: { serial: revoked.serial } })).status, 200);
  problem(await call('/v1/renew', { body: {}, as: revoked }), 403, 'CERT_REVOKED', 'fail/revoked');
  // No client certificate.
  problem(await call('/v1/renew', { body: {}, as: who.none }), 401, 'AUTH_REQUIRED', 'fail/no-certificate');
  // A certificate of another CA (same trust domain and identity form).
  problem(await call('/v1/renew', { body: {}, as: who.foreignAdmin }), 403, 'RENEW_NOT_ALLOWED', 'fail/other-ca');
  // A new key's CSR cannot change the names: the renewal keeps the certificate's own.
  const holder = await issueDirect('client', { uri: [ID('bad-renew-names')] });
  const r = await call('/v1/renew', { body: { csr: csrFor({ uri: [`spiffe://${TD}/admin/bad`] }).csr }, as: holder });
  if (r.status === 201) {
    legit.add(r.json.serial);
    assert.equal(r.json.identity, ID('bad-renew-names'), 'fail/renew-csr-with-other-names: identity changed');
  } else assert.ok(r.status >= 400 && r.status < 500 && r.code, `fail/renew-csr-with-other-names: ${r.status}`);
  // A bad CSR on renewal.
  problem(await call('/v1/renew', { body: { csr: 'garbage' }, as: holder }), 400, 'PEM_MALFORMED', 'fail/renew-garbage-csr');
  problem(await call('/v1/renew', { body: '[]', headers: { 'content-type': 'application/json' }, as: holder }), 400, 'REQUEST_MALFORMED', 'fail/renew-non-object');
});

test('fail/renewal-of-expired-certificate', async () => {
  // The certificate lives a minute; servers whose clock is an hour ahead see it expired.
  const cert = await issueDirect('client', { uri: [ID('bad-renew-expired')] }, 60);
  const later = () => new Date(Date.now() + 3_600_000);
  const strict = await s.another({ now: later });
  const graceful: CaServer = await s.another({ now: later, renewalGraceSeconds: 2 * 3600 });
  const tooShortGrace: CaServer = await s.another({ now: later, renewalGraceSeconds: 600 });
  const at = (srv: CaServer) => `https://127.0.0.1:${srv.port}/v1/renew`;
  problem(await send(at(strict), { body: {}, tls: cert }), 403, 'CERT_EXPIRED', 'fail/expired-no-grace');
  problem(await send(at(tooShortGrace), { body: {}, tls: cert }), 403, 'CERT_EXPIRED', 'fail/expired-beyond-grace');
  const ok = await send(at(graceful), { body: {}, tls: cert });
  assert.equal(ok.status, 201, `ok/expired-within-grace: ${ok.body}`);
  legit.add(ok.json.serial);
  const row = await s.tc.ca.store.getCertificate(ok.json.serial);
  assert.equal(row?.renewedFrom, cert.serial);
});

test('fail/admin-routes-with-the-wrong-certificate', async (t: TestContext) => {
  const cases: { name: string; as: keyof typeof who; status: number; code: string }[] = [
    { name: 'fail/no-certificate', as: 'none', status: 401, code: 'AUTH_REQUIRED' },
    { name: 'fail/client-not-admin', as: 'client', status: 403, code: 'AUTH_FORBIDDEN' },
    { name: 'fail/server-certificate-as-client', as: 'serverCert', status: 403, code: 'AUTH_FORBIDDEN' },
    { name: 'fail/admin-of-another-ca', as: 'foreignAdmin', status: 403, code: 'AUTH_FORBIDDEN' },
    { name: 'fail/revoked-admin', as: 'revokedAdmin', status: 403, code: 'CERT_REVOKED' },
  ];
  if (requireTool(t, 'openssl')) {
    // The worst case: a certificate from the server CA (trusted by the same root) with EKU
    // clientAuth and an admin identity. OpenSSL alone would accept the chain; the server must not.
    const caKey = tmp('server-ca.key');
    fs.writeFileSync(caKey, readEncryptedKey(s.tc.layout.serverCaKey, TEST_PASSPHRASE).export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    const key = tmp('forged.key');
    const csrFile = tmp('forged.csr');
    const ext = tmp('forged.ext');
    fs.writeFileSync(ext, ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth', `subjectAltName=URI:spiffe://${TD}/admin/forged`, 'authorityKeyIdentifier=keyid'].join('\n'));
    const certFile = tmp('forged.pem');
    assert.equal((await opensslAsync(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', '/CN=forged', '-out', csrFile])).status, 0);
    const x = await opensslAsync(['x509', '-req', '-in', csrFile, '-CA', s.files.serverCa, '-CAkey', caKey, '-set_serial', '0x4bad', '-days', '1', '-extfile', ext, '-out', certFile]);
    assert.equal(x.status, 0, x.stderr);
    who.forgedByServerCa = { ca: root, cert: fs.readFileSync(certFile, 'utf8'), key: fs.readFileSync(key, 'utf8') };
    cases.push({ name: 'fail/server-ca-cert-with-admin-identity', as: 'forgedByServerCa', status: 403, code: 'AUTH_FORBIDDEN' });
  }
  const routes = [
    { path: '/v1/certificates' },
    { path: `/v1/certificates/${clientSerial}` },
    { path: '/v1/sign', body: { profile: 'server', csr: csrFor({ dns: [`bad-admin.${TD}`] }).csr } },
    { path: '/v1/tokens', body: { names: [`spiffe://${TD}/admin/bad`] } },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      for (const route of routes) problem(await call(route.path, { body: route.body, as: who[c.as] }), c.status, c.code, `${c.name} ${route.path}`);
    });
  }
  // Revocation: admins, or the holder of that very certificate; nobody else.
  const victim = await issueDirect('client', { uri: [ID('bad-victim')] });
  problem(await call('/v1/revoke', { body: { serial: victim.serial }, as: who.client }), 403, 'AUTH_FORBIDDEN', 'fail/revoke-someone-else');
  problem(await call('/v1/revoke', { body: { serial: victim.serial }, as: who.none }), 401, 'AUTH_REQUIRED', 'fail/revoke-without-cert');
  problem(await call('/v1/revoke', { body: { serial: victim.serial }, as: who.foreignAdmin }), 403, 'AUTH_FORBIDDEN', 'fail/revoke-by-other-ca-admin');
  assert.equal((await s.tc.ca.store.getCertificate(victim.serial))?.status, 'valid');
  problem(await call('/v1/revoke', { body: { serial: victim.serial, reason: 'because' } }), 400, 'REVOKE_BAD_REASON', 'fail/revoke-bad-reason');
  problem(await call('/v1/revoke', { body: { serial: 'ab'.repeat(16) } }), 404, 'CERT_NOT_FOUND', 'fail/revoke-unknown-serial');
  problem(await call('/v1/revoke', { body: { serial: 'not hex' } }), 400, 'SERIAL_INVALID', 'fail/revoke-bad-serial');
  problem(await call('/v1/revoke', { body: {} }), 400, 'REQUEST_MALFORMED', 'fail/revoke-no-serial');
  assert.equal((await s.tc.ca.store.getCertificate(victim.serial))?.status, 'valid');
});

test('fail/unknown-routes-and-methods', async (t: TestContext) => {
  const cases = [
    { name: 'fail/unknown-path', path: '/nope', status: 404, code: 'NOT_FOUND' },
    { name: 'fail/unknown-v1-path', path: '/v1/nope', status: 404, code: 'NOT_FOUND' },
    { name: 'fail/unknown-ca', path: '/ca/root.pem', status: 404, code: 'NOT_FOUND' },
    { name: 'fail/unknown-crl', path: '/crl/other.crl', status: 404, code: 'NOT_FOUND' },
    { name: 'fail/path-traversal', path: '/crl/..%2fkeys%2ftoken.key.pem', status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/get-sign', path: '/v1/sign', status: 405, code: 'METHOD_NOT_ALLOWED' },
    { name: 'fail/delete-certificates', path: '/v1/certificates', method: 'DELETE', status: 405, code: 'METHOD_NOT_ALLOWED' },
    { name: 'fail/post-health', path: '/health', method: 'POST', status: 404, code: 'NOT_FOUND' },
  ];
  for (const c of cases) await t.test(c.name, async () => problem(await call(c.path, { method: c.method }), c.status, c.code, c.name));
});

test('fail/rate-limited', async () => {
  const limited = await s.another({ rateLimit: { perSecond: 1, burst: 2 } });
  const u = `https://127.0.0.1:${limited.port}`;
  const first = await send(`${u}/v1/certificates`, { tls: who.admin });
  const second = await send(`${u}/v1/certificates`, { tls: who.admin });
  assert.deepEqual([first.status, second.status], [200, 200]);
  const third = await send(`${u}/v1/certificates`, { tls: who.admin });
  problem(third, 429, 'RATE_LIMITED', 'fail/third-quick-call');
  assert.ok(Number(third.headers['retry-after']) >= 1, 'Retry-After');
  // Unauthenticated callers are limited too (before any work is done for them).
  problem(await send(`${u}/v1/enroll`, { body: {}, headers: { authorization: 'Bearer x' }, tls: who.none }), 429, 'RATE_LIMITED', 'fail/enroll-while-limited');
  // Health and OCSP are not API calls and stay available.
  assert.equal((await send(`${u}/health`, { tls: who.none })).status, 200);
  // The bucket refills.
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal((await send(`${u}/v1/certificates`, { tls: who.admin })).status, 200);
});

test('ok/logs-have-request-ids-and-no-secrets', async () => {
  const lines: string[] = [];
  const logged = await s.another({ logger: pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) }) });
  const u = `https://127.0.0.1:${logged.port}`;
  const tok = await token([ID('bad-logs')]);
  const { csr } = csrFor({ uri: [ID('bad-logs-other')] });
  const refused = [
    await send(`${u}/v1/enroll`, { body: { csr }, headers: { authorization: `Bearer ${tok}` }, tls: who.none }),
    await send(`${u}/v1/enroll`, { body: { csr }, headers: { authorization: `Bearer ${tok.slice(0, -4)}AAAA` }, tls: who.none }),
    await send(`${u}/v1/sign`, { body: '{', headers: { 'content-type': 'application/json' }, tls: who.admin }),
    await send(`${u}/v1/certificates`, { tls: who.client }),
  ];
  const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const r of refused) {
    assert.ok(r.status >= 400 && r.status < 500, `${r.status} ${r.code}`);
    const entry = entries.find((e) => e.requestId === r.json.requestId);
    assert.ok(entry, `no log entry for request ${r.json.requestId} (${r.code})`);
    assert.equal(entry.code, r.code);
  }
  const text = lines.join('');
  assert.ok(!text.includes(tok) && !text.includes(tok.split('.')[2]), 'a token is in the log');
  assert.doesNotMatch(text, /PRIVATE KEY|BEGIN CERTIFICATE REQUEST/);
  assert.ok(!text.includes(TEST_PASSPHRASE), 'the passphrase is in the log');
});

test('ok/nothing-issued-by-bad-requests-and-still-serving', async () => {
  const now = await s.tc.ca.list({ limit: 1_000_000 });
  const added = now.filter((r) => !initial.has(r.serial));
  // What the extra servers made for themselves (TLS and OCSP responder certificates) is theirs.
  const unexpected = added.filter((r) => !legit.has(r.serial) && r.issuedBy !== 'serve' && r.issuedBy !== 'ocsp-responder');
  assert.deepEqual(unexpected.map((r) => `${r.serial} ${r.issuedBy} ${JSON.stringify(r.names)}`), []);
  // Nothing carries a name any bad request asked for.
  const bad = now.filter((r) => [...r.names.dns, ...r.names.uri].some((x) => x.includes('bad')) && !legit.has(r.serial));
  assert.deepEqual(bad.map((r) => r.serial), []);
  for (const serial of legit) assert.ok(now.some((r) => r.serial === serial), `legit ${serial} in the inventory`);
  // The server still answers.
  const h = await call('/health', { as: who.none });
  assert.equal(h.status, 200);
  const list = await call('/v1/certificates');
  assert.equal(list.status, 200);
});
