/**
 * The ACME JWS checks on their own, with requests signed by jose as an ACME client signs them:
 * every allowed algorithm verifies; `none`, HS256 and unknown algorithms, a jwk with private
 * members, both or neither of jwk and kid, a bad signature, a key too small or of the wrong type
 * for its alg, a non-object payload, and the key-change inner JWS rules are each refused with
 * their code. The body reader runs on a real node:http server (content type, size limit).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FlattenedSign, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { AcmeAccount, FlattenedJws } from '../../../src/ca/index.ts';
import { isMutualError, type ErrorCode } from '../../../src/core/errors.ts';
import {
  ACME_ALGORITHMS, MAX_JWS_BYTES, parseFlattenedJws, parsePayload, parseProtectedHeader, publicJwk, publicKeyOf, readJoseBody, verifyKeyChange, verifySignature, type AcmeAlgorithm,
} from '../../../src/server/acme/jws.ts';

const URL_ = 'https://ca.test:8443/acme/new-order';
const KID = 'https://ca.test:8443/acme/acct/a1';
const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

interface TestKey {
  alg: AcmeAlgorithm;
  privateKey: CryptoKey;
  jwk: JWK;
}

async function key(alg: AcmeAlgorithm, o: { modulusLength?: number; crv?: string } = {}): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...o });
  return { alg, privateKey, jwk: await exportJWK(publicKey) };
}

/** A flattened JWS as an ACME client signs it. */
async function sign(k: TestKey, payload: unknown, header: Record<string, unknown> = { jwk: k.jwk, nonce: 'bm9uY2U', url: URL_ }): Promise<FlattenedJws> {
  const bytes = payload === '' ? new Uint8Array() : Buffer.from(JSON.stringify(payload));
  const jws = await new FlattenedSign(bytes).setProtectedHeader({ alg: k.alg, ...header }).sign(k.privateKey);
  return { protected: jws.protected!, payload: jws.payload, signature: jws.signature };
}

const rejects = (code: ErrorCode) => (e: unknown) => {
  assert.ok(isMutualError(e, code), `expected ${code}, got ${(e as Error).message}`);
  return true;
};

test('ok/every allowed algorithm verifies, the header parsed and the payload read', async (t) => {
  for (const alg of ACME_ALGORITHMS) {
    await t.test(`ok/${alg}`, async () => {
      const k = await key(alg);
      const jws = await sign(k, { identifiers: [{ type: 'dns', value: 'a.test' }] });
      const h = parseProtectedHeader(parseFlattenedJws(jws));
      assert.equal(h.alg, alg);
      assert.equal(h.url, URL_);
      assert.equal(h.nonce, 'bm9uY2U');
      assert.equal(await calculateJwkThumbprint(h.jwk!), await calculateJwkThumbprint(k.jwk));
      const payload = parsePayload(await verifySignature(jws, publicKeyOf(h.jwk!, alg), alg));
      assert.deepEqual(payload, { identifiers: [{ type: 'dns', value: 'a.test' }] });
    });
  }
});

test('ok/POST-as-GET: an empty payload is undefined, not an object', async () => {
  const k = await key('ES256');
  const jws = await sign(k, '');
  assert.equal(parsePayload(await verifySignature(jws, publicKeyOf(parseProtectedHeader(jws).jwk!, 'ES256'), 'ES256')), undefined);
});

test('ok/kid header: the kid is kept, no jwk', async () => {
  const k = await key('ES256');
  const h = parseProtectedHeader(await sign(k, {}, { kid: KID, nonce: 'bm9uY2U', url: URL_ }));
  assert.equal(h.kid, KID);
  assert.equal(h.jwk, undefined);
});

test('ok/jwk reduced to its public members (what the account keeps)', async () => {
  const k = await key('ES256');
  assert.deepEqual(Object.keys(publicJwk({ ...k.jwk, alg: 'ES256', use: 'sig', kid: 'x' })).sort(), ['crv', 'kty', 'x', 'y']);
});

