/**
 * The pure renewal decision (src/agent/renewal-decision.ts): real certificates and a real CRL from
 * the project's own CA made at a fixed time, and a clock the table moves. No I/O in the code tested.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { makePki, names, id, type Pki } from '../sdk/fixtures.ts';
import { parseCertificate, type CertificateInfo } from '../../src/core/certificate.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { checkCrl, type CrlInfo } from '../../src/agent/crl-check.ts';
import { canResume, decideRenewal, expiryWarning, inBackoff, isRevoked, renewAt, type RenewalDecision, type RenewalInput } from '../../src/agent/renewal-decision.ts';
import { renewalTime } from '../../src/agent/schedule.ts';

const T0 = new Date('2031-03-01T12:00:00Z');
const HOUR = 3600_000;
const SCHEDULE = { fraction: 2 / 3, jitter: 0 };

let pki: Pki;
let good: CertificateInfo;
let revoked: CertificateInfo;
let crl: CrlInfo;

const info = (pem: string): CertificateInfo => parseCertificate(readPemOrDer(pem, ['CERTIFICATE']));

before(async () => {
  pki = await makePki({ now: T0 });
  good = info((await pki.issue('client', names({ uri: [id('prod/good')] }), 'good', 3600)).cert);
  const r = await pki.issue('client', names({ uri: [id('prod/revoked')] }), 'revoked', 3600);
  await pki.tc.ca.revoke({ serial: r.serial, reason: 'keyCompromise' });
  revoked = info(r.cert);
  crl = checkCrl(await pki.crl(), pki.clientCa, T0, 'the client CRL');
});
after(() => pki.close());

/** The renewal point of `good` at 2/3 of its lifetime, no jitter. */
const dueAt = () => renewAt(good, {}, SCHEDULE);

test('ok/renewAt/the schedule\'s point, counted from when the agent obtained the certificate when later than notBefore', () => {
  assert.equal(dueAt().getTime(), renewalTime({ serial: good.serial, notBefore: good.notBefore, notAfter: good.notAfter, fraction: 2 / 3, jitter: 0 }).getTime());
  const life = good.notAfter.getTime() - good.notBefore.getTime();
  assert.equal(dueAt().getTime(), good.notBefore.getTime() + Math.floor(life * 2 / 3));
  // The CA backdates notBefore; obtained at T0 the lifetime counts from T0.
  const got = renewAt(good, { [good.serial]: T0.toISOString() }, SCHEDULE);
  assert.equal(got.getTime(), T0.getTime() + Math.floor((good.notAfter.getTime() - T0.getTime()) * 2 / 3));
  assert.equal(renewAt(good, { other: T0.toISOString() }, SCHEDULE).getTime(), dueAt().getTime(), 'another serial\'s entry does not count');
});

test('ok/isRevoked/the CRL or the CA\'s refusal says so; a CRL of another issuer key does not', () => {
  assert.equal(isRevoked(revoked, undefined, crl), true);
  assert.equal(isRevoked(good, undefined, crl), false);
  assert.equal(isRevoked(good, good.serial, undefined), true, 'the CA refused to renew it as revoked');
  assert.equal(isRevoked(revoked, undefined, undefined), false, 'no CRL cached yet');
  const otherKey = { ...revoked, authorityKeyId: crypto.randomBytes(20) };
  assert.equal(isRevoked(otherKey, undefined, crl), false);
});

/** A decision at `now` for `good` unless the case says otherwise. */
const decide = (o: Partial<RenewalInput>): { d: RenewalDecision; driftAsked: number } => {
  let driftAsked = 0;
  const d = decideRenewal({
    now: T0, current: good, schedule: SCHEDULE, obtained: {}, crl, forced: false, ...o,
    drift: () => {
      driftAsked++;
      return o.drift?.();
    },
  });
  return { d, driftAsked };
};

