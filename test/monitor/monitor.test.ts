/**
 * `mutual monitor`: every source (the CA's inventory, CA certificates and CRLs, CRLs over HTTP,
 * files and folders, live endpoints) against a real test CA and real servers; bad input is
 * reported and the scan carries on.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { buildPkcs12 } from '../../src/core/pkcs12.ts';
import { toPem } from '../../src/core/pem.ts';
import { validateMonitorConfig, type MonitorConfig } from '../../src/monitor/monitor-config.ts';
import { runScan, type MonitorReport } from '../../src/monitor/run-scan.ts';
import { classifyExpiry } from '../../src/monitor/check-certificate.ts';
import { formatReport, reportJson } from '../../src/monitor/format-report.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { openssl, requireTool } from '../helpers/tools.ts';
import type { TestCa } from '../helpers/test-ca.ts';
import { DAY, clientNames, issuePem, makePastCa, serverNames, startHangingServer, startTlsServer, crlPems, type Running } from './support.ts';

let ca: TestCa;
let other: TestCa;
let now = new Date();
const ago = (days: number) => new Date(now.getTime() - days * DAY);
const serials: Record<string, string> = {};
const servers: Record<string, Running> = {};
let crlServer: http.Server;
let crlUrl: string;
let filesDir: string;

before(async () => {
  [ca, other] = await Promise.all([makePastCa('Acme Test'), makePastCa('Other Test')]);
  now = new Date();
  // The inventory: renewed, expiring at each threshold, expired (recently and long ago), revoked.
  // These live 60 days, so the thresholds are scaled by 60/90 (7d -> 4.7 days, 14d -> 9.3, 30d -> 20).
  const plan: [string, Parameters<typeof issuePem>[1]][] = [
    ['paymentsOld', { role: 'client', names: clientNames('payments'), now: ago(59), lifetimeSeconds: 60 * 86_400 }],
    ['paymentsNew', { role: 'client', names: clientNames('payments') }],
    ['billing', { role: 'client', names: clientNames('billing'), now: ago(56), lifetimeSeconds: 60 * 86_400 }],
    ['ledger', { role: 'client', names: clientNames('ledger'), now: ago(41), lifetimeSeconds: 60 * 86_400 }],
    ['gone', { role: 'client', names: clientNames('gone'), now: ago(13), lifetimeSeconds: 10 * 86_400 }],
    ['ancient', { role: 'client', names: clientNames('ancient'), now: ago(58), lifetimeSeconds: 86_400 }],
    ['api', { role: 'server', names: serverNames('api.acme.internal'), now: ago(52), lifetimeSeconds: 60 * 86_400 }],
    ['revoked', { role: 'client', names: clientNames('revoked'), now: ago(57), lifetimeSeconds: 60 * 86_400 }],
    ['web', { role: 'server', names: serverNames('localhost') }],
    ['webRevoked', { role: 'server', names: serverNames('localhost') }],
  ];
  const issued = await Promise.all(plan.map(([, req]) => issuePem(ca, req)));
  plan.forEach(([n], i) => (serials[n] = issued[i].serial));
  const by = Object.fromEntries(plan.map(([n], i) => [n, issued[i]]));
  await ca.ca.revoke({ serial: serials.revoked, now });
  await ca.ca.revoke({ serial: serials.webRevoked, now });
  await ca.ca.writeCrl('server', now);
  await ca.ca.writeCrl('client', now);

  // Files: PEM fullchain, DER, PKCS#12 with a password file, a key, garbage, a dangling link.
  filesDir = path.join(ca.dir, 'certs');
  fs.mkdirSync(path.join(filesDir, 'nested'), { recursive: true });
  fs.writeFileSync(path.join(filesDir, 'api-fullchain.pem'), by.api.fullchainPem);
  fs.writeFileSync(path.join(filesDir, 'api-key.pem'), by.api.keyPem);
  fs.writeFileSync(path.join(filesDir, 'nested', 'ledger.der'), by.ledger.certificate);
  fs.writeFileSync(path.join(filesDir, 'billing.p12'), buildPkcs12({ key: by.billing.privateKey!, certificate: by.billing.certificate, password: 'p12-secret' }));
  fs.writeFileSync(path.join(ca.dir, 'p12.pass'), 'p12-secret\n');
  fs.writeFileSync(path.join(filesDir, 'garbage.pem'), 'this is not a certificate\n');
  fs.writeFileSync(path.join(filesDir, 'truncated.crt'), Buffer.from([0x30, 0x82, 0x05, 0x00, 0x01]));
  fs.symlinkSync(path.join(filesDir, 'missing-target.pem'), path.join(filesDir, 'dangling.pem'));
  fs.writeFileSync(path.join(filesDir, 'notes.txt'), 'ignored in a folder walk');

  // CRLs over HTTP: the client CA's, and garbage.
  const crlDer = fs.readFileSync(`${ca.layout.caDir}/client.crl`);
  crlServer = http.createServer((req, res) => (req.url === '/crl/client.crl' ? res.end(crlDer) : res.end('garbage')));
  await new Promise<void>((r) => crlServer.listen(0, '127.0.0.1', r));
  crlUrl = `http://127.0.0.1:${(crlServer.address() as AddressInfo).port}`;

  const started = await Promise.all([
    startTlsServer({ cert: by.web.fullchainPem, key: by.web.keyPem }),
    startTlsServer({ cert: by.web.certificatePem, key: by.web.keyPem }),
    startTlsServer({ cert: by.webRevoked.fullchainPem, key: by.webRevoked.keyPem }),
    startHangingServer(),
    startTlsServer({ cert: by.web.fullchainPem, key: by.web.keyPem, clientCa: ca.ca.rootPem + ca.ca.client.pem, crl: crlPems(ca) }),
    startTlsServer({ cert: by.web.fullchainPem, key: by.web.keyPem }),
    startTlsServer({ cert: by.web.fullchainPem, key: by.web.keyPem }),
  ]);
  ['web', 'leafOnly', 'revoked', 'hang', 'mtls', 'web2', 'web3'].forEach((n, i) => (servers[n] = started[i]));
  fs.writeFileSync(path.join(ca.dir, 'mon-cert.pem'), by.paymentsNew.fullchainPem);
  fs.writeFileSync(path.join(ca.dir, 'mon-key.pem'), by.paymentsNew.keyPem);
  fs.writeFileSync(path.join(ca.dir, 'old-cert.pem'), by.gone.fullchainPem);
  fs.writeFileSync(path.join(ca.dir, 'old-key.pem'), by.gone.keyPem);
});

after(async () => {
  await Promise.all(Object.values(servers).map((s) => s.close()));
  await new Promise((r) => crlServer?.close(r));
  await Promise.all([ca?.close(), other?.close()]);
});

const config = (extra: Record<string, unknown> = {}): MonitorConfig => validateMonitorConfig({ sources: { inventory: { home: ca.home } }, ...extra }, ca.dir);
const find = (r: MonitorReport, kind: string, pred: (f: MonitorReport['findings'][number]) => boolean = () => true) => r.findings.filter((f) => f.kind === kind && pred(f));
const about = (r: MonitorReport, subject: string) => r.findings.filter((f) => f.subject.includes(subject));

describe('expiry thresholds', () => {
  const cases: [string, number, string | undefined, string | undefined][] = [
    ['ok/far away', 45, undefined, undefined],
    ['fail/30d warning', 29.5, '30d', 'warning'],
    ['fail/14d warning', 13, '14d', 'warning'],
    ['fail/7d critical', 6, '7d', 'critical'],
    ['fail/1d critical', 0.5, '1d', 'critical'],
    ['fail/expired critical', -1, 'expired', 'critical'],
  ];
  for (const [name, days, level, severity] of cases) {
    test(name, () => {
      const c = classifyExpiry(new Date(now.getTime() + days * DAY), now, [30, 14, 7, 1], 7);
      assert.equal(c?.level, level);
      assert.equal(c?.severity, severity);
    });
  }
});

describe('the CA inventory', () => {
  let r: MonitorReport;
  before(async () => {
    r = await runScan(config(), { now });
  });
  const cases: [string, string, string | undefined][] = [
    ['ok/a renewed certificate is history, not a finding', 'prod/payments', undefined],
    ['fail/billing expires within 7 days (critical)', 'prod/billing', '7d'],
    ['fail/ledger expires within 30 days (warning)', 'prod/ledger', '30d'],
    ['fail/gone expired 3 days ago', 'prod/gone', 'expired'],
    ['ok/expired beyond the lookback is history', 'prod/ancient', undefined],
    ['fail/a server certificate expires within 14 days', 'api.acme.internal', '14d'],
    ['ok/a revoked certificate is not an expiry finding', 'prod/revoked', undefined],
  ];
  for (const [name, subject, level] of cases) {
    test(name, () => {
      const inv = r.findings.filter((f) => f.source === 'inventory' && f.subject.includes(subject));
      if (level === undefined) assert.deepEqual(inv, []);
      else {
        assert.equal(inv.length, 1, JSON.stringify(inv));
        assert.equal(inv[0].level, level);
        assert.match(inv[0].fix, /mutual (ca renew|issue)/);
      }
    });
  }
  test('ok/counts and per-certificate series', () => {
    assert.ok(r.inventory!.total >= 11);
    assert.ok(r.certificates.some((c) => c.source === 'inventory' && c.identity === 'spiffe://acme.internal/prod/billing' && c.issuer === 'Acme Test Client CA'));
  });
  test('ok/the CA certificates and fresh CRLs are healthy', () => {
    assert.deepEqual(r.findings.filter((f) => f.source === 'ca' || f.kind.startsWith('crl')), []);
    assert.equal(r.crls.length, 3);
    assert.ok(r.crls.every((c) => c.signatureOk === true));
  });
  test('ok/table and JSON', () => {
    const text = formatReport(r);
    assert.match(text, /CRITICAL\s+expiring\s+spiffe:\/\/acme\.internal\/prod\/billing/);
    const j = JSON.parse(JSON.stringify(reportJson(r)));
    assert.equal(j.counts.critical, r.counts.critical);
  });
  test('fail/a missing inventory is reported, the scan carries on', async () => {
    const rr = await runScan(validateMonitorConfig({ sources: { inventory: { home: path.join(ca.dir, 'nope') }, files: [{ path: filesDir }] } }), { now });
    assert.equal(find(rr, 'unreadable', (f) => f.source === 'inventory').length, 1);
    assert.ok(rr.files > 0);
  });
});

describe('CRLs', () => {
  test('fail/stale and soon-stale CRLs of the CA (judged a week later)', async () => {
    const r = await runScan(config(), { now: new Date(now.getTime() + 7 * DAY + 60_000) });
    const stale = find(r, 'crl-stale');
    assert.equal(stale.length, 2, JSON.stringify(stale));
    assert.ok(stale.every((f) => f.code === 'CRL_STALE' && /mutual crl --issuer (server|client)/.test(f.fix)));
    const soon = find((await runScan(config(), { now: new Date(now.getTime() + 6 * DAY) })), 'crl-expiring');
    assert.equal(soon.length, 2);
  });
  test('fail/the root CRL about to go stale names the offline step', async () => {
    const r = await runScan(config(), { now: new Date(now.getTime() + 300 * DAY) });
    const root = find(r, 'crl-expiring', (f) => /Root/.test(f.subject));
    assert.equal(root.length, 1);
    assert.match(root[0].fix, /mutual offline crl/);
  });
  test('ok/a CRL over HTTP; fail/garbage and unreachable ones are reported', async () => {
    const r = await runScan(config({ sources: { crls: [{ url: `${crlUrl}/crl/client.crl` }, { url: `${crlUrl}/garbage` }, { url: 'http://127.0.0.1:1/none.crl', timeout: '1s' }] } }), { now });
    assert.equal(r.crls.filter((c) => c.source.startsWith('crl:http')).length, 1);
    assert.equal(find(r, 'crl-invalid').length, 1);
    assert.equal(find(r, 'unreadable', (f) => f.source.includes('127.0.0.1:1')).length, 1);
  });
});

describe('files and folders', () => {
  let r: MonitorReport;
  before(async () => {
    r = await runScan(validateMonitorConfig({ sources: { files: [{ path: filesDir, passwordFile: path.join(ca.dir, 'p12.pass') }, { path: path.join(ca.dir, 'no-such-dir') }] } }), { now });
  });
  const cases: [string, (r: MonitorReport) => boolean][] = [
    ['ok/PEM fullchain: the leaf expiring in 8 days', (x) => find(x, 'expiring', (f) => f.source.endsWith('api-fullchain.pem') && f.level === '14d').length === 1],
    ['ok/DER in a sub-folder', (x) => find(x, 'expiring', (f) => f.source.endsWith('nested/ledger.der') && f.level === '30d').length === 1],
    ['ok/PKCS#12 with a password file', (x) => find(x, 'expiring', (f) => f.source.endsWith('billing.p12') && f.level === '7d').length === 1],
    ['ok/the intermediate in the fullchain is judged with the CA thresholds', (x) => !x.findings.some((f) => f.subject === 'Acme Test Server CA')],
    ['ok/a key file is not a problem', (x) => about(x, 'api-key.pem').length === 0],
    ['ok/other extensions are skipped in a folder', (x) => about(x, 'notes.txt').length === 0],
    ['fail/garbage PEM', (x) => find(x, 'unreadable', (f) => f.subject.endsWith('garbage.pem') && f.code === 'PEM_MALFORMED').length === 1],
    ['fail/truncated DER', (x) => find(x, 'unreadable', (f) => f.subject.endsWith('truncated.crt') && f.code === 'CERT_MALFORMED').length === 1],
    ['fail/dangling symlink', (x) => find(x, 'unreadable', (f) => f.subject.endsWith('dangling.pem') && /ENOENT/.test(f.message)).length === 1],
    ['fail/missing folder', (x) => find(x, 'unreadable', (f) => f.subject.endsWith('no-such-dir')).length === 1],
  ];
  for (const [name, ok] of cases) test(name, () => assert.ok(ok(r), formatReport(r)));

  test('fail/PKCS#12 without its password', async () => {
    const x = await runScan(validateMonitorConfig({ sources: { files: [{ path: path.join(filesDir, 'billing.p12') }] } }), { now });
    const f = find(x, 'unreadable');
    assert.equal(f.length, 1);
    assert.match(f[0].message, /no passwordFile configured/);
  });

  test('fail/weak key and SHA-1 signature', async (t) => {
    if (!requireTool(t, 'openssl')) return;
    const d = fs.mkdtempSync(path.join(ca.dir, 'weak-'));
    const o = (args: string[]) => assert.equal(openssl(args, { cwd: d }).status, 0);
    o(['genrsa', '-out', 'ca.key', '2048']);
    o(['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=Weak CA', '-days', '30', '-out', 'ca.pem']);
    o(['req', '-new', '-newkey', 'rsa:1024', '-nodes', '-keyout', 'leaf.key', '-subj', '/CN=weak.example', '-out', 'leaf.csr']);
    o(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-sha1', '-days', '100', '-out', 'leaf.pem']);
    const x = await runScan(validateMonitorConfig({ sources: { files: [{ path: path.join(d, 'leaf.pem') }] } }), { now: new Date(Date.now() + 60_000) });
    assert.deepEqual(x.findings.map((f) => `${f.kind}:${f.code}`).sort(), ['weak-key:CERT_WEAK', 'weak-signature:CERT_WEAK']);
  });
});

describe('endpoints', () => {
  let r: MonitorReport;
  before(async () => {
    // A generous timeout for the endpoints that answer (a loaded CI machine may take seconds for a
    // handshake), a short one for the one that hangs: its bound is what that case checks.
    const ep = (name: string, extra: Record<string, unknown> = {}) => ({ address: `127.0.0.1:${servers[name].port}`, servername: 'localhost', timeout: '10s', ...extra });
    r = await runScan(config({
      sources: {
        inventory: { home: ca.home },
        endpoints: [
          ep('web'), ep('leafOnly'), ep('revoked'), ep('hang', { timeout: '500ms' }),
          ep('mtls', { cert: path.join(ca.dir, 'mon-cert.pem'), key: path.join(ca.dir, 'mon-key.pem') }),
          { ...ep('mtls', { cert: path.join(ca.dir, 'old-cert.pem'), key: path.join(ca.dir, 'old-key.pem') }), address: `localhost:${servers.mtls.port}` },
          { address: `127.0.0.1:${servers.web2.port}`, servername: 'wrong.acme.internal' },
          { address: `127.0.0.1:${servers.web3.port}`, servername: 'localhost', ca: path.join(ca.dir, 'missing-bundle.pem') },
        ],
      },
    }), { now });
  });
  const at = (name: string) => `endpoint:127.0.0.1:${servers[name].port}`;
  test('ok/a healthy endpoint has no findings and a series', () => {
    assert.deepEqual(r.findings.filter((f) => f.source === at('web')), []);
    assert.ok(r.certificates.some((c) => c.source === at('web') && c.serial === serials.web));
  });
  test('fail/missing intermediate', () => assert.equal(find(r, 'chain-incomplete', (f) => f.source === at('leafOnly')).length, 1));
  test('fail/revoked but still served', () => {
    const f = find(r, 'revoked-served', (x) => x.source === at('revoked'));
    assert.equal(f.length, 1);
    assert.equal(f[0].serial, serials.webRevoked);
  });
  test('fail/hanging endpoint is bounded and reported; the scan carried on', () => {
    const f = find(r, 'unreachable', (x) => x.source === at('hang'));
    assert.equal(f.length, 1);
    assert.match(f[0].message, /timed out/);
    assert.match(f[0].message, /500 ms/);
    assert.ok(r.durationMs < 10_000, 'the scan did not wait on the hanging endpoint past the others');
  });
  test('ok/mTLS endpoint with the monitor\'s client certificate', () => assert.deepEqual(r.findings.filter((f) => f.source === at('mtls')), []));
  test('fail/mTLS endpoint refuses the monitor\'s expired client certificate', () => {
    assert.equal(find(r, 'client-cert-refused', (f) => f.source === `endpoint:localhost:${servers.mtls.port}`).length, 1);
  });
  test('fail/hostname mismatch', () => assert.equal(find(r, 'hostname-mismatch').length, 1));
  test('fail/an unreadable trust bundle is reported', () => assert.ok(find(r, 'unreadable', (f) => /missing-bundle|ENOENT/.test(f.message)).length === 1));
  test('ok/endpoint observations', () => {
    // The one with a missing trust bundle is reported without being probed.
    assert.equal(r.endpoints.length, 7);
    assert.equal(r.endpoints.filter((e) => !e.up).length, 1);
  });
});

describe('config', () => {
  const bad: [string, unknown][] = [
    ['fail/unknown field', { sourcez: {} }],
    ['fail/bad duration', { schedule: { every: 'hourly' } }],
    ['fail/schedule too short', { schedule: { every: '1s' } }],
    ['fail/endpoint without a port', { sources: { endpoints: [{ address: 'example.com' }] } }],
    ['fail/cert without key', { sources: { endpoints: [{ address: 'a:1', cert: 'c.pem' }] } }],
    ['fail/CRL with url and file', { sources: { crls: [{ url: 'http://x/y.crl', file: 'y.crl' }] } }],
    ['fail/email without recipients', { alerts: { email: { host: 'smtp', from: 'a@b.c', to: [] } } }],
    ['fail/digest time', { alerts: { digest: { at: '25:00' } } }],
  ];
  for (const [name, raw] of bad) {
    test(name, () => assert.throws(() => validateMonitorConfig(raw), (e) => isMutualError(e, 'CONFIG_INVALID')));
  }
  test('ok/defaults', () => {
    const c = validateMonitorConfig({}, '/etc/mutual');
    assert.deepEqual(c.thresholdsDays, [30, 14, 7, 1]);
    assert.equal(c.stateFile, '/etc/mutual/monitor-state.json');
    assert.equal(c.schedule.every, '1h');
    assert.equal(c.alerts.minSeverity, 'warning');
  });
});

test('ok/a CRL file as PEM is read', async () => {
  const f = path.join(ca.dir, 'client-crl.pem');
  fs.writeFileSync(f, toPem(fs.readFileSync(`${ca.layout.caDir}/client.crl`), 'X509 CRL'));
  const r = await runScan(validateMonitorConfig({ sources: { crls: [{ file: f }] } }), { now });
  assert.equal(r.crls.length, 1);
  assert.equal(r.crls[0].entries, 1);
});
