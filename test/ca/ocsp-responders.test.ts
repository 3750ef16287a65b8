/**
 * The delegated OCSP responders (src/ca/ocsp-responders.ts): one per intermediate, each recorded
 * in the inventory, replaced at half their life by the timer without any request, and not before.
 * The clock is the test's and the timer is mocked.
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { OcspResponders, RESPONDER_CERT_SECONDS } from '../../src/ca/ocsp-responders.ts';
import { makeTestCa } from '../helpers/test-ca.ts';
import { tick } from '../helpers/wait.ts';


test('ok/rotated-at-half-life-by-the-timer', async () => {
  let t = Date.now();
  const clock = (): Date => new Date(t);
  const tca = await makeTestCa({ clock });
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const responders = await OcspResponders.create({ ca: tca.ca, now: clock });
    const issued = async () => (await tca.ca.list({ role: 'ocsp' })).map((r) => r.issuerKeyId).sort();
    assert.deepEqual(await issued(), [tca.ca.server.keyId, tca.ca.client.keyId].sort(), 'one per intermediate');

    const half = (RESPONDER_CERT_SECONDS / 2) * 1000;
    t += half - 1000;
    mock.timers.tick(half - 1000);
    for (let i = 0; i < 20; i++) await tick();
    responders.maybeRotate();
    for (let i = 0; i < 20; i++) await tick();
    assert.equal((await issued()).length, 2, 'kept until half their life, even when asked');

    t += 1000;
    mock.timers.tick(1000);
    // Bounded by time, not by a count: the rotation writes to the store (real I/O) on a loaded machine.
    for (const deadline = Date.now() + 30_000; (await issued()).length < 4 && Date.now() < deadline;) await tick();
    assert.equal((await issued()).length, 4, 'both replaced with no request');
    responders.close();
  } finally {
    mock.timers.reset();
    await tca.close();
  }
});
