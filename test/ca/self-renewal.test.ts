/**
 * The CA server's own certificate (src/ca/self-renewal.ts): renewed at 2/3 of its lifetime on a
 * timer, handed to `install`; a failed renewal is tried again after a minute, not after another
 * 2/3 of the lifetime (it used to wait that long while its log line said "retrying in a minute").
 * Mock timers; nothing waits on the wall clock.
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { isMutualError } from '../../src/core/errors.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { SELF_RENEWAL_FRACTION, SELF_RENEWAL_RETRY_MS, SelfRenewal, type TlsCredentials } from '../../src/ca/self-renewal.ts';
import { makeTestCa } from '../helpers/test-ca.ts';
import { tick, until } from '../helpers/wait.ts';

const LIFETIME = 3600;
const NAMES = { dns: ['localhost'], ip: ['127.0.0.1'], uri: [] };


test('ok/renews-at-two-thirds-of-its-lifetime', async () => {
  const tc = await makeTestCa();
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const installed: TlsCredentials[] = [];
    const r = new SelfRenewal({ ca: tc.ca, names: NAMES, lifetimeSeconds: LIFETIME, install: (c) => installed.push(c) });
    const first = await r.issue();
    const info = parseCertificate(readPemOrDer(first.cert, ['CERTIFICATE']));
    assert.equal(info.serial, first.serial);
    assert.deepEqual(info.names.dns, ['localhost']);
    r.start();
    const due = LIFETIME * 1000 * SELF_RENEWAL_FRACTION;
    mock.timers.tick(due - 1);
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(installed.length, 0, 'not before 2/3 of the lifetime');
    mock.timers.tick(1);
    await until('the renewed certificate to be installed', () => installed.length === 1);
    assert.notEqual(installed[0].serial, first.serial);
    // And again 2/3 of a lifetime later.
    mock.timers.tick(due);
    await until('the second renewal', () => installed.length === 2);
    r.close();
    mock.timers.tick(due * 3);
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(installed.length, 2, 'closed: no more renewals');
  } finally {
    mock.timers.reset();
    await tc.close();
  }
});

test('fail/a-failed-renewal-is-retried-after-a-minute', async () => {
  const tc = await makeTestCa();
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const errors: unknown[] = [];
    // A name the CA's policy refuses: every renewal fails.
    const r = new SelfRenewal({ ca: tc.ca, names: { dns: ['ca.elsewhere.example'], ip: [], uri: [] }, lifetimeSeconds: LIFETIME, install: () => assert.fail('nothing to install'), onError: (e) => errors.push(e) });
    r.start();
    mock.timers.tick(LIFETIME * 1000 * SELF_RENEWAL_FRACTION);
    await until('the first failure', () => errors.length === 1);
    assert.ok(isMutualError(errors[0], 'POLICY_NAME_NOT_ALLOWED'), String(errors[0]));
    mock.timers.tick(SELF_RENEWAL_RETRY_MS);
    await until('the retry a minute later', () => errors.length === 2);
    r.close();
  } finally {
    mock.timers.reset();
    await tc.close();
  }
});
