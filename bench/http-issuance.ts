/**
 * Issuance through HTTP with durable persistence: `mutual serve` (POST /v1/sign, admin mTLS,
 * SQLite WAL synchronous=FULL) vs `cfssl serve` (POST /api/v1/cfssl/sign, SQLite WAL, default
 * synchronous=FULL), same CSRs, same load client (8 keep-alive connections), interleaved rounds.
 * Both servers and the load client share this machine's 2 cores.
 *
 *   npm run bench:http-issuance -- [seconds=10] [rounds=3]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { DatabaseSync } from 'node:sqlite';
import { initCa } from '../src/ca/init-ca.ts';
import { writeCsrs } from './peers/openssl-ca.ts';
import { formatTable, median } from './lib/measure.ts';
import { cpuSeconds, freePort, startServer, stop } from './lib/procs.ts';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);
const CSRS = 60_000;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-bench-http-'));
const csrDir = path.join(work, 'csrs');
fs.mkdirSync(csrDir);
await writeCsrs(csrDir, CSRS);
const passphrase = 'bench-passphrase-not-secret';

function load(opts: Record<string, unknown>) {
  const out = execFileSync(process.execPath, ['bench/lib/load-client.ts', JSON.stringify(opts)], { encoding: 'utf8' });
  return JSON.parse(out.trim());
}

async function runMutual() {
  const home = path.join(work, `mutual-${Date.now()}`);
  await initCa({ home, trustDomain: 'bench.internal', name: 'Bench', passphrase });
  const port = await freePort();
  const child = await startServer(process.execPath, ['bin/mutual.mjs', '--home', home, 'serve', '--listen', `127.0.0.1:${port}`, '--log-level', 'warn', '--rate-limit', 'off'], port, { env: { ...process.env, MUTUAL_CA_PASSPHRASE: passphrase } });
  await new Promise((r) => setTimeout(r, 500));
  const c0 = cpuSeconds(child.pid!);
  const r = load({ url: `https://127.0.0.1:${port}/v1/sign`, concurrency: 8, seconds, csrDir, csrCount: CSRS, bodyTemplate: 'mutual', ca: `${home}/ca/root.pem`, cert: `${home}/admin/cert.pem`, key: `${home}/admin/key.pem` });
  const cpu = cpuSeconds(child.pid!) - c0;
  await stop(child);
  const stored = (new DatabaseSync(`${home}/mutual.db`).prepare("SELECT count(*) AS n FROM certificates WHERE role = 'server'").get() as { n: number }).n;
  fs.rmSync(home, { recursive: true, force: true });
  return { ...r, serverCpuSeconds: cpu, stored };
}

async function runCfssl() {
  const dir = path.join(work, `cfssl-${Date.now()}`);
  fs.mkdirSync(dir);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${dir}/ca-key.pem`, '-out', `${dir}/ca.pem`, '-days', '365', '-subj', '/CN=cfssl bench CA'], { stdio: 'ignore' });
  fs.writeFileSync(`${dir}/config.json`, JSON.stringify({ signing: { default: { expiry: '2160h', usages: ['digital signature', 'server auth'] } } }));
  const db = new DatabaseSync(`${dir}/certs.db`);
  // The 2016 snapshot in Debian does not create its tables; this is its migration of that era.
  db.exec(`PRAGMA journal_mode=WAL;
    CREATE TABLE certificates (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, ca_label blob, status blob NOT NULL, reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL, PRIMARY KEY(serial_number, authority_key_identifier));
    CREATE TABLE ocsp_responses (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, body blob NOT NULL, expiry timestamp, PRIMARY KEY(serial_number, authority_key_identifier));`);
  db.close();
  fs.writeFileSync(`${dir}/db.json`, JSON.stringify({ driver: 'sqlite3', data_source: `${dir}/certs.db` }));
  const port = await freePort();
  const child = await startServer('cfssl', ['serve', '-address', '127.0.0.1', '-port', String(port), '-ca', `${dir}/ca.pem`, '-ca-key', `${dir}/ca-key.pem`, '-config', `${dir}/config.json`, '-db-config', `${dir}/db.json`, '-loglevel', '3'], port);
  await new Promise((r) => setTimeout(r, 500));
  const c0 = cpuSeconds(child.pid!);
  const r = load({ url: `http://127.0.0.1:${port}/api/v1/cfssl/sign`, concurrency: 8, seconds, csrDir, csrCount: CSRS, bodyTemplate: 'cfssl' });
  const cpu = cpuSeconds(child.pid!) - c0;
  await stop(child);
  const stored = (new DatabaseSync(`${dir}/certs.db`).prepare('SELECT count(*) AS n FROM certificates').get() as { n: number }).n;
  fs.rmSync(dir, { recursive: true, force: true });
  return { ...r, serverCpuSeconds: cpu, stored };
}

const ours: Awaited<ReturnType<typeof runMutual>>[] = [];
const theirs: Awaited<ReturnType<typeof runCfssl>>[] = [];
for (let i = 0; i < rounds; i++) {
  ours.push(await runMutual());
  theirs.push(await runCfssl());
}
const row = (name: string, xs: typeof ours) => ({
  server: name,
  'certs/s (median)': Math.round(median(xs.map((x) => x.rps))),
  'p50 ms': median(xs.map((x) => x.p50ms)).toFixed(1),
  'p99 ms': median(xs.map((x) => x.p99ms)).toFixed(1),
  'server CPU ms/cert': ((median(xs.map((x) => x.serverCpuSeconds / x.requests)) * 1000)).toFixed(3),
  'stored = answered': xs.every((x) => x.stored >= x.requests) ? 'yes' : 'NO',
  errors: xs.reduce((n, x) => n + x.errors, 0),
  'all rounds': xs.map((x) => Math.round(x.rps)).join(', '),
});
process.stdout.write(`\nHTTP issuance, durable, P-256 CSRs, 8 keep-alive connections, ${seconds} s x ${rounds} rounds\n\n${formatTable([row('mutual serve (HTTPS + admin mTLS)', ours), row('cfssl serve (plain HTTP)', theirs)])}\nratio mutual/cfssl: ${(median(ours.map((x) => x.rps)) / median(theirs.map((x) => x.rps))).toFixed(2)}x\n`);
fs.rmSync(work, { recursive: true, force: true });