const cases: { name: string; input: () => Partial<RenewalInput>; want: () => RenewalDecision; driftAsked?: number }[] = [
  { name: 'ok/enroll/no certificate yet', input: () => ({ current: undefined }), want: () => ({ need: 'enroll', why: 'no certificate yet', revoked: false }), driftAsked: 0 },
  { name: 'ok/none/before the renewal point, files as asked', input: () => ({ now: new Date(dueAt().getTime() - 1) }), want: () => ({ need: 'none' }), driftAsked: 1 },
  { name: 'ok/renew/at the renewal point', input: () => ({ now: dueAt() }), want: () => ({ need: 'renew', why: '' }), driftAsked: 0 },
  { name: 'ok/renew/after notAfter (the CA decides; a refusal falls back to a token)', input: () => ({ now: new Date(good.notAfter.getTime() + HOUR) }), want: () => ({ need: 'renew', why: '' }) },
  { name: 'ok/renew/forced before the renewal point', input: () => ({ forced: true }), want: () => ({ need: 'renew', why: '' }), driftAsked: 0 },
  { name: 'ok/renew/under a root being retired, before the renewal point', input: () => ({ moveRoot: 'its chain ends at a retiring root' }), want: () => ({ need: 'renew', why: '' }), driftAsked: 0 },
  { name: 'ok/enroll/revoked wins over a root being retired', input: () => ({ current: revoked, moveRoot: 'its chain ends at a retiring root' }), want: () => ({ need: 'enroll', why: `${revoked.serial} is revoked`, revoked: true }), driftAsked: 0 },
  { name: 'ok/none/obtained after notBefore: not yet at its own renewal point', input: () => ({ now: dueAt(), obtained: { [good.serial]: new Date(good.notBefore.getTime() + 30 * 60_000).toISOString() } }), want: () => ({ need: 'none' }) },
  { name: 'ok/enroll/revoked on the CRL, even when forced', input: () => ({ current: revoked, forced: true }), want: () => ({ need: 'enroll', why: `${revoked.serial} is revoked`, revoked: true }), driftAsked: 0 },
  { name: 'ok/enroll/the CA refused to renew it as revoked', input: () => ({ revokedSerial: good.serial }), want: () => ({ need: 'enroll', why: `${good.serial} is revoked`, revoked: true }) },
  { name: 'ok/redeploy/drifted before the renewal point', input: () => ({ drift: () => 'key.pem is missing' }), want: () => ({ need: 'redeploy', why: 'key.pem is missing' }), driftAsked: 1 },
  { name: 'ok/renew/due and drifted: renewal redeploys anyway, drift not asked', input: () => ({ now: dueAt(), drift: () => 'key.pem is missing' }), want: () => ({ need: 'renew', why: '' }), driftAsked: 0 },
];
for (const c of cases) {
  test(`decideRenewal/${c.name}`, () => {
    const { d, driftAsked } = decide(c.input());
    assert.deepEqual(d, c.want());
    if (c.driftAsked !== undefined) assert.equal(driftAsked, c.driftAsked, 'drift is read only when nothing else is needed');
  });
}

test('inBackoff/table', () => {
  const retryAt = new Date(T0.getTime() + 60_000).toISOString();
  let tokenAsked = 0;
  const token = (has: boolean) => () => {
    tokenAsked++;
    return has;
  };
  const base = { now: T0, nextAttemptAt: retryAt, lastCode: 'CA_UNAVAILABLE', ignoreBackoff: false, forced: false, hasFreshToken: token(true) };
  const rows: [string, Partial<typeof base>, boolean][] = [
    ['ok/waits before the retry time', {}, true],
    ['ok/no failure recorded', { nextAttemptAt: undefined }, false],
    ['ok/at the retry time', { now: new Date(retryAt) }, false],
    ['ok/once and rotate ignore the backoff', { ignoreBackoff: true }, false],
    ['ok/forced', { forced: true }, false],
    ['ok/a new token ends the wait for a token', { lastCode: 'AGENT_TOKEN_NEEDED' }, false],
    ['ok/a new token ends the wait of a revoked certificate', { lastCode: 'AGENT_REVOKED' }, false],
    ['ok/a new token ends the wait after a refused token', { lastCode: 'TOKEN_REPLAYED' }, false],
    ['ok/no new token: still waiting for one', { lastCode: 'AGENT_TOKEN_NEEDED', hasFreshToken: token(false) }, true],
  ];
  for (const [name, o, want] of rows) assert.equal(inBackoff({ ...base, ...o }), want, name);
  tokenAsked = 0;
  inBackoff(base);
  assert.equal(tokenAsked, 0, 'the token is not read for a failure a token cannot cure');
});

test('canResume/an interrupted generation goes on only while valid, matching and not revoked', () => {
  assert.equal(canResume({ now: T0, info: good, keyMatches: true, crl }), true);
  assert.equal(canResume({ now: T0, info: good, keyMatches: false, crl }), false);
  assert.equal(canResume({ now: good.notAfter, info: good, keyMatches: true, crl }), false, 'expired');
  assert.equal(canResume({ now: T0, info: revoked, keyMatches: true, crl }), false, 'revoked');
  assert.equal(canResume({ now: T0, info: good, keyMatches: true, revokedSerial: good.serial }), false, 'refused by the CA');
});

test('expiryWarning/only inside the warning fraction; expired says so', () => {
  const life = good.notAfter.getTime() - good.notBefore.getTime();
  const at = (leftMs: number) => new Date(good.notAfter.getTime() - leftMs);
  assert.equal(expiryWarning('web', good, at(life * 0.2 + 1000), 0.2), undefined);
  assert.equal(expiryWarning('web', good, at(120_000), 0.2), `web: ${good.serial} expires in 120 s and could not be renewed`);
  assert.equal(expiryWarning('web', good, at(0), 0.2), `web: ${good.serial} expired at ${good.notAfter.toISOString()}`);
});
