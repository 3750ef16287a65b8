import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { SignJWT } from 'jose';
import { mintToken, verifyToken, TOKEN_CLOCK_TOLERANCE_SECONDS } from '../../src/ca/tokens.ts';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { keyObjectSigner, type Signer } from '../../src/core/signer.ts';

const NOW = new Date('2026-06-01T12:00:00Z');
const names = { dns: [], ip: [], uri: ['spiffe://acme.internal/prod/tok'] };
const { privateKey } = generateKeyPair('p256');
const inner = keyObjectSigner(privateKey);
/** A Signer that answers later and holds its key out of reach, as a hardware key would. */
const remote: Signer = { publicKey: inner.publicKey, algorithm: inner.algorithm, sign: async (d) => inner.sign(d) };
const part = (jws: string, i: number) => Buffer.from(jws.split('.')[i], 'base64url').toString();

test('tokens signed through the Signer seam', async (t) => {
  for (const [name, key] of [['ok/async-signer', remote], ['ok/key-object', privateKey]] as const) {
    await t.test(name, async () => {
      const { token, jti } = await mintToken({ key, names, ttlSeconds: 600, rootFingerprint: 'ab'.repeat(32), madeBy: 'test', now: NOW, certLifetimeSeconds: 3600 });
      const claims = await verifyToken(token, inner.publicKey, NOW);
      assert.equal(claims.jti, jti);
      assert.deepEqual(claims.names, names);
      assert.equal(claims.certLifetimeSeconds, 3600);
      assert.equal(claims.role, 'client');
    });
  }
  await t.test('ok/same header and claims, byte for byte, as jose\'s SignJWT made', async () => {
    const { token, jti } = await mintToken({ key: remote, names, ttlSeconds: 600, rootFingerprint: 'cd'.repeat(32), madeBy: 'admin', now: NOW });
    const now = NOW.getTime() / 1000;
    const jose = await new SignJWT({ sans: names, sha: 'cd'.repeat(32) }).setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
      .setIssuer('mutual').setAudience('mutual:enroll').setSubject('admin').setJti(jti).setIssuedAt(now)
      .setNotBefore(now - TOKEN_CLOCK_TOLERANCE_SECONDS).setExpirationTime(now + 600).sign(privateKey);
    assert.equal(part(token, 0), part(jose, 0));
    assert.equal(part(token, 1), part(jose, 1));
    assert.equal(Buffer.from(token.split('.')[2], 'base64url').length, 64);
  });
  await t.test('fail/signed by another key', async () => {
    const { token } = await mintToken({ key: keyObjectSigner(generateKeyPair('p256').privateKey), names, ttlSeconds: 600, rootFingerprint: 'ab'.repeat(32), madeBy: 'test', now: NOW });
    await assert.rejects(verifyToken(token, inner.publicKey, NOW), { code: 'TOKEN_INVALID' });
  });
  await t.test('fail/not an ES256 key', async () => {
    await assert.rejects(mintToken({ key: crypto.generateKeyPairSync('ed25519').privateKey, names, ttlSeconds: 600, rootFingerprint: 'ab'.repeat(32), madeBy: 'test', now: NOW }), TypeError);
  });
});
