/**
 * The CRL schedule (src/ca/crl-schedule.ts): one CRL per intermediate, found under its role name
 * and its key's name; a revocation marked dirty is in the CRL after the next refresh (not before);
 * a CRL is re-signed once half its lifetime has passed and not sooner. The test's clock is moved;
 * nothing waits on the wall clock.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CRL_LIFETIME_MS } from '../../src/ca/authority.ts';
import { CRL_REFRESH_FRACTION, CrlSchedule } from '../../src/ca/crl-schedule.ts';
import { crlRevocation, parseCrl } from '../../src/core/crl-reader.ts';
import { makeTestCa } from '../helpers/test-ca.ts';

const START = new Date('2026-06-01T12:00:00Z').getTime();

test('ok/one-crl-per-intermediate-under-both-names', async () => {
  const tc = await makeTestCa({ now: new Date(START) });
  try {
    const ages: [string, number][] = [];
    const crls = await CrlSchedule.create({ ca: tc.ca, now: () => new Date(START), onAge: (n, s) => ages.push([n, s]) });
    for (const [name, inter] of [['server', tc.ca.server], ['client', tc.ca.client]] as const) {
      const crl = crls.crl(name);
      assert.ok(crl, name);
      assert.equal(crls.crl(tc.ca.keyedName(inter)), crl, 'the keyed name is the same CRL');
      assert.equal(crls.issuer(name), inter);
      const info = parseCrl(crl.der);
      assert.deepEqual(info.authorityKeyId, Buffer.from(inter.keyId, 'hex'));
      assert.equal(crl.nextUpdate.getTime() - crl.thisUpdate.getTime(), CRL_LIFETIME_MS);
    }
    assert.deepEqual(crls.intermediatesOf('server-ca'), [tc.ca.server]);
    assert.deepEqual(crls.retired, []);
    assert.equal(crls.crl('nothing'), undefined);
    assert.deepEqual(ages.sort(), [['client', 0], ['server', 0]]);
  } finally {
    await tc.close();
  }
});

test('ok/revocation-marked-dirty-is-in-the-crl-after-refresh', async () => {
  const tc = await makeTestCa({ now: new Date(START) });
  try {
    const crls = await CrlSchedule.create({ ca: tc.ca, now: () => new Date(START) });
    const leaf = await tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: ['spiffe://acme.internal/prod/a'] } });
    const r = await tc.ca.revoke({ serial: leaf.serial, reason: 'keyCompromise', writeCrl: false });
    assert.equal(crlRevocation(parseCrl(crls.crl('client')!.der), leaf.serial), undefined, 'not before a refresh');
    crls.markDirty(r.issuerKeyId);
    await crls.refresh();
    assert.ok(crlRevocation(parseCrl(crls.crl('client')!.der), leaf.serial), 'listed after the refresh');
    assert.equal(crlRevocation(parseCrl(crls.crl('server')!.der), leaf.serial), undefined, 'the other CRL is not this issuer\'s');
  } finally {
    await tc.close();
  }
});

test('ok/resigned-past-half-its-lifetime-not-before', async () => {
  let t = START;
  const tc = await makeTestCa({ now: new Date(START) });
  try {
    const ages = new Map<string, number>();
    const crls = await CrlSchedule.create({ ca: tc.ca, now: () => new Date(t), onAge: (n, s) => ages.set(n, s) });
    const first = crls.crl('server')!;
    t = START + CRL_REFRESH_FRACTION * CRL_LIFETIME_MS - 1000;
    await crls.refresh();
    assert.equal(crls.crl('server'), first, 'kept just before half its lifetime');
    assert.equal(ages.get('server'), (t - START) / 1000, 'its age is reported');
    t = START + CRL_REFRESH_FRACTION * CRL_LIFETIME_MS + 1000;
    await crls.refresh();
    const next = crls.crl('server')!;
    assert.notEqual(next, first);
    assert.equal(next.thisUpdate.getTime(), t);
    assert.ok(parseCrl(next.der).crlNumber! > parseCrl(first.der).crlNumber!, 'a new CRL number');
    assert.equal(ages.get('server'), 0);
  } finally {
    await tc.close();
  }
});

test('ok/mark-all-dirty-resigns-every-crl', async () => {
  const tc = await makeTestCa({ now: new Date(START) });
  try {
    const crls = await CrlSchedule.create({ ca: tc.ca, now: () => new Date(START) });
    const before = [crls.crl('server'), crls.crl('client')];
    crls.markAllDirty();
    await crls.refresh();
    assert.notEqual(crls.crl('server'), before[0]);
    assert.notEqual(crls.crl('client'), before[1]);
  } finally {
    await tc.close();
  }
});