test('fail/protected header refusals', async (t) => {
  const k = await key('ES256');
  const rsa = await key('RS256');
  const unsigned = (h: unknown): FlattenedJws => ({ protected: b64(h), payload: b64({}), signature: 'c2ln' });
  const hs = await new FlattenedSign(Buffer.from('{}')).setProtectedHeader({ alg: 'HS256', jwk: k.jwk, nonce: 'bm9uY2U', url: URL_ }).sign(crypto.randomBytes(32));
  const cases: { name: string; jws: () => Promise<FlattenedJws> | FlattenedJws; code: ErrorCode }[] = [
    { name: 'fail/alg-none', jws: () => ({ protected: b64({ alg: 'none', jwk: k.jwk, nonce: 'bm9uY2U', url: URL_ }), payload: b64({}), signature: 'AA' }), code: 'ACME_BAD_SIGNATURE_ALGORITHM' },
    { name: 'fail/alg-HS256', jws: () => ({ protected: hs.protected!, payload: hs.payload, signature: hs.signature }), code: 'ACME_BAD_SIGNATURE_ALGORITHM' },
    { name: 'fail/alg-ES512', jws: () => unsigned({ alg: 'ES512', jwk: k.jwk, nonce: 'bm9uY2U', url: URL_ }), code: 'ACME_BAD_SIGNATURE_ALGORITHM' },
    { name: 'fail/alg-missing', jws: () => unsigned({ jwk: k.jwk, nonce: 'bm9uY2U', url: URL_ }), code: 'ACME_BAD_SIGNATURE_ALGORITHM' },
    { name: 'fail/jwk-and-kid', jws: () => sign(k, {}, { jwk: k.jwk, kid: KID, nonce: 'bm9uY2U', url: URL_ }), code: 'ACME_MALFORMED' },
    { name: 'fail/neither-jwk-nor-kid', jws: () => sign(k, {}, { nonce: 'bm9uY2U', url: URL_ }), code: 'ACME_MALFORMED' },
    { name: 'fail/jwk-with-d', jws: async () => sign(k, {}, { jwk: { ...k.jwk, d: b64('secret') }, nonce: 'bm9uY2U', url: URL_ }), code: 'ACME_MALFORMED' },
    { name: 'fail/jwk-rsa-with-private-factors', jws: async () => sign(rsa, {}, { jwk: { ...rsa.jwk, p: 'AQ', q: 'AQ' }, nonce: 'bm9uY2U', url: URL_ }), code: 'ACME_MALFORMED' },
    { name: 'fail/jwk-symmetric', jws: () => unsigned({ alg: 'ES256', jwk: { kty: 'oct', k: 'AAAA' }, nonce: 'bm9uY2U', url: URL_ }), code: 'ACME_MALFORMED' },
    { name: 'fail/jwk-not-an-object', jws: () => unsigned({ alg: 'ES256', jwk: 'key', nonce: 'bm9uY2U', url: URL_ }), code: 'ACME_MALFORMED' },
    { name: 'fail/no-nonce', jws: () => sign(k, {}, { jwk: k.jwk, url: URL_ }), code: 'ACME_BAD_NONCE' },
    { name: 'fail/nonce-not-base64url', jws: () => sign(k, {}, { jwk: k.jwk, nonce: 'a b', url: URL_ }), code: 'ACME_BAD_NONCE' },
    { name: 'fail/no-url', jws: () => sign(k, {}, { jwk: k.jwk, nonce: 'bm9uY2U' }), code: 'ACME_MALFORMED' },
    { name: 'fail/url-not-a-string', jws: () => unsigned({ alg: 'ES256', jwk: k.jwk, nonce: 'bm9uY2U', url: 7 }), code: 'ACME_MALFORMED' },
    { name: 'fail/url-too-long', jws: () => sign(k, {}, { jwk: k.jwk, nonce: 'bm9uY2U', url: `https://x/${'a'.repeat(2000)}` }), code: 'ACME_MALFORMED' },
    { name: 'fail/crit-b64-unencoded-payload', jws: () => unsigned({ alg: 'ES256', jwk: k.jwk, nonce: 'bm9uY2U', url: URL_, b64: false, crit: ['b64'] }), code: 'ACME_MALFORMED' },
    { name: 'fail/header-not-json', jws: () => ({ protected: b64('{alg'), payload: '', signature: 'AA' }), code: 'ACME_MALFORMED' },
    { name: 'fail/header-an-array', jws: () => unsigned([1]), code: 'ACME_MALFORMED' },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const jws = await c.jws();
      assert.throws(() => parseProtectedHeader(parseFlattenedJws(jws)), rejects(c.code));
    });
  }
});

test('fail/a refused algorithm names the accepted ones (RFC 8555 section 6.2)', () => {
  try {
    parseProtectedHeader({ protected: b64({ alg: 'none', kid: KID, nonce: 'bm9uY2U', url: URL_ }), payload: '', signature: 'AA' });
    assert.fail('accepted alg none');
  } catch (e) {
    assert.ok(isMutualError(e, 'ACME_BAD_SIGNATURE_ALGORITHM'));
    assert.deepEqual(e.fields.algorithms, [...ACME_ALGORITHMS]);
  }
});

