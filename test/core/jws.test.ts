import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { ecdsaDerToRaw, signCompactJws } from '../../src/core/jws.ts';
import { keyObjectSigner, type Signer } from '../../src/core/signer.ts';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { isMutualError } from '../../src/core/errors.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('ecdsaDerToRaw', async (t) => {
  const ff = 'ff'.repeat(32);
  const cases: { name: string; der: Buffer; raw?: Buffer; code?: string }[] = [
    // r with its sign byte (0x00 before a high bit), s short by a byte: both come out 32 bytes.
    { name: 'ok/sign-byte-and-short-s', der: hex(`3045 0221 00${ff} 0220 00${'11'.repeat(31)}`), raw: hex(`${ff} 00${'11'.repeat(31)}`) },
    { name: 'ok/one-byte-values', der: hex('3006 020101 020102'), raw: Buffer.concat([Buffer.alloc(31), hex('01'), Buffer.alloc(31), hex('02')]) },
    { name: 'fail/r-too-long', der: hex(`3026 0221 01${ff} 020101`), code: 'DER_MALFORMED' },
    { name: 'fail/one-integer', der: hex('3003 020101'), code: 'DER_MALFORMED' },
    { name: 'fail/not-integers', der: hex('3006 040101 040102'), code: 'DER_MALFORMED' },
    { name: 'fail/trailing-bytes', der: hex('3006 020101 020102 00'), code: 'DER_MALFORMED' },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      if (c.raw) assert.deepEqual(Buffer.from(ecdsaDerToRaw(c.der, 32)), c.raw);
      else assert.throws(() => ecdsaDerToRaw(c.der, 32), (e) => isMutualError(e, c.code as 'DER_MALFORMED'));
    });
  }
});

test('ecdsaDerToRaw agrees with OpenSSL\'s own IEEE P1363 encoding', () => {
  const { privateKey } = generateKeyPair('p256');
  // Many signatures, so r or s shorter than 32 bytes (1 in 128 each) turn up.
  for (let i = 0; i < 400; i++) {
    const data = Buffer.from(`m${i}`);
    const der = crypto.sign('sha256', data, privateKey);
    const raw = ecdsaDerToRaw(der, 32);
    assert.ok(crypto.verify('sha256', data, { key: crypto.createPublicKey(privateKey), dsaEncoding: 'ieee-p1363' }, raw), `signature ${i}`);
  }
});

test('signCompactJws', async (t) => {
  const { privateKey, publicKey } = generateKeyPair('p256');
  // A Signer that, like a hardware key, answers asynchronously and never shows its key.
  const inner = keyObjectSigner(privateKey);
  const remote: Signer = { publicKey: inner.publicKey, algorithm: inner.algorithm, sign: async (d) => inner.sign(d) };
  for (const [name, signer] of [['ok/sync-signer', inner], ['ok/async-signer', remote]] as const) {
    await t.test(name, async () => {
      const jws = await signCompactJws({ typ: 'JWT' }, { sub: 'x', n: 1 }, signer);
      assert.deepEqual(decodeProtectedHeader(jws), { alg: 'ES256', typ: 'JWT' });
      const { payload } = await compactVerify(jws, publicKey, { algorithms: ['ES256'] });
      assert.deepEqual(JSON.parse(Buffer.from(payload).toString()), { sub: 'x', n: 1 });
    });
  }
  for (const type of ['p384', 'ed25519', 'rsa2048'] as const) {
    await t.test(`fail/${type}-is-not-es256`, async () => {
      await assert.rejects(signCompactJws({}, {}, keyObjectSigner(generateKeyPair(type).privateKey)), TypeError);
    });
  }
});
