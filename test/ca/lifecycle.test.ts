/**
 * The authority's lifecycle policy (issue 13 items 4, 5, 6), with a fixed clock:
 * - CertificateAuthority.renew: what may be renewed, and the lineage bound (two valid at most);
 * - revoke: every reason but superseded covers the renewals, and the CRLs written say so;
 * - lifetimes: 5 minutes to the profile maximum for what people and tokens choose; profiles in
 *   durations; the one duration parser;
 * - tokens: 5 s of leeway, and the certificate lifetime claim.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import {
  MAX_RENEWAL_GRACE_SECONDS, MIN_CERT_LIFETIME_SECONDS, RENEWAL_WINDOW_SECONDS, RENEWALS_PER_WINDOW, type IssueResult,
} from '../../src/ca/authority.ts';
import { profileLifetimes, validateConfig } from '../../src/ca/config.ts';
import { mintToken, TOKEN_CLOCK_TOLERANCE_SECONDS, verifyToken } from '../../src/ca/tokens.ts';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { crlRevocation, parseCrl } from '../../src/core/crl-reader.ts';
import { formatDuration, parseDuration } from '../../src/core/duration.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';
import type { SubjectAltNames } from '../../src/core/names.ts';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';

const NOW = new Date('2027-03-01T09:30:00Z');
const at = (seconds: number) => new Date(NOW.getTime() + seconds * 1000);
const names = (n: Partial<SubjectAltNames>): SubjectAltNames => ({ dns: [], ip: [], uri: [], ...n });
const ID = (svc: string) => `spiffe://acme.internal/prod/${svc}`;
const code = (c: ErrorCode) => (e: unknown) => isMutualError(e, c);

describe('ca/lifecycle: renew and revoke', () => {
  let tc: TestCa;
  before(async () => {
    tc = await makeTestCa({ now: NOW });
  });
  after(() => tc?.close());

  const issueClient = (svc: string, o: { lifetimeSeconds?: number; now?: Date } = {}) =>
    tc.ca.issue({ role: 'client', names: names({ uri: [ID(svc)] }), actor: 'test', now: o.now ?? NOW, ...o });
  const renew = (r: IssueResult, seconds: number, o: { graceSeconds?: number } = {}) => tc.ca.renew({ certificate: r.certificate, now: at(seconds), ...o });
  const status = async (r: IssueResult) => {
    const s = await tc.ca.store.getCertificate(r.serial);
    return `${s?.status}${s?.reason ? `/${s.reason}` : ''}`;
  };

  test('fail/renew: not ours, revoked, expired beyond the grace, grace out of range', async () => {
    const a = await issueClient('renew-checks', { lifetimeSeconds: 3600 });
    // A forged copy: same serial, other bytes.
    const forged = Buffer.from(a.certificate);
    forged[forged.length - 1] ^= 1;
    await assert.rejects(tc.ca.renew({ certificate: forged, now: NOW }), code('RENEW_NOT_ALLOWED'));
    await assert.rejects(renew(a, 3601), code('CERT_EXPIRED'));
    const graced = await renew(a, 3601, { graceSeconds: 60 });
    assert.ok(graced.serial);
    await assert.rejects(renew(a, 0, { graceSeconds: MAX_RENEWAL_GRACE_SECONDS + 1 }), TypeError);
    await tc.ca.revoke({ serial: a.serial, reason: 'keyCompromise', now: at(10) });
    await assert.rejects(renew(a, 3600), code('CERT_REVOKED'));
    // The revocation covered the renewal made inside the grace period.
    assert.equal(await status(graced), 'revoked/keyCompromise');
  });

  test('ok/renew keeps names, role and lifetime; the lineage holds two valid at most', async () => {
    const a = await issueClient('lineage', { lifetimeSeconds: 8 * 3600 });
    const b1 = await renew(a, 60);
    assert.equal(b1.identity, ID('lineage'));
    assert.equal(b1.notAfter.getTime(), at(60 + 8 * 3600).getTime(), 'the 8-hour lifetime is kept');
    // A second renewal of A supersedes the first successor; past RENEWALS_PER_WINDOW, refused.
    const more = [];
    for (let i = 1; i < RENEWALS_PER_WINDOW; i++) more.push(await renew(a, 60 + i));
    assert.deepEqual(more[0].superseded?.map((s) => s.serial), [b1.serial]);
    await assert.rejects(renew(a, 60 + RENEWAL_WINDOW_SECONDS - 1), (e: unknown) => isMutualError(e, 'RENEWAL_TOO_SOON') && e.fields.retryAfter === 1);
    const b2 = await renew(a, 60 + RENEWAL_WINDOW_SECONDS);
    assert.equal(await status(b1), 'revoked/superseded');
    for (const m of more) assert.equal(await status(m), 'revoked/superseded');
    const c = await renew(b2, 600);
    assert.deepEqual(c.superseded?.map((s) => s.serial), [a.serial]);
    assert.deepEqual([await status(a), await status(b1), await status(b2), await status(c)], ['revoked/superseded', 'revoked/superseded', 'valid', 'valid']);
  });

  test('ok/revoke covers renewals (not for superseded) and the CRLs written list them', async () => {
    const cases = [
      { name: 'ok/keyCompromise', reason: 'keyCompromise' as const, covers: true },
      { name: 'ok/unspecified', reason: 'unspecified' as const, covers: true },
      { name: 'ok/cessationOfOperation', reason: 'cessationOfOperation' as const, covers: true },
      { name: 'ok/superseded', reason: 'superseded' as const, covers: false },
    ];
    for (const [i, c] of cases.entries()) {
      const b = await issueClient(`cover-${i}`);
      const b2 = await renew(b, 60);
      const r = await tc.ca.revoke({ serial: b.serial, reason: c.reason, now: at(120) });
      assert.deepEqual(r.covered.map((x) => x.serial), c.covers ? [b2.serial] : [], c.name);
      assert.equal(await status(b2), c.covers ? `revoked/${c.reason}` : 'valid', c.name);
      // The CLI's path: the client CA's CRL file was written with both.
      const crl = parseCrl(fs.readFileSync(`${tc.layout.caDir}/client.crl`));
      assert.ok(crlRevocation(crl, b.serial), `${c.name}: revoked serial on the CRL`);
      assert.equal(Boolean(crlRevocation(crl, b2.serial)), c.covers, `${c.name}: renewal on the CRL`);
    }
  });
});

describe('ca/lifecycle: lifetimes', () => {
  let tc: TestCa;
  before(async () => {
    tc = await makeTestCa({ now: NOW });
  });
  after(() => tc?.close());

  test('ttlSeconds: 5 minutes to the profile maximum', async () => {
    const cases: { name: string; ttl: number; code?: ErrorCode }[] = [
      { name: 'ok/5-minutes', ttl: MIN_CERT_LIFETIME_SECONDS },
      { name: 'ok/8-hours', ttl: 8 * 3600 },
      { name: 'ok/397-days', ttl: 397 * 86_400 },
      { name: 'fail/299-seconds', ttl: MIN_CERT_LIFETIME_SECONDS - 1, code: 'POLICY_VALIDITY_TOO_SHORT' },
      { name: 'fail/1-second', ttl: 1, code: 'POLICY_VALIDITY_TOO_SHORT' },
      { name: 'fail/fraction', ttl: 300.5, code: 'POLICY_VALIDITY_TOO_SHORT' },
      { name: 'fail/NaN', ttl: Number.NaN, code: 'POLICY_VALIDITY_TOO_SHORT' },
      { name: 'fail/over-the-maximum', ttl: 397 * 86_400 + 1, code: 'POLICY_VALIDITY_TOO_LONG' },
    ];
    for (const c of cases) {
      const p = tc.ca.issue({ role: 'server', names: names({ dns: ['ttl.acme.internal'] }), ttlSeconds: c.ttl, now: NOW });
      if (c.code) await assert.rejects(p, code(c.code), c.name);
      else assert.equal((await p).notAfter.getTime(), at(c.ttl).getTime(), c.name);
    }
  });

  test('profiles in durations', () => {
    const base = { trustDomain: 'acme.internal', name: 'x' };
    const ok = validateConfig({ ...base, profiles: { client: { defaultLifetime: '8h', maxLifetime: '30d' } } });
    assert.deepEqual(profileLifetimes(ok.profiles.client), { defaultSeconds: 8 * 3600, maxSeconds: 30 * 86_400 }, 'ok/8h-and-30d');
    assert.deepEqual(profileLifetimes(ok.profiles.server), { defaultSeconds: 90 * 86_400, maxSeconds: 397 * 86_400 }, 'ok/days-by-default');
    const cases = [
      { name: 'fail/under-5-minutes', client: { defaultLifetime: '4m' } },
      { name: 'fail/not-a-duration', client: { maxLifetime: '8 hours' } },
      { name: 'fail/default-over-max', client: { defaultLifetime: '2d', maxLifetime: '1d' } },
      { name: 'fail/over-3650-days', client: { maxLifetime: '3651d' } },
    ];
    for (const c of cases) assert.throws(() => validateConfig({ ...base, profiles: { client: c.client } }), code('CONFIG_INVALID'), c.name);
  });

  test('the one duration parser', () => {
    const ok: [string, number][] = [['45s', 45_000], ['15m', 900_000], ['8h', 28_800_000], ['90d', 7_776_000_000], [' 5m ', 300_000]];
    for (const [text, ms] of ok) assert.equal(parseDuration(text), ms, `ok/${text}`);
    for (const text of ['', '5', 'm', '1.5h', '-5m', '5 m', '5mm', '1w', '1234567d', '8H']) assert.throws(() => parseDuration(text), code('CONFIG_INVALID'), `fail/${JSON.stringify(text)}`);
    assert.deepEqual([28_800, 300, 86_400 * 90, 45].map(formatDuration), ['8h', '5m', '90d', '45s']);
  });
});

describe('ca/lifecycle: tokens', () => {
  const key = generateKeyPair('p256').privateKey;
  const pub = crypto.createPublicKey(key);
  const mint = (o: { ttlSeconds?: number; certLifetimeSeconds?: number } = {}) =>
    mintToken({ key, names: names({ uri: [ID('tok')] }), ttlSeconds: o.ttlSeconds ?? 1, rootFingerprint: 'ab'.repeat(32), madeBy: 'test', now: NOW, certLifetimeSeconds: o.certLifetimeSeconds });

  test('leeway: a 1-second token is refused 5 s after expiry, not 30', async () => {
    assert.ok(TOKEN_CLOCK_TOLERANCE_SECONDS <= 5);
    const t = await mint();
    const cases = [
      { name: 'ok/at-expiry', now: at(1) },
      { name: 'ok/inside-the-leeway', now: at(1 + TOKEN_CLOCK_TOLERANCE_SECONDS - 1) },
      { name: 'fail/at-the-end-of-the-leeway', now: at(1 + TOKEN_CLOCK_TOLERANCE_SECONDS), code: 'TOKEN_EXPIRED' as const },
      { name: 'fail/6-seconds-after', now: at(1 + TOKEN_CLOCK_TOLERANCE_SECONDS + 1), code: 'TOKEN_EXPIRED' as const },
      { name: 'fail/12-seconds-after (accepted with 30 s)', now: at(13), code: 'TOKEN_EXPIRED' as const },
      { name: 'fail/before-it-was-made', now: at(-2 * TOKEN_CLOCK_TOLERANCE_SECONDS - 1), code: 'TOKEN_INVALID' as const },
    ];
    for (const c of cases) {
      const p = verifyToken(t.token, pub, c.now);
      if (c.code) await assert.rejects(p, code(c.code), c.name);
      else await p;
    }
  });

  test('certificate lifetime claim', async () => {
    assert.equal((await verifyToken((await mint({ ttlSeconds: 60, certLifetimeSeconds: 8 * 3600 })).token, pub, NOW)).certLifetimeSeconds, 8 * 3600, 'ok/8h');
    assert.equal((await verifyToken((await mint({ ttlSeconds: 60 })).token, pub, NOW)).certLifetimeSeconds, undefined, 'ok/none: the profile default');
    await assert.rejects(mint({ certLifetimeSeconds: 299 }), code('POLICY_VALIDITY_TOO_SHORT'), 'fail/mint-under-5-minutes');
  });
});