test('fail/flattened JWS shape refusals', (t) => {
  const ok = { protected: 'eyJ9', payload: '', signature: 'AA' };
  const cases: { name: string; v: unknown }[] = [
    { name: 'fail/not-an-object', v: 'eyJ9.e30.AA' },
    { name: 'fail/an-array', v: [ok] },
    { name: 'fail/unprotected-header', v: { ...ok, header: { kid: KID } } },
    { name: 'fail/general-serialization', v: { payload: '', signatures: [{ protected: 'eyJ9', signature: 'AA' }] } },
    { name: 'fail/signature-missing', v: { protected: 'eyJ9', payload: '' } },
    { name: 'fail/payload-not-a-string', v: { ...ok, payload: {} } },
    { name: 'fail/padding', v: { ...ok, signature: 'AA==' } },
    { name: 'fail/protected-too-long', v: { ...ok, protected: 'A'.repeat(5000) } },
    { name: 'fail/protected-empty', v: { ...ok, protected: '' } },
    { name: 'fail/signature-too-long', v: { ...ok, signature: 'A'.repeat(2000) } },
  ];
  for (const c of cases) t.test(c.name, () => assert.throws(() => parseFlattenedJws(c.v), rejects('ACME_MALFORMED')));
});

test('fail/keys: wrong type for the alg, too small, off the curve, unsupported', async (t) => {
  const es = await key('ES256');
  // jose refuses to make RSA keys under 2048 bits; OpenSSL makes both (4608: the smallest step past 4096 that keygen does quickly).
  const rsaJwk = (bits: number) => crypto.generateKeyPairSync('rsa', { modulusLength: bits }).publicKey.export({ format: 'jwk' }) as JsonWebKey;
  const p521 = await generateKeyPair('ES512', { extractable: true });
  const cases: { name: string; jwk: JsonWebKey; alg: AcmeAlgorithm; code: ErrorCode }[] = [
    { name: 'fail/ec-key-with-RS256', jwk: es.jwk as JsonWebKey, alg: 'RS256', code: 'ACME_BAD_SIGNATURE_ALGORITHM' },
    { name: 'fail/p256-key-with-ES384', jwk: es.jwk as JsonWebKey, alg: 'ES384', code: 'ACME_BAD_SIGNATURE_ALGORITHM' },
    { name: 'fail/rsa-1024', jwk: rsaJwk(1024), alg: 'RS256', code: 'ACME_BAD_PUBLIC_KEY' },
    { name: 'fail/rsa-4608', jwk: rsaJwk(4608), alg: 'RS256', code: 'ACME_BAD_PUBLIC_KEY' },
    { name: 'fail/rsa-exponent-3', jwk: { ...(await key('RS256')).jwk, e: 'Aw' } as JsonWebKey, alg: 'RS256', code: 'ACME_BAD_PUBLIC_KEY' },
    { name: 'fail/p521', jwk: (await exportJWK(p521.publicKey)) as JsonWebKey, alg: 'ES256', code: 'ACME_BAD_PUBLIC_KEY' },
    { name: 'fail/point-off-the-curve', jwk: { ...es.jwk, y: es.jwk.x } as JsonWebKey, alg: 'ES256', code: 'ACME_BAD_PUBLIC_KEY' },
    { name: 'fail/x25519', jwk: { kty: 'OKP', crv: 'X25519', x: es.jwk.x }, alg: 'EdDSA', code: 'ACME_BAD_PUBLIC_KEY' },
  ];
  for (const c of cases) await t.test(c.name, () => assert.throws(() => publicKeyOf(publicJwk(c.jwk), c.alg), rejects(c.code)));
  await t.test('fail/kty-unknown', () => assert.throws(() => publicJwk({ kty: 'DSA' }), rejects('ACME_BAD_PUBLIC_KEY')));
});

test('fail/signature by another key, or over other bytes, does not verify', async () => {
  const k = await key('ES256');
  const other = await key('ES256');
  const jws = await sign(other, {}, { jwk: k.jwk, nonce: 'bm9uY2U', url: URL_ });
  await assert.rejects(verifySignature(jws, publicKeyOf(publicJwk(k.jwk), 'ES256'), 'ES256'), rejects('ACME_BAD_SIGNATURE'));
  const good = await sign(k, { a: 1 });
  await assert.rejects(verifySignature({ ...good, payload: b64({ a: 2 }) }, publicKeyOf(publicJwk(k.jwk), 'ES256'), 'ES256'), rejects('ACME_BAD_SIGNATURE'));
});

test('fail/payload neither an object nor empty', (t) => {
  for (const [name, text] of [['array', '[1]'], ['string', '"x"'], ['null', 'null'], ['number', '1'], ['not-json', '{']] as const) {
    t.test(`fail/${name}`, () => assert.throws(() => parsePayload(Buffer.from(text)), rejects('ACME_MALFORMED')));
  }
});

