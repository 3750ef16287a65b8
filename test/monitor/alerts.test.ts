/**
 * Alerts, dedupe, digest, metrics and the `monitor` commands: a real SMTP server (smtp-server)
 * receives the emails, a real HTTP server the webhooks; the state file carries dedupe across runs.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { stringify as toYaml } from 'yaml';
import { validateMonitorConfig, type MonitorConfig } from '../../src/monitor/monitor-config.ts';
import { runMonitorOnce, MONITOR_EXIT } from '../../src/monitor/run-monitor.ts';
import { startMonitorDaemon } from '../../src/monitor/monitor-daemon.ts';
import { readAlertState } from '../../src/monitor/alert-state.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { commandExitCode, registerMonitorCommands } from '../../src/cli/monitor-command.ts';
import type { TestCa } from '../helpers/test-ca.ts';
import { DAY, clientNames, issuePem, makePastCa, startSmtpServer, startWebhookServer } from './support.ts';

let ca: TestCa;
let smtp: Awaited<ReturnType<typeof startSmtpServer>>;
let hook: Awaited<ReturnType<typeof startWebhookServer>>;
let slack: Awaited<ReturnType<typeof startWebhookServer>>;
// Set after the CA is made: its admin certificate (90 days from 60 days ago) then sits just
// inside the 30-day threshold, on every run.
let now = new Date();
const ago = (d: number) => new Date(now.getTime() - d * DAY);

before(async () => {
  ca = await makePastCa();
  now = new Date(Date.now() + 5_000);
  await Promise.all([
    issuePem(ca, { role: 'client', names: clientNames('billing'), now: ago(55), lifetimeSeconds: 60 * 86_400 }),
    // 60-day certificates: thresholds scaled by 60/90, so ledger (13 days left) is at 30d, a week later at 14d.
    issuePem(ca, { role: 'client', names: clientNames('ledger'), now: ago(47), lifetimeSeconds: 60 * 86_400 }),
    issuePem(ca, { role: 'client', names: clientNames('gone'), now: ago(13), lifetimeSeconds: 10 * 86_400 }),
  ]);
  await ca.ca.writeCrl('server', now);
  await ca.ca.writeCrl('client', now);
  fs.writeFileSync(path.join(ca.dir, 'smtp.pass'), 'smtp-secret\n');
  [smtp, hook, slack] = await Promise.all([startSmtpServer({ user: 'monitor', password: 'smtp-secret' }), startWebhookServer(), startWebhookServer()]);
});

after(async () => {
  await Promise.all([smtp?.close(), hook?.close(), slack?.close()]);
  await ca?.close();
});

const configFor = (stateFile: string, extra: Record<string, unknown> = {}): MonitorConfig => validateMonitorConfig({
  stateFile,
  sources: { inventory: { home: ca.home } },
  alerts: {
    email: { host: '127.0.0.1', port: smtp.port, tls: 'none', auth: { user: 'monitor', passwordFile: path.join(ca.dir, 'smtp.pass') }, from: 'mutual@acme.internal', to: ['ops@acme.internal'], timeout: '5s' },
    webhooks: [{ url: hook.url, name: 'ops-hook' }, { url: slack.url, format: 'slack', name: 'slack' }],
    ...extra,
  },
}, ca.dir);

describe('alerts over SMTP and webhooks, deduped across runs', () => {
  let state: string;
  let cfg: MonitorConfig;
  before(() => {
    state = path.join(ca.dir, 'state-1.json');
    cfg = configFor(state);
  });

  test('ok/first run: one email, one JSON webhook, one Slack webhook, state written 0600', async () => {
    const r = await runMonitorOnce(cfg, { now });
    assert.equal(r.exitCode, MONITOR_EXIT.CRITICAL);
    assert.deepEqual(r.deliveries.map((d) => `${d.channel}:${d.ok}`).sort(), ['email:true', 'ops-hook:true', 'slack:true']);
    assert.equal(smtp.mails.length, 1);
    const mail = smtp.mails[0];
    assert.deepEqual(mail.to, ['ops@acme.internal']);
    assert.deepEqual(smtp.logins, ['monitor']);
    assert.match(mail.subject, /^\[mutual\] CRITICAL: /);
    assert.match(mail.body, /spiffe:\/\/acme\.internal\/prod\/gone/);
    assert.match(mail.body, /spiffe:\/\/acme\.internal\/prod\/billing/);
    assert.match(mail.body, /fix: .*mutual issue client spiffe:\/\/acme\.internal\/prod\/gone --out DIR/);
    const body = hook.bodies[0] as { type: string; findings: { subject: string; level: string; code: string }[] };
    assert.equal(body.type, 'mutual.monitor.alert');
    assert.ok(body.findings.some((f) => f.subject === 'spiffe://acme.internal/prod/ledger' && f.level === '30d' && f.code === 'CERT_EXPIRING'));
    const s = slack.bodies[0] as { text: string; blocks: { type: string }[] };
    assert.match(s.text, /CRITICAL/);
    assert.ok(s.blocks.length >= 4);
    assert.equal(fs.statSync(state).mode & 0o777, 0o600);
  });

  test('ok/second run: same findings, nothing sent again', async () => {
    const r = await runMonitorOnce(cfg, { now: new Date(now.getTime() + 3_600_000) });
    assert.deepEqual(r.deliveries, [], JSON.stringify(hook.bodies.at(-1)));
    assert.equal(r.exitCode, MONITOR_EXIT.CRITICAL);
    assert.equal(smtp.mails.length, 1);
    assert.equal(hook.bodies.length, 1);
  });

  test('ok/a week later: only findings that crossed a threshold are alerted', async () => {
    const r = await runMonitorOnce(cfg, { now: new Date(now.getTime() + 7 * DAY) });
    assert.ok(r.deliveries.every((d) => d.ok));
    assert.equal(smtp.mails.length, 2);
    const body = hook.bodies[1] as { findings: { subject: string; level: string }[] };
    const alerted = body.findings.map((f) => `${f.subject}@${f.level}`);
    assert.ok(alerted.includes('spiffe://acme.internal/prod/ledger@14d'), alerted.join());
    assert.ok(alerted.includes('spiffe://acme.internal/prod/billing@expired'), alerted.join());
    assert.ok(!alerted.some((a) => a.startsWith('spiffe://acme.internal/prod/gone')), 'gone was already alerted as expired');
  });
});

describe('failure and retry', () => {
  test('fail/a webhook answering 500: exit 7, the others are delivered; ok/the next run retries only that one', async () => {
    const state = path.join(ca.dir, 'state-2.json');
    const cfg = configFor(state);
    const mails = smtp.mails.length;
    const hooks = hook.bodies.length;
    slack.status = 500;
    const r1 = await runMonitorOnce(cfg, { now });
    assert.equal(r1.exitCode, MONITOR_EXIT.ALERT_FAILED);
    assert.deepEqual(r1.deliveries.filter((d) => !d.ok).map((d) => d.channel), ['slack']);
    assert.equal(smtp.mails.length, mails + 1);
    assert.equal(readAlertState(state).channels.slack, undefined);
    slack.status = 200;
    const slackBefore = slack.bodies.length;
    const r2 = await runMonitorOnce(cfg, { now });
    assert.deepEqual(r2.deliveries.map((d) => d.channel), ['slack']);
    assert.equal(slack.bodies.length, slackBefore + 1);
    assert.equal(smtp.mails.length, mails + 1);
    assert.equal(hook.bodies.length, hooks + 1);
  });

  test('fail/SMTP server down: reported, bounded, retried next time', async () => {
    const cfg = validateMonitorConfig({
      stateFile: path.join(ca.dir, 'state-3.json'), sources: { inventory: { home: ca.home } },
      alerts: { email: { host: '127.0.0.1', port: 1, tls: 'none', from: 'a@b.c', to: ['x@y.z'], timeout: '2s' } },
    });
    const r = await runMonitorOnce(cfg, { now });
    assert.equal(r.exitCode, MONITOR_EXIT.ALERT_FAILED);
    assert.match(r.deliveries[0].error!, /ECONNREFUSED|connect/);
  });

  test('fail/a corrupt state file stops the run before anything is sent', async () => {
    const state = path.join(ca.dir, 'state-bad.json');
    fs.writeFileSync(state, '{ not json');
    const mails = smtp.mails.length;
    await assert.rejects(runMonitorOnce(configFor(state), { now }), (e) => isMutualError(e, 'MONITOR_STATE_INVALID'));
    assert.equal(smtp.mails.length, mails);
  });
});

describe('daily digest', () => {
  test('ok/sent once a day after its time, even with nothing new', async () => {
    const state = path.join(ca.dir, 'state-4.json');
    const cfg = validateMonitorConfig({
      stateFile: state, sources: { inventory: { home: ca.home } },
      alerts: { minSeverity: 'critical', webhooks: [{ url: hook.url, name: 'digest-hook' }], digest: { at: '00:00' } },
    });
    const before = hook.bodies.length;
    await runMonitorOnce(cfg, { now });
    await runMonitorOnce(cfg, { now: new Date(now.getTime() + 60_000) });
    const sent = hook.bodies.slice(before) as { type: string; findings: unknown[] }[];
    assert.deepEqual(sent.map((b) => b.type).sort(), ['mutual.monitor.alert', 'mutual.monitor.digest']);
    const digest = sent.find((b) => b.type === 'mutual.monitor.digest')!;
    assert.ok(digest.findings.length >= 3, 'the digest lists warnings too');
    const tomorrow = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1, 0, 5));
    await runMonitorOnce(cfg, { now: tomorrow });
    assert.equal((hook.bodies.slice(before) as { type: string }[]).filter((b) => b.type === 'mutual.monitor.digest').length, 2);
  });
});

describe('metrics', () => {
  test('ok/textfile for node_exporter', async () => {
    const file = path.join(ca.dir, 'metrics', 'mutual.prom');
    const cfg = validateMonitorConfig({ sources: { inventory: { home: ca.home } }, metrics: { textfile: file } });
    await runMonitorOnce(cfg, { now, noAlerts: true });
    const text = fs.readFileSync(file, 'utf8');
    assert.match(text, /mutual_certificate_expiry_timestamp_seconds\{identity="spiffe:\/\/acme\.internal\/prod\/billing",issuer="Acme Test Client CA",source="inventory",serial="[0-9a-f]+"\} \d+/);
    assert.match(text, /mutual_certificate_expiry_timestamp_seconds\{identity="Acme Test Root CA",issuer="Acme Test Root CA",source="ca"/);
    assert.match(text, /mutual_monitor_findings\{kind="expired",severity="critical"\} 1/);
    assert.match(text, /mutual_monitor_last_scan_timestamp_seconds \d+/);
    assert.match(text, /mutual_monitor_last_scan_duration_seconds [\d.e-]+/);
    assert.match(text, /mutual_crl_next_update_timestamp_seconds\{issuer="CN=Acme Test Root CA, O=Acme Test"/);
    assert.match(text, /mutual_inventory_certificates\{state="total"\} \d+/);
  });

  test('ok/daemon serves /metrics and rescans on its schedule', async () => {
    const cfg = validateMonitorConfig({ stateFile: path.join(ca.dir, 'state-5.json'), sources: { inventory: { home: ca.home } } });
    let cycles = 0;
    const d = await startMonitorDaemon(cfg, { metricsListen: '127.0.0.1:0', everyMs: 150, onCycle: () => cycles++ });
    try {
      await d.firstCycle;
      const res = await fetch(d.metricsUrl!);
      assert.equal(res.status, 200);
      assert.match(await res.text(), /mutual_certificate_expiry_timestamp_seconds\{identity="spiffe:\/\/acme\.internal\/prod\/gone"/);
      assert.equal((await fetch(d.metricsUrl!.replace('/metrics', '/other'))).status, 404);
      const t0 = Date.now();
      while (cycles < 3 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 50));
      assert.ok(cycles >= 3, `${cycles} cycles`);
    } finally {
      await d.close();
    }
  });
});

describe('the monitor commands', () => {
  const runCli = async (args: string[], stop?: () => Promise<void>) => {
    let out = '';
    const program = new Command('mutual').option('--home <dir>').option('--json').exitOverride();
    registerMonitorCommands(program, { stdout: (s) => (out += s), stderr: (s) => (out += s), stopSignal: stop });
    await program.parseAsync(args, { from: 'user' });
    return { out, code: commandExitCode(program) };
  };

  test('ok/`monitor once --config` with a YAML file: table, exit 6', async () => {
    const file = path.join(ca.dir, 'monitor.yaml');
    fs.writeFileSync(file, toYaml({ stateFile: 'cli-state.json', sources: { inventory: { home: ca.home } }, alerts: { webhooks: [{ url: hook.url }] } }));
    const r = await runCli(['monitor', 'once', '--config', file]);
    assert.equal(r.code, 6, r.out);
    assert.match(r.out, /CRITICAL\s+expired\s+spiffe:\/\/acme\.internal\/prod\/gone/);
    assert.ok(fs.existsSync(path.join(ca.dir, 'cli-state.json')));
  });

  test('ok/`monitor once --json --no-alerts` watching --home by default', async () => {
    const r = await runCli(['--home', ca.home, '--json', 'monitor', 'once', '--no-alerts']);
    const j = JSON.parse(r.out);
    assert.equal(r.code, 6);
    assert.equal(j.exitCode, 6);
    assert.ok(j.findings.some((f: { kind: string; subject: string }) => f.kind === 'expired' && f.subject === 'spiffe://acme.internal/prod/gone'));
    assert.ok(!fs.existsSync(path.join(ca.home, 'monitor-state.json')), '--no-alerts leaves no state');
  });

  test('ok/`monitor once --now` far in the past: healthy, exit 0', async () => {
    const r = await runCli(['--home', ca.home, 'monitor', 'once', '--no-alerts', '--now', ago(58).toISOString()]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /Healthy/);
  });

  test('ok/`monitor run` serves metrics until stopped', async () => {
    let release!: () => void;
    const stop = new Promise<void>((r) => (release = r));
    const done = runCli(['--home', ca.home, 'monitor', 'run', '--metrics-listen', '127.0.0.1:0', '--every', '10s'], () => stop);
    // close() waits for a running scan, so the first one is always reported.
    setTimeout(() => release(), 200);
    const r = await done;
    assert.equal(r.code, 0);
    assert.match(r.out, /metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/);
    assert.match(r.out, /scan: \d+ critical/);
  });

  test('fail/bad config is CONFIG_INVALID', async () => {
    const file = path.join(ca.dir, 'bad.yaml');
    fs.writeFileSync(file, 'sources:\n  endpoints:\n    - address: nowhere\n');
    await assert.rejects(runCli(['monitor', 'once', '--config', file]), (e) => isMutualError(e, 'CONFIG_INVALID'));
  });
});

test('ok/emails and webhooks never carry key material', () => {
  for (const m of smtp.mails) assert.doesNotMatch(m.raw, /PRIVATE KEY|smtp-secret/);
  for (const b of [...hook.bodies, ...slack.bodies]) assert.doesNotMatch(JSON.stringify(b), /PRIVATE KEY|smtp-secret/);
});
