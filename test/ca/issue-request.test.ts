import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { leafLifetimeMs, subjectKey, MIN_CERT_LIFETIME_SECONDS } from '../../src/ca/issue-request.ts';
import { buildCsr, parseCsr } from '../../src/core/csr.ts';
import { generateKeyPair, spkiDer } from '../../src/core/algorithms.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';

const DAY = 86_400_000;
const names = { dns: ['api.acme.internal'], ip: [], uri: [] };
const key = generateKeyPair('p256');
const csr = buildCsr({ privateKey: key.privateKey, commonName: 'api', names });
const code = (c: ErrorCode) => (e: unknown) => isMutualError(e, c);

test('subjectKey', async (t) => {
  await t.test('ok/csr-on-the-calling-thread: no Promise, so issuance takes no extra async hop', () => {
    const k = subjectKey({ role: 'server', csr }, 'p256', false);
    assert.ok(!(k instanceof Promise));
    assert.deepEqual(k.spki, spkiDer(key.publicKey));
    assert.deepEqual(k.csrNames, names);
    assert.equal(k.privateKey, undefined);
  });
  await t.test('ok/csr-offloaded: verified on the thread pool', async () => {
    const k = subjectKey({ role: 'server', csr: parseCsr(csr) }, 'p256', true);
    assert.ok(k instanceof Promise);
    assert.deepEqual((await k).spki, spkiDer(key.publicKey));
  });
  await t.test('ok/spki-proved-another-way', () => {
    const k = subjectKey({ role: 'client', spki: spkiDer(key.publicKey) }, 'p256', false);
    assert.ok(!(k instanceof Promise));
    assert.deepEqual(k.spki, spkiDer(key.publicKey));
  });
  await t.test('ok/key-made-for-the-caller', () => {
    const k = subjectKey({ role: 'client' }, 'ed25519', false) as { spki: Buffer; privateKey?: crypto.KeyObject };
    assert.equal(k.privateKey?.asymmetricKeyType, 'ed25519');
    assert.deepEqual(k.spki, spkiDer(crypto.createPublicKey(k.privateKey!)));
  });
  const ca = buildCsr({ privateKey: key.privateKey, commonName: 'x', ca: true });
  const tampered = Buffer.from(csr);
  tampered[tampered.length - 5] ^= 1;
  for (const [name, der, c] of [['fail/asks-for-a-ca', ca, 'CSR_FORBIDDEN_EXTENSION'], ['fail/bad-signature', tampered, 'CSR_BAD_SIGNATURE']] as const) {
    await t.test(name, async () => {
      assert.throws(() => subjectKey({ role: 'server', csr: der }, 'p256', false), code(c));
    });
  }
});

test('leafLifetimeMs', async (t) => {
  const profile = { defaultDays: 90, maxDays: 397 };
  const cases: { name: string; req: Parameters<typeof leafLifetimeMs>[0]; ms?: number; code?: ErrorCode }[] = [
    { name: 'ok/profile-default', req: { role: 'server' }, ms: 90 * DAY },
    { name: 'ok/days', req: { role: 'server', days: 30 }, ms: 30 * DAY },
    { name: 'ok/ttl-wins-over-days', req: { role: 'client', days: 30, ttlSeconds: 3600 }, ms: 3_600_000 },
    { name: 'ok/lifetime-seconds-below-the-ttl-minimum', req: { role: 'server', lifetimeSeconds: 1 }, ms: 1000 },
    { name: 'fail/ttl-too-short', req: { role: 'client', ttlSeconds: MIN_CERT_LIFETIME_SECONDS - 1 }, code: 'POLICY_VALIDITY_TOO_SHORT' },
    { name: 'fail/ttl-too-long', req: { role: 'client', ttlSeconds: 398 * 86_400 }, code: 'POLICY_VALIDITY_TOO_LONG' },
    { name: 'fail/days-too-long', req: { role: 'server', days: 398 }, code: 'POLICY_VALIDITY_TOO_LONG' },
    { name: 'fail/zero', req: { role: 'server', lifetimeSeconds: 0 }, code: 'POLICY_VALIDITY_TOO_LONG' },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      if (c.code) assert.throws(() => leafLifetimeMs(c.req, profile), code(c.code));
      else assert.equal(leafLifetimeMs(c.req, profile), c.ms);
    });
  }
});