test('key change: the inner JWS (RFC 8555 section 7.3.5)', async (t) => {
  const oldKey = await key('ES256');
  const newKey = await key('ES384');
  const url = 'https://ca.test:8443/acme/key-change';
  const account: AcmeAccount = { id: 'a1', status: 'valid', jwk: oldKey.jwk as JsonWebKey, thumbprint: await calculateJwkThumbprint(oldKey.jwk), contact: [], termsOfServiceAgreed: true, createdAt: new Date(0) };
  const inner = (o: { signer?: TestKey; header?: Record<string, unknown>; payload?: unknown } = {}) =>
    sign(o.signer ?? newKey, o.payload ?? { account: KID, oldKey: oldKey.jwk }, o.header ?? { jwk: newKey.jwk, url });
  await t.test('ok/new key returned with its thumbprint', async () => {
    const r = await verifyKeyChange(await inner(), { url, accountUrl: KID, account });
    assert.equal(r.thumbprint, await calculateJwkThumbprint(newKey.jwk));
    assert.equal(r.jwk.crv, 'P-384');
  });
  const cases: { name: string; jws: () => Promise<unknown>; code: ErrorCode }[] = [
    { name: 'fail/inner-has-a-nonce', jws: () => inner({ header: { jwk: newKey.jwk, url, nonce: 'bm9uY2U' } }), code: 'ACME_MALFORMED' },
    { name: 'fail/inner-has-a-kid', jws: () => inner({ header: { kid: KID, url } }), code: 'ACME_MALFORMED' },
    { name: 'fail/inner-url-differs', jws: () => inner({ header: { jwk: newKey.jwk, url: URL_ } }), code: 'ACME_MALFORMED' },
    { name: 'fail/new-key-is-the-old-key', jws: () => inner({ signer: oldKey, header: { jwk: oldKey.jwk, url } }), code: 'ACME_MALFORMED' },
    { name: 'fail/inner-signature-by-another-key', jws: async () => sign(await key('ES384'), { account: KID, oldKey: oldKey.jwk }, { jwk: newKey.jwk, url }), code: 'ACME_BAD_SIGNATURE' },
    { name: 'fail/other-account', jws: () => inner({ payload: { account: 'https://ca.test:8443/acme/acct/a2', oldKey: oldKey.jwk } }), code: 'ACME_MALFORMED' },
    { name: 'fail/oldKey-not-the-current-key', jws: async () => inner({ payload: { account: KID, oldKey: (await key('ES256')).jwk } }), code: 'ACME_MALFORMED' },
    { name: 'fail/oldKey-missing', jws: () => inner({ payload: { account: KID } }), code: 'ACME_MALFORMED' },
    { name: 'fail/inner-post-as-get', jws: () => inner({ payload: '' }), code: 'ACME_MALFORMED' },
    { name: 'fail/inner-not-a-jws', jws: async () => ({ account: KID }), code: 'ACME_MALFORMED' },
  ];
  for (const c of cases) await t.test(c.name, async () => assert.rejects(verifyKeyChange(await c.jws(), { url, accountUrl: KID, account }), rejects(c.code)));
});

test('readJoseBody on a real server: content type, size limit, JSON', async (t) => {
  const server = http.createServer((req, res) => {
    readJoseBody(req).then((jws) => res.end(JSON.stringify({ ok: jws.protected })), (e) => {
      res.writeHead(isMutualError(e) ? e.status : 500, { connection: 'close' }).end(JSON.stringify({ code: isMutualError(e) ? e.code : 'INTERNAL' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const post = (body: string | Buffer, type?: string): Promise<{ status: number; json: any }> => new Promise((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', method: 'POST', path: '/', headers: { ...(type ? { 'content-type': type } : {}), 'content-length': Buffer.byteLength(body) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(parts).toString()) }));
    });
    req.on('error', reject);
    req.end(body);
  });
  const k = await key('ES256');
  const jws = JSON.stringify(await sign(k, {}));
  await t.test('ok/application-jose-json', async () => assert.equal((await post(jws, 'application/jose+json')).status, 200));
  await t.test('ok/with-parameters-and-case', async () => assert.equal((await post(jws, 'Application/JOSE+JSON; charset=utf-8')).status, 200));
  await t.test('fail/application-json-is-415', async () => assert.deepEqual(await post(jws, 'application/json'), { status: 415, json: { code: 'ACME_UNSUPPORTED_MEDIA_TYPE' } }));
  await t.test('fail/no-content-type-is-415', async () => assert.deepEqual(await post(jws), { status: 415, json: { code: 'ACME_UNSUPPORTED_MEDIA_TYPE' } }));
  await t.test('fail/oversized', async () => {
    const big = JSON.stringify({ protected: 'eyJ9', payload: 'A'.repeat(MAX_JWS_BYTES), signature: 'AA' });
    assert.deepEqual(await post(big, 'application/jose+json'), { status: 413, json: { code: 'INPUT_TOO_LARGE' } });
  });
  await t.test('fail/not-json', async () => assert.deepEqual(await post('eyJ9.e30.AA', 'application/jose+json'), { status: 400, json: { code: 'ACME_MALFORMED' } }));
});
