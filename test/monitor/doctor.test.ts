/**
 * `mutual doctor` against real broken setups: Node https servers built from test CAs and nginx with
 * `ssl_verify_client on`. Each diagnosis comes from a real handshake, not a mocked error.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { diagnoseConnection, formatDoctorReport, type DoctorOptions, type DoctorReport } from '../../src/monitor/doctor.ts';
import { crlFromFile } from '../../src/monitor/scan-crls.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { hasTool } from '../helpers/tools.ts';
import type { TestCa } from '../helpers/test-ca.ts';
import {
  DAY, clientNames, closedPort, crlPems, issuePem, makePastCa, serverNames, startHangingServer, startNginx, startResettingServer, startTlsServer, type Running,
} from './support.ts';
import { runMonitorCli } from './run-monitor-cli.ts';

type Pem = { certificatePem: string; fullchainPem: string; keyPem: string };

let ca: TestCa;
let other: TestCa;
const servers: Record<string, Running> = {};
const pems: Record<string, Pem> = {};
let anchors: Buffer[];
let intermediates: Buffer[];
let nginxUp = false;

before(async () => {
  [ca, other] = await Promise.all([makePastCa('Acme Test'), makePastCa('Other Test')]);
  anchors = [readPemOrDer(ca.ca.rootPem, ['CERTIFICATE'])];
  intermediates = [ca.ca.server.pem, ca.ca.client.pem].map((p) => readPemOrDer(p, ['CERTIFICATE']));
  const past = new Date(Date.now() - 59 * DAY);
  const issued = await Promise.all([
    issuePem(ca, { role: 'server', names: serverNames('localhost') }),
    issuePem(ca, { role: 'server', names: serverNames('localhost'), now: past, lifetimeSeconds: 86_400 }),
    issuePem(ca, { role: 'server', names: serverNames('localhost'), now: new Date(Date.now() + 2 * DAY) }),
    issuePem(other, { role: 'server', names: serverNames('localhost') }),
    issuePem(ca, { role: 'server', names: serverNames('other.acme.internal') }),
    issuePem(ca, { role: 'client', names: clientNames('payments') }),
    issuePem(ca, { role: 'client', names: clientNames('billing'), now: past, lifetimeSeconds: 86_400 }),
    issuePem(ca, { role: 'client', names: clientNames('revoked') }),
    issuePem(other, { role: 'client', names: clientNames('stranger') }),
  ]);
  const names = ['server', 'serverExpired', 'serverNotYet', 'serverOtherCa', 'serverWrongName', 'client', 'clientExpired', 'clientRevoked', 'clientOtherCa'];
  names.forEach((n, i) => (pems[n] = issued[i]));
  await ca.ca.revoke({ serial: issued[7].serial, reason: 'keyCompromise', now: new Date() });
  const tlsServer = (p: Pem, chain = true) => startTlsServer({ cert: chain ? p.fullchainPem : p.certificatePem, key: p.keyPem });
  const mtls = { clientCa: ca.ca.rootPem + ca.ca.client.pem, crl: crlPems(ca) };
  const started = await Promise.all([
    tlsServer(pems.server), tlsServer(pems.server, false), tlsServer(pems.serverExpired), tlsServer(pems.serverNotYet), tlsServer(pems.serverOtherCa), tlsServer(pems.serverWrongName),
    startTlsServer({ cert: pems.server.fullchainPem, key: pems.server.keyPem, ...mtls }),
    startHangingServer(), startResettingServer(),
  ]);
  ['ok', 'leafOnly', 'expired', 'notYet', 'otherCa', 'wrongName', 'mtls', 'hang', 'reset'].forEach((n, i) => (servers[n] = started[i]));
  if (hasTool('nginx')) {
    servers.nginx = await startNginx({ dir: ca.dir, fullchain: pems.server.fullchainPem, key: pems.server.keyPem, clientCa: ca.ca.client.pem + ca.ca.rootPem, crlPem: crlPems(ca).join('') });
    nginxUp = true;
  } else if (process.env.MUTUAL_INTEROP === 'require') throw new Error('nginx is not installed (apt-get install nginx); MUTUAL_INTEROP=require');
});

after(async () => {
  await Promise.all(Object.values(servers).map((s) => s.close()));
  await Promise.all([ca?.close(), other?.close()]);
});

const doctor = (server: string, o: Partial<DoctorOptions> & { as?: string } = {}): Promise<DoctorReport> => diagnoseConnection({
  host: '127.0.0.1', port: servers[server].port, servername: 'localhost', anchors, timeoutMs: 2000,
  crls: [crlFromFile(`${ca.layout.caDir}/client.crl`)], inventory: ca.ca.store,
  ...(o.as ? { cert: pems[o.as].fullchainPem, key: pems[o.as].keyPem } : {}), ...o,
});

interface Case {
  name: string;
  server: string;
  as?: string;
  /** More options, read when the test runs (after `before`). */
  extra?: () => Partial<DoctorOptions>;
  exit: number;
  /** code@source-prefix of problems that must be there. */
  problems?: string[];
  required?: 'yes' | 'no';
  refused?: boolean;
  text?: RegExp;
}

