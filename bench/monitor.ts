/**
 * The monitor's two hot paths.
 *
 * 1. An inventory expiry scan over 1,000,000 certificates, in a fresh process (bench/monitor-scan.ts):
 *    target under 2 s and under 512 MB. The store is filled in setup with one bulk INSERT from a
 *    recursive CTE in one transaction. Rows are as wide as real ones (a 450-byte DER stand-in, names
 *    JSON). Two shapes:
 *    - `renewals`: 200,000 identities x 5 generations 60 days apart (90-day certificates renewed at
 *      2/3, as mutual does), 1% of identities with a failing renewal, 0.5% of rows revoked, 20%
 *      servers: the newest certificate of each identity must win over its history;
 *    - `distinct`: 1,000,000 identities, one live certificate each: the worst case for the grouping.
 * 2. Probing 1,000 TLS endpoints (N TLS servers on loopback ports in a child, bench/monitor-peers.ts)
 *    with bounded concurrency, full handshake + chain analysis per endpoint.
 *
 *   node bench/monitor.ts [rows=1000000] [endpoints=1000] [rounds=3]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { DatabaseSync } from 'node:sqlite';
import { openSqliteStore } from '../src/store/sqlite-store.ts';
import { scanEndpoints, type EndpointTarget } from '../src/monitor/scan-endpoints.ts';
import { readPemOrDer } from '../src/core/pem.ts';

const rows = Number(process.argv[2] ?? 1_000_000);
const endpointCount = Number(process.argv[3] ?? 1000);
const rounds = Number(process.argv[4] ?? 3);
const DAY = 86_400;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-bench-monitor-'));
const here = path.dirname(new URL(import.meta.url).pathname);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const f1 = (n: number) => n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2);

/** Fills a fresh store with `n` certificates in `gens` generations per identity. */
function fill(file: string, n: number, gens: number, nowSec: number): number {
  openSqliteStore({ path: file }).db.close(); // schema through the real migrations
  const db = new DatabaseSync(file);
  const t0 = performance.now();
  // Setup only: no journal, no fsync, a big cache for the random serial index.
  db.exec('PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-1048576; BEGIN');
  db.prepare(`
    WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ${n - 1}),
    r AS (SELECT i, i / ${gens} AS k, i % ${gens} AS g FROM seq),
    v AS (SELECT i, k, g, CASE WHEN k % 5 = 0 THEN 'server' ELSE 'client' END AS role,
      (CASE WHEN k % 100 = 7 THEN ${nowSec} - 20 * ${DAY} + (k * 7919) % (50 * ${DAY})
            ELSE ${nowSec} + 30 * ${DAY} + (k * 7919) % (60 * ${DAY}) END) - g * 60 * ${DAY} AS na FROM r)
    INSERT INTO certificates (serial, issuer_kid, role, subject, identity, names, not_before, not_after, der, status, revoked_at, reason, issued_at, issued_by)
    SELECT randomblob(16), CASE WHEN role = 'server' THEN '5e1f0c2a9b7d4e3f8a6b5c4d3e2f1a0b9c8d7e6f' ELSE 'c11e47ca9b7d4e3f8a6b5c4d3e2f1a0b9c8d7e6f' END, role,
      CASE WHEN role = 'server' THEN 'CN=svc' || k || '.prod.acme.internal' ELSE 'CN=svc' || k END,
      CASE WHEN role = 'server' THEN NULL ELSE 'spiffe://acme.internal/prod/svc' || k END,
      CASE WHEN role = 'server' THEN '{"dns":["svc' || k || '.prod.acme.internal"],"ip":[],"uri":[]}' ELSE '{"dns":[],"ip":[],"uri":["spiffe://acme.internal/prod/svc' || k || '"]}' END,
      na - 90 * ${DAY}, na, randomblob(450),
      CASE WHEN i % 200 = 3 THEN 'revoked' ELSE 'valid' END, CASE WHEN i % 200 = 3 THEN na - 30 * ${DAY} END, CASE WHEN i % 200 = 3 THEN 1 END,
      na - 90 * ${DAY}, 'bench'
    FROM v`).run();
  db.exec('COMMIT');
  db.close();
  return (performance.now() - t0) / 1000;
}

interface ScanRun { total: number; findings: number; warning: number; critical: number; scanMs: number; processMs: number; maxRssMB: number; wallMs: number }

