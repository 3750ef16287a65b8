/**
 * KeyHealth (what `/ready` asks): each Signer's health() at most once per interval by the injected
 * clock, concurrent callers sharing one check, a Signer without health() always available, and a
 * health() that throws counted as unavailable with its code, never thrown to the caller.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyHealth, KEY_HEALTH_INTERVAL_MS } from '../../src/ca/index.ts';
import { generateSigner } from '../../src/keys/index.ts';
import type { Signer, SignerHealth } from '../../src/core/signer.ts';
import { MutualError } from '../../src/core/errors.ts';

function deviceSigner(state: { available: boolean; calls: number; throws?: boolean }): Signer {
  const base = generateSigner('p256');
  return {
    publicKey: base.publicKey, algorithm: base.algorithm, sign: (d) => base.sign(d),
    async health(): Promise<SignerHealth> {
      state.calls++;
      if (state.throws) throw new MutualError('HSM_UNAVAILABLE', { detail: 'CKR_DEVICE_REMOVED' });
      return state.available ? { available: true } : { available: false, detail: 'HSM_UNAVAILABLE: CKR_TOKEN_NOT_PRESENT' };
    },
  };
}

test('ok/paced by the clock, shared by concurrent callers; fail/unavailable and throwing keys are named', async () => {
  let t = 1_000_000;
  const token = { available: true, calls: 0 };
  const other = { available: true, calls: 0, throws: false };
  const memory = generateSigner('p256');
  const h = new KeyHealth({
    now: () => new Date(t),
    signers: () => [{ name: 'server-ca', signer: deviceSigner(token) }, { name: 'client-ca', signer: deviceSigner(other) }, { name: 'token', signer: memory }],
  });
  const [a, b] = await Promise.all([h.check(), h.check()]);
  assert.equal(a, b, 'concurrent callers share one check');
  assert.deepEqual([a.available, token.calls, other.calls], [true, 1, 1]);

  token.available = false;
  t += KEY_HEALTH_INTERVAL_MS - 1;
  assert.equal((await h.check()).available, true, 'within the interval: the last answer');
  assert.equal(token.calls, 1);

  t += 1;
  other.throws = true;
  const down = await h.check();
  assert.equal(down.available, false);
  assert.deepEqual(down.unavailable.map((k) => [k.name, k.detail]), [['server-ca', 'HSM_UNAVAILABLE: CKR_TOKEN_NOT_PRESENT'], ['client-ca', 'HSM_UNAVAILABLE']]);
  assert.equal(token.calls, 2);

  token.available = true;
  other.throws = false;
  t += KEY_HEALTH_INTERVAL_MS;
  assert.deepEqual(await h.check().then((r) => [r.available, r.unavailable.length]), [true, 0]);
});