const has = (r: DoctorReport, want: string) => {
  const [code, src] = want.split('@');
  return r.problems.some((f) => f.code === code && (!src || f.source.startsWith(src)));
};

function check(c: Case, r: DoctorReport): void {
  const text = formatDoctorReport(r);
  assert.equal(r.exitCode, c.exit, text);
  for (const p of c.problems ?? []) assert.ok(has(r, p), `${p} missing:\n${text}`);
  if (c.exit === 0) assert.deepEqual(r.problems, [], text);
  if (c.required) assert.equal(r.clientCertRequired, c.required, text);
  if (c.refused !== undefined) assert.equal(r.client?.refused, c.refused, text);
  if (c.text) assert.match(text, c.text);
  // Every problem says what to do.
  for (const f of r.problems) assert.ok(f.fix.length > 10, f.code);
}

const nodeCases: Case[] = [
  { name: 'ok/healthy TLS server', server: 'ok', exit: 0, required: 'no', text: /HEALTHY/ },
  { name: 'ok/mTLS with a good client certificate', server: 'mtls', as: 'client', exit: 0, required: 'yes', refused: false },
  { name: 'fail/server certificate expired', server: 'expired', exit: 6, problems: ['CERT_EXPIRED@endpoint'], text: /expired \d+ days ago/ },
  { name: 'fail/missing intermediate (server sends only the leaf)', server: 'leafOnly', exit: 6, problems: ['CERT_CHAIN_INCOMPLETE@endpoint'], text: /fullchain\.pem/ },
  { name: 'fail/missing intermediate, named from the CA', server: 'leafOnly', extra: () => ({ intermediates }), exit: 6, problems: ['CERT_CHAIN_INCOMPLETE@endpoint'], text: /does not send the intermediate "CN=Acme Test Server CA/ },
  { name: 'fail/unknown CA', server: 'otherCa', exit: 6, problems: ['CERT_UNTRUSTED@endpoint'], text: /Other Test Root CA.*not in the trust bundle/ },
  { name: 'fail/hostname mismatch', server: 'wrongName', exit: 6, problems: ['CERT_NAME_MISMATCH@endpoint'], text: /for other\.acme\.internal, not for localhost/ },
  { name: 'fail/server certificate not yet valid', server: 'notYet', exit: 6, problems: ['CERT_NOT_YET_VALID@endpoint'], text: /not valid until/ },
  { name: 'fail/client certificate required, none given', server: 'mtls', exit: 6, problems: ['CLIENT_CERT_REFUSED@endpoint'], required: 'yes', text: /alert certificate_required/ },
  { name: 'fail/our client certificate expired', server: 'mtls', as: 'clientExpired', exit: 6, problems: ['CERT_EXPIRED@client-cert'], refused: true },
  { name: 'fail/our client certificate revoked', server: 'mtls', as: 'clientRevoked', exit: 6, problems: ['CERT_REVOKED@client-cert'], refused: true, text: /revoked \(since/ },
  { name: 'fail/our client certificate from an untrusted CA', server: 'mtls', as: 'clientOtherCa', exit: 6, problems: ['CERT_UNTRUSTED@client-cert'], refused: true, text: /Other Test Client CA/ },
  { name: 'fail/server certificate used as a client certificate', server: 'mtls', as: 'server', exit: 6, problems: ['CERT_WRONG_EKU@client-cert'], refused: true, text: /server certificate cannot be used as a client/ },
];

describe('doctor against node:https servers', () => {
  for (const c of nodeCases) {
    test(c.name, async () => {
      check(c, await doctor(c.server, { as: c.as, ...c.extra?.() }));
    });
  }
});

describe('doctor against nginx with ssl_verify_client on', () => {
  const cases: Case[] = [
    { name: 'ok/good client certificate', server: 'nginx', as: 'client', exit: 0, required: 'yes', refused: false },
    { name: 'fail/no client certificate (nginx answers 400)', server: 'nginx', exit: 6, required: 'yes', problems: ['CLIENT_CERT_REFUSED@endpoint'], text: /No required SSL certificate was sent/ },
    { name: 'fail/our client certificate expired', server: 'nginx', as: 'clientExpired', exit: 6, problems: ['CERT_EXPIRED@client-cert'], refused: true, text: /SSL certificate error/ },
    { name: 'fail/our client certificate revoked', server: 'nginx', as: 'clientRevoked', exit: 6, problems: ['CERT_REVOKED@client-cert'], refused: true },
    { name: 'fail/our client certificate from an untrusted CA', server: 'nginx', as: 'clientOtherCa', exit: 6, problems: ['CERT_UNTRUSTED@client-cert'], refused: true },
    { name: 'fail/server certificate used as a client certificate', server: 'nginx', as: 'server', exit: 6, problems: ['CERT_WRONG_EKU@client-cert'], refused: true },
  ];
  for (const c of cases) {
    test(c.name, async (t) => {
      if (!nginxUp) return t.skip('nginx is not installed (apt-get install nginx)');
      check(c, await doctor(c.server, { as: c.as }));
    });
  }
  test('ok/nginx logged the refusals the doctor explained', (t) => {
    if (!nginxUp) return t.skip('nginx is not installed');
    const log = (servers.nginx as Running & { log: () => string }).log();
    assert.match(log, /certificate has expired|certificate revoked|unsupported certificate purpose|unable to get/);
  });
});

describe('doctor with endpoints that hang, reset or are closed', () => {
  test('fail/hanging server is bounded by the timeout', async () => {
    const t0 = Date.now();
    const r = await doctor('hang', { timeoutMs: 400 });
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
    assert.equal(r.exitCode, 6);
    assert.ok(has(r, 'MONITOR_ENDPOINT_UNREACHABLE'), formatDoctorReport(r));
    assert.match(formatDoctorReport(r), /did not finish within 400 ms/);
  });
  test('fail/server that resets', async () => {
    const r = await doctor('reset');
    assert.equal(r.exitCode, 6);
    assert.ok(has(r, 'MONITOR_ENDPOINT_UNREACHABLE'), formatDoctorReport(r));
  });
  test('fail/nothing listens', async () => {
    const port = await closedPort();
    const r = await diagnoseConnection({ host: '127.0.0.1', port, anchors, timeoutMs: 1000 });
    assert.equal(r.exitCode, 6);
    assert.match(formatDoctorReport(r), /ECONNREFUSED/);
  });
});

describe('the doctor command', () => {
  const runCli = runMonitorCli;

  test('fail/revoked client certificate, found through --home', async () => {
    const dir = fs.mkdtempSync(path.join(ca.dir, 'cli-'));
    fs.writeFileSync(path.join(dir, 'cert.pem'), pems.clientRevoked.fullchainPem);
    fs.writeFileSync(path.join(dir, 'key.pem'), pems.clientRevoked.keyPem);
    const r = await runCli(['--home', ca.home, 'doctor', `127.0.0.1:${servers.mtls.port}`, '--servername', 'localhost', '--cert', path.join(dir, 'cert.pem'), '--key', path.join(dir, 'key.pem')]);
    assert.equal(r.code, 6, r.out);
    assert.match(r.out, /\[CERT_REVOKED\].*revoked \(since/);
    assert.match(r.out, /fix: .*mutual issue client spiffe:\/\/acme\.internal\/prod\/revoked/);
  });

  test('ok/--json for a healthy server', async () => {
    const r = await runCli(['--home', ca.home, '--json', 'doctor', `127.0.0.1:${servers.ok.port}`, '--servername', 'localhost']);
    assert.equal(r.code, 0, r.out);
    const j = JSON.parse(r.out);
    assert.equal(j.healthy, true);
    assert.equal(j.serverChain.length, 3);
    assert.equal(j.clientCertRequired, 'no');
  });
});