function scanOnce(file: string, nowMs: number): ScanRun {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [path.join(here, 'monitor-scan.ts'), file, String(nowMs)], { encoding: 'utf8' });
  const wallMs = performance.now() - t0;
  if (r.status !== 0) throw new Error(`scan failed: ${r.stderr}`);
  return { ...JSON.parse(r.stdout.trim().split('\n').pop()!), wallMs };
}

const nowMs = Date.now();
const nowSec = Math.floor(nowMs / 1000);
const out: string[] = [];
const say = (s: string) => {
  out.push(s);
  process.stdout.write(s + '\n');
};

say(`# mutual monitor benchmark (${os.cpus()[0].model}, ${os.cpus().length} cores, Node ${process.version})`);
// ---- endpoints first: the fill's big page cache would otherwise set this process's peak RSS
say('');
say(`## Probing ${endpointCount.toLocaleString('en')} TLS endpoints on loopback (one Node process serving them on ${endpointCount} ports)`);
say('');
const peers = spawn(process.execPath, [path.join(here, 'monitor-peers.ts'), String(endpointCount)], { stdio: ['pipe', 'pipe', 'inherit'] });
const first = await new Promise<string>((resolve, reject) => {
  let buf = '';
  peers.stdout!.on('data', (d: Buffer) => {
    buf += d;
    if (buf.includes('\n')) resolve(buf.split('\n')[0]);
  });
  peers.on('exit', (c) => reject(new Error(`peers exited ${c}`)));
});
const { ports, root } = JSON.parse(first) as { ports: number[]; root: string };
const anchors = [readPemOrDer(root, ['CERTIFICATE'])];
const targets: EndpointTarget[] = ports.map((port) => ({ address: `127.0.0.1:${port}`, host: '127.0.0.1', port, servername: 'localhost', anchors, timeoutMs: 10_000 }));
say('| concurrency | wall | endpoints/s | probe p50 | probe p99 | up | findings | prober peak RSS (cumulative) |');
say('|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const concurrency of [8, 32, 128]) {
  const t0 = performance.now();
  const r = await scanEndpoints({ targets, concurrency, now: new Date(), thresholdsDays: [30, 14, 7, 1], caThresholdsDays: [90, 60, 30, 14, 7], criticalDays: 7 });
  const s = (performance.now() - t0) / 1000;
  const d = r.endpoints.map((e) => e.durationMs);
  say(`| ${concurrency} | ${f1(s)} s | ${Math.round(targets.length / s)} | ${f1(pct(d, 50))} ms | ${f1(pct(d, 99))} ms | ${r.endpoints.filter((e) => e.up).length} | ${r.findings.length} | ${f1(process.resourceUsage().maxRSS / 1024)} MB |`);
}
peers.stdin!.end();
await new Promise((r) => peers.once('exit', r));
say('');
say(`## Inventory expiry scan: ${rows.toLocaleString('en')} certificates, fresh process each round, ${rounds} rounds`);
say('');
say('| shape | fill (setup) | DB size | findings | scan (in process) | process wall (median / max) | peak RSS (max) | target |');
say('|---|---:|---:|---:|---:|---:|---:|---|');
for (const [shape, gens] of [['renewals (5 generations)', 5], ['distinct (1 per identity)', 1]] as const) {
  const file = path.join(work, `inventory-${gens}.db`);
  const fillS = fill(file, rows, gens, nowSec);
  const size = fs.statSync(file).size / 1048576;
  scanOnce(file, nowMs); // warm the page cache, as a scheduled monitor finds it
  const runs = Array.from({ length: rounds }, () => scanOnce(file, nowMs));
  const wall = runs.map((r) => r.wallMs);
  const rss = Math.max(...runs.map((r) => r.maxRssMB));
  const ok = Math.max(...wall) < 2000 && rss < 512;
  say(`| ${shape} | ${f1(fillS)} s | ${f1(size)} MB | ${runs[0].findings.toLocaleString('en')} (${runs[0].critical} critical) | ${f1(median(runs.map((r) => r.scanMs)))} ms | ${f1(median(wall) / 1000)} / ${f1(Math.max(...wall) / 1000)} s | ${f1(rss)} MB | ${ok ? 'PASS (< 2 s, < 512 MB)' : 'FAIL'} |`);
  fs.rmSync(file, { force: true });
}

fs.rmSync(work, { recursive: true, force: true });
say('');
say('Command: `npx node bench/monitor.ts ' + [rows, endpointCount, rounds].join(' ') + '`');
