/**
 * The revocation feed (src/ca/revocation-feed.ts): the revoked set loaded at open, revocations
 * made elsewhere picked up by a poll (two authorities on one state folder stand for two replicas),
 * local ones recorded at once, each serial heard once, and the poll timer driven by mock timers
 * with the test's clock.
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { RevocationFeed, REVOCATION_POLL_MS } from '../../src/ca/revocation-feed.ts';
import type { RevocationEvent } from '../../src/ca/store.ts';
import { makeTestCa, TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { tick, until } from '../helpers/wait.ts';
import { openAuthority } from '../../src/ca/open-authority.ts';

const NOW = new Date('2026-06-01T12:00:00Z');
const ID = (svc: string) => `spiffe://acme.internal/prod/${svc}`;


test('ok/open-loads-the-revoked-set', async () => {
  const tc = await makeTestCa({ now: NOW });
  try {
    const a = await tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: [ID('a')] } });
    const b = await tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: [ID('b')] } });
    await tc.ca.revoke({ serial: a.serial, writeCrl: false });
    const heard: RevocationEvent[] = [];
    const feed = await RevocationFeed.open({ ca: tc.ca, now: () => NOW, onRevoked: (e) => heard.push(...e) });
    assert.equal(feed.has(a.serial), true);
    assert.equal(feed.has(b.serial), false);
    // What was loaded is not news: a poll hears nothing of it.
    let polled = 0;
    const feed2 = await RevocationFeed.open({ ca: tc.ca, now: () => NOW, onRevoked: (e) => heard.push(...e), afterPoll: async () => void polled++ });
    feed2.poll();
    await until('the poll to finish', () => polled === 1);
    assert.deepEqual(heard, []);
  } finally {
    await tc.close();
  }
});

test('ok/poll-picks-up-a-revocation-made-by-another-replica', async () => {
  const tc = await makeTestCa({ now: NOW });
  const other = await openAuthority({ home: tc.home, passphrase: TEST_PASSPHRASE, now: () => NOW });
  try {
    const a = await tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: [ID('a')] } });
    const heard: RevocationEvent[] = [];
    let polled = 0;
    const feed = await RevocationFeed.open({ ca: tc.ca, now: () => NOW, onRevoked: (e) => heard.push(...e), afterPoll: async () => void polled++ });
    await other.revoke({ serial: a.serial, reason: 'keyCompromise', writeCrl: false });
    assert.equal(feed.has(a.serial), false, 'not before a poll');
    feed.poll();
    await until('the poll to finish', () => polled === 1);
    assert.equal(feed.has(a.serial), true);
    assert.deepEqual(heard.map((e) => [e.serial, e.reason, e.issuerKeyId]), [[a.serial, 'keyCompromise', tc.ca.client.keyId]]);
    // Polled again: nothing new, nothing heard twice.
    feed.poll();
    await until('the second poll', () => polled === 2);
    assert.equal(heard.length, 1);
  } finally {
    await other.close();
    await tc.close();
  }
});

test('ok/record-hears-each-serial-once-and-polls', async () => {
  const tc = await makeTestCa({ now: NOW });
  try {
    const heard: string[] = [];
    let polled = 0;
    const feed = await RevocationFeed.open({ ca: tc.ca, now: () => NOW, onRevoked: (e) => heard.push(...e.map((x) => x.serial)), afterPoll: async () => void polled++ });
    const ev: RevocationEvent = { issuerKeyId: tc.ca.client.keyId, serial: 'ab'.repeat(8), revokedAt: NOW, reason: 'superseded' };
    assert.deepEqual(feed.record([ev, ev]), [ev], 'new once, even twice in one call');
    assert.deepEqual(feed.record([ev]), []);
    assert.deepEqual(heard, [ev.serial]);
    assert.equal(feed.has(ev.serial), true);
    await until('the poll a record asks for', () => polled >= 1);
  } finally {
    await tc.close();
  }
});

test('ok/polls-on-its-timer-and-tracks-store-contact', async () => {
  let t = NOW.getTime();
  const clock = () => new Date(t);
  const tc = await makeTestCa({ clock });
  mock.timers.enable({ apis: ['setInterval'] });
  try {
    let polled = 0;
    const feed = await RevocationFeed.open({ ca: tc.ca, now: clock, afterPoll: async () => void polled++ });
    feed.start();
    t += 10_000;
    await tick();
    assert.equal(polled, 0, 'no poll before the interval');
    mock.timers.tick(REVOCATION_POLL_MS);
    await until('the timer poll', () => polled === 1);
    assert.equal(feed.lastContact.getTime(), t, 'the store answered at the clock\'s time');
    feed.close();
    mock.timers.tick(REVOCATION_POLL_MS * 5);
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(polled, 1, 'closed: no more polls');
  } finally {
    mock.timers.reset();
    await tc.close();
  }
});

test('fail/store-down-is-reported-and-contact-not-refreshed', async () => {
  const tc = await makeTestCa({ now: NOW });
  try {
    const errors: unknown[] = [];
    let t = NOW.getTime();
    const feed = await RevocationFeed.open({ ca: tc.ca, now: () => new Date(t), onError: (e) => errors.push(e) });
    const contact = feed.lastContact.getTime();
    await tc.ca.store.close();
    t += 60_000;
    feed.poll();
    await until('the failed poll to be reported', () => errors.length === 1);
    assert.equal(feed.lastContact.getTime(), contact, 'readiness sees no contact');
  } finally {
    // The store is closed already; only the folder is left.
    tc.ca.close = async () => undefined;
    await tc.close();
  }
});
