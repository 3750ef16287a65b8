/**
 * The OCSP responder certificates of `mutual serve` rotate on a timer at half their life, not only
 * when a request happens to come: an idle server kept them until they expired (the monitor then
 * rightly reported the renewal overdue). The clock is the test's and the timer is mocked.
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { RESPONDER_CERT_SECONDS } from '../../src/ca/ocsp-responders.ts';
import { OcspService } from '../../src/server/ocsp-service.ts';
import { createMetrics } from '../../src/server/metrics.ts';
import { makeTestCa } from '../helpers/test-ca.ts';

test('ok/idle-server-rotates-its-ocsp-responders-at-half-life', async () => {
  let t = Date.now();
  const clock = (): Date => new Date(t);
  const tca = await makeTestCa({ clock });
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const ocsp = await OcspService.create({ ca: tca.ca, now: clock, metrics: createMetrics() });
    const responders = async (): Promise<number> => (await tca.ca.list({ role: 'ocsp' })).length;
    assert.equal(await responders(), 2, 'one responder per intermediate at start');

    // Just before half-life nothing happens.
    t += (RESPONDER_CERT_SECONDS / 2) * 1000 - 60_000;
    mock.timers.tick((RESPONDER_CERT_SECONDS / 2) * 1000 - 60_000);
    await new Promise((r) => setImmediate(r));
    assert.equal(await responders(), 2);

    // At half-life, with no request at all, both are replaced.
    t += 61_000;
    mock.timers.tick(61_000);
    // Bounded by time, not by a count: the rotation writes to the store (real I/O) on a loaded machine.
    for (const deadline = Date.now() + 30_000; (await responders()) < 4 && Date.now() < deadline;) await new Promise((r) => setImmediate(r));
    assert.equal(await responders(), 4, 'new responder certificates issued without a request');
    ocsp.close();
  } finally {
    mock.timers.reset();
    await tca.close();
  }
});
