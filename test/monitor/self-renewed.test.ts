/**
 * Issue 14 item 3: certificates `mutual serve` renews itself (its OCSP responder certificates and
 * its own TLS certificate) are judged by their renewal schedule, not by fixed day counts; and a
 * short-lived certificate's thresholds scale with its lifetime. A real `mutual serve` runs; `monitor
 * once` (its inventory and its endpoint) and `doctor` are run against it with the clock injected at
 * fresh, renewal-due and renewal-overdue moments, computed from what serve stored: only the overdue
 * moment alerts, and its fix is serve's, not `mutual issue`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { classifyExpiry } from '../../src/monitor/check-certificate.ts';
import { OCSP_RESPONDER_SCHEDULE, RENEWAL_OVERDUE_FRACTION, SERVE_TLS_SCHEDULE, renewalScheduleOf, type RenewalSchedule } from '../../src/monitor/renewal-schedule.ts';
import type { StoredCertificate } from '../../src/ca/store.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { mutual } from '../cli/cli-helper.ts';
import { runMonitorCli } from './run-monitor-cli.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe('classifyExpiry: lifetime and schedule', () => {
  const now = new Date('2027-03-01T00:00:00Z');
  const thresholds = [30, 14, 7, 1];
  // [name, lifetime, left, schedule, expected level:severity or undefined]
  const cases: [string, number, number, RenewalSchedule | undefined, string | undefined][] = [
    ['ok/24 h certificate with 20 h left: nothing', DAY, 20 * HOUR, undefined, undefined],
    ['ok/24 h certificate with 7 h left: warning (a third of its life is the 30d mark)', DAY, 7 * HOUR, undefined, '30d:warning'],
    ['fail/24 h certificate with 1 h left: critical (the 7d mark scaled is 1.9 h)', DAY, HOUR, undefined, '7d:critical'],
    ['ok/90-day certificate keeps the thresholds: 29 days left is 30d, warning', 90 * DAY, 29 * DAY, undefined, '30d:warning'],
    ['fail/90-day certificate keeps the thresholds: 6 days left is critical', 90 * DAY, 6 * DAY, undefined, '7d:critical'],
    ['ok/1-year certificate keeps the thresholds', 365 * DAY, 20 * DAY, undefined, '30d:warning'],
    ['ok/OCSP responder (2 days) with 47 h left: nothing', 2 * DAY, 47 * HOUR, OCSP_RESPONDER_SCHEDULE, undefined],
    ['ok/OCSP responder just past its renewal moment: nothing yet', 2 * DAY, 23 * HOUR, OCSP_RESPONDER_SCHEDULE, undefined],
    ['fail/OCSP responder renewal overdue: warning', 2 * DAY, 17 * HOUR, OCSP_RESPONDER_SCHEDULE, 'renewal-overdue:warning'],
    ['fail/OCSP responder about to expire unrenewed: critical', 2 * DAY, 5 * HOUR, OCSP_RESPONDER_SCHEDULE, 'renewal-overdue:critical'],
    ['ok/serve TLS (7 days) with 6 days left: nothing', 7 * DAY, 6 * DAY, SERVE_TLS_SCHEDULE, undefined],
    ['fail/serve TLS renewal overdue: warning', 7 * DAY, 36 * HOUR, SERVE_TLS_SCHEDULE, 'renewal-overdue:warning'],
  ];
  for (const [name, lifetime, left, schedule, want] of cases) {
    test(name, () => {
      const notAfter = now.getTime() + left;
      const c = classifyExpiry(notAfter, now, thresholds, 7, { notBefore: notAfter - lifetime, schedule });
      assert.equal(c && `${c.level}:${c.severity}`, want);
    });
  }
  test('fail/expired is expired, schedule or not', () => {
    const c = classifyExpiry(now.getTime() - 1000, now, thresholds, 7, { notBefore: now.getTime() - 2 * DAY, schedule: OCSP_RESPONDER_SCHEDULE });
    assert.equal(c?.level, 'expired');
  });
});

describe('monitor once and doctor against a real mutual serve', () => {
  let ts: TestServer;
  let port: number;
  let own: StoredCertificate[];
  before(async () => {
    // serve's own certificate lives 1.6 days here (7 by default) so that one moment can be "renewal
    // due" for it and for the 2-day OCSP responder certificates at once (due at 2/3 and 1/2 of life,
    // overdue a quarter of the rest later: [1.07 d, 1.2 d) and [1 d, 1.25 d)).
    ts = await startTestServer({ server: { serverCertSeconds: Math.round(1.6 * 86_400) } });
    port = Number(new URL(ts.url).port);
    own = (await ts.tc.ca.store.listCertificates({ status: 'valid', limit: 1000 })).filter((r) => renewalScheduleOf(r));
  });
  after(() => ts.close());

  const runCli = runMonitorCli;
  /** The renewal moment and the overdue moment of each of serve's own certificates. */
  const windows = () => own.map((r) => {
    const s = renewalScheduleOf(r)!;
    const life = r.notAfter.getTime() - r.notBefore.getTime();
    const due = r.notBefore.getTime() + s.renewAtFraction * life;
    return { due, overdue: due + RENEWAL_OVERDUE_FRACTION * (1 - s.renewAtFraction) * life, notAfter: r.notAfter.getTime() };
  });
  const moments = () => {
    const w = windows();
    const fresh = Math.max(...own.map((r) => r.notBefore.getTime())) + 5 * 60_000;
    const due = Math.max(...w.map((x) => x.due)) + 60_000;
    const overdue = Math.max(...w.map((x) => x.overdue)) + 60_000;
    // The moments mean what they say for every one of them.
    assert.ok(due < Math.min(...w.map((x) => x.overdue)), 'a common renewal-due moment');
    assert.ok(overdue < Math.min(...w.map((x) => x.notAfter)), 'overdue before any expires');
    return { fresh, due, overdue };
  };

  test('ok/serve stored its TLS certificate and two OCSP responder certificates', () => {
    assert.deepEqual(own.map((r) => r.role).sort(), ['ocsp', 'ocsp', 'server']);
  });

  for (const [moment, wantCode] of [['fresh', 0], ['due', 0], ['overdue', 5]] as const) {
    test(`${wantCode ? 'fail' : 'ok'}/monitor once (inventory + serve's endpoint), renewal ${moment}: exit ${wantCode}`, async () => {
      const at = new Date(moments()[moment]).toISOString();
      const config = ts.tc.file(`monitor-${moment}.yaml`, [
        'sources:', '  inventory:', `    home: ${ts.tc.home}`, '  endpoints:', `    - address: 127.0.0.1:${port}`, `stateFile: ${path.join(ts.tc.dir, 'state.json')}`, '',
      ].join('\n'));
      const r = await runCli(['--json', 'monitor', 'once', '--config', config, '--no-alerts', '--now', at]);
      const j = JSON.parse(r.out) as { findings: { code: string; level: string; source: string; serial?: string; fix: string }[] };
      assert.equal(r.code, wantCode, r.out);
      if (moment !== 'overdue') return assert.deepEqual(j.findings, []);
      // Each of serve's certificates once in the inventory, its TLS certificate once more as served.
      assert.deepEqual(j.findings.map((f) => `${f.source}:${f.code}:${f.level}`).sort(), [
        `endpoint:127.0.0.1:${port}:CERT_EXPIRING:renewal-overdue`, 'inventory:CERT_EXPIRING:renewal-overdue', 'inventory:CERT_EXPIRING:renewal-overdue', 'inventory:CERT_EXPIRING:renewal-overdue',
      ]);
      // The remedy is serve's (status, log, restart), never a certificate issued by hand.
      for (const f of j.findings) assert.equal(f.fix, SERVE_TLS_SCHEDULE.fix);
    });

    test(`${wantCode ? 'fail' : 'ok'}/doctor against serve, renewal ${moment}: exit ${wantCode}`, async () => {
      const at = new Date(moments()[moment]).toISOString();
      const r = await runCli(['--home', ts.tc.home, '--json', 'doctor', `127.0.0.1:${port}`, '--now', at]);
      assert.equal(r.code, wantCode, r.out);
      const j = JSON.parse(r.out) as { problems: { code: string; level: string; fix: string }[] };
      assert.deepEqual(j.problems.map((p) => `${p.code}:${p.level}`), moment === 'overdue' ? ['CERT_EXPIRING:renewal-overdue'] : []);
      for (const p of j.problems) assert.equal(p.fix, SERVE_TLS_SCHEDULE.fix);
    });
  }

  // The same through the real `mutual` process, with the config `monitor once` makes for --home.
  for (const [moment, wantCode] of [['fresh', 0], ['overdue', 5]] as const) {
    test(`${wantCode ? 'fail' : 'ok'}/the mutual process: monitor once --home and doctor, renewal ${moment}: exit ${wantCode}`, async () => {
      const at = new Date(moments()[moment]).toISOString();
      const [mon, doc] = await Promise.all([
        mutual(['--home', ts.tc.home, 'monitor', 'once', '--no-alerts', '--now', at]),
        mutual(['--home', ts.tc.home, 'doctor', `127.0.0.1:${port}`, '--now', at]),
      ]);
      assert.equal(mon.status, wantCode, mon.stdout + mon.stderr);
      assert.equal(doc.status, wantCode, doc.stdout + doc.stderr);
    });
  }

  test('ok/doctor without the CA at hand: the 1.6-day certificate is judged by its lifetime, not as "expires within 7 days"', async () => {
    const at = new Date(moments().fresh).toISOString();
    const r = await runCli(['--home', path.join(ts.tc.dir, 'no-ca-here'), '--json', 'doctor', `127.0.0.1:${port}`, '--ca', ts.files.root, '--now', at]);
    assert.equal(r.code, 0, r.out);
  });
});
