/**
 * A fleet of simulated agents renewing against one CA server on this machine.
 *
 *   npx node bench/agent-fleet.ts [agents=10000] [concurrency=64] [loader-threads=2]
 *
 * Setup issues `agents` distinct client certificates (P-256) directly through the CA, then starts
 * `mutual serve` in its own process. Each simulated agent renews the way `mutual agent` does: a
 * new TLS connection, mTLS with its current certificate, POST /v1/renew; once with a new key (a
 * CSR, the agent's default) and once re-certifying the same key. `concurrency` renewals are in
 * flight at a time. Reported: renewals/s, p50/p99 latency, the CA process's CPU (from
 * /proc/<pid>/stat), and whether the CA renews the whole fleet within 1 hour with 10x headroom
 * (10x the fleet per hour: >= agents * 10 / 3600 renewals/s). The load generator's own TLS work
 * competes for the same CPUs; "CA renewals per CPU-s" is the CA's capacity per core whatever
 * the client could drive.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { initCa } from '../src/ca/init-ca.ts';
import { generateKeyPair } from '../src/core/algorithms.ts';
import { buildCsr } from '../src/core/csr.ts';
import { toPem } from '../src/core/pem.ts';
import { Worker } from 'node:worker_threads';
import { openAuthority } from '../src/ca/open-authority.ts';

const AGENTS = Number(process.argv[2] ?? 10_000);
const CONCURRENCY = Number(process.argv[3] ?? 64);
/** Load-generating threads (TLS handshakes cost the client too). */
const LOADERS = Number(process.argv[4] ?? 2);
const PASSPHRASE = 'bench-passphrase-0123456789';
const WINDOW_S = 3600;
const HEADROOM = 10;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-bench-fleet-'));
const home = path.join(work, 'home');
const clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** utime + stime of a process, seconds (fields 14 and 15 of /proc/<pid>/stat, after the comm). */
function cpuOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / clkTck;
}

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

// ---- setup: the CA and the fleet's certificates
let t = performance.now();
await initCa({ home, offlineDir: path.join(work, 'offline'), trustDomain: 'fleet.internal', name: 'Fleet Bench', passphrase: PASSPHRASE });
const ca = await openAuthority({ home, passphrase: PASSPHRASE });
const root = ca.rootPem;
const fleet: { cert: string; key: string; csr: string }[] = new Array(AGENTS);
for (let i = 0; i < AGENTS; i += 512) {
  await Promise.all(Array.from({ length: Math.min(512, AGENTS - i) }, async (_, k) => {
    const r = await ca.issue({ role: 'client', names: { dns: [], ip: [], uri: [`spiffe://fleet.internal/prod/agent-${i + k}`] }, actor: 'bench' });
    const next = generateKeyPair('p256').privateKey;
    fleet[i + k] = {
      cert: r.certificatePem, key: r.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string,
      csr: toPem(buildCsr({ privateKey: next, commonName: 'renewal' }), 'CERTIFICATE REQUEST'),
    };
  }));
}
await ca.close();
const setupSeconds = (performance.now() - t) / 1000;

// ---- the CA server in its own process
const server = spawn(process.execPath, [path.join(import.meta.dirname, 'agent-fleet-server.ts'), home], { env: { ...process.env, MUTUAL_CA_PASSPHRASE: PASSPHRASE }, stdio: ['ignore', 'pipe', 'inherit'] });
const [line] = (await once(server.stdout!, 'data')) as [Buffer];
const { url } = JSON.parse(line.toString().split('\n')[0]) as { url: string };

/** Renews `count` agents from `LOADERS` threads; the CA's CPU is read before and after. */
async function pass(mode: 'new-key' | 'same-key', count: number): Promise<{ mode: string; renewals: number; failed: number; seconds: number; latencies: number[]; caCpu: number }> {
  const agents = fleet.slice(0, count);
  const slices = Array.from({ length: LOADERS }, (_, w) => agents.filter((_a, i) => i % LOADERS === w));
  const cpu0 = cpuOf(server.pid!);
  const t0 = performance.now();
  const parts = await Promise.all(slices.map((slice) => new Promise<{ latencies: number[]; failed: number }>((resolve, reject) => {
    const w = new Worker(path.join(import.meta.dirname, 'agent-fleet-worker.ts'), { workerData: { url, root, mode, concurrency: Math.ceil(CONCURRENCY / LOADERS), agents: slice } });
    w.once('message', resolve);
    w.once('error', reject);
  })));
  const seconds = (performance.now() - t0) / 1000;
  const latencies = parts.flatMap((p) => p.latencies).sort((x, y) => x - y);
  return { mode, renewals: count, failed: parts.reduce((n, p) => n + p.failed, 0), seconds, latencies, caCpu: cpuOf(server.pid!) - cpu0 };
}

try {
  await pass('same-key', Math.min(500, AGENTS)); // warm-up
  const results = [await pass('new-key', AGENTS), await pass('same-key', AGENTS)];
  const need = (AGENTS * HEADROOM) / WINDOW_S;
  const rows = results.map((r) => {
    const rate = (r.renewals - r.failed) / r.seconds;
    return {
      mode: r.mode, renewals: r.renewals, failed: r.failed, 'wall s': r.seconds.toFixed(1), 'renewals/s': rate.toFixed(0),
      'p50 ms': pct(r.latencies, 50).toFixed(1), 'p99 ms': pct(r.latencies, 99).toFixed(1),
      'CA CPU s': r.caCpu.toFixed(1), 'CA cores busy': (r.caCpu / r.seconds).toFixed(2), 'CA CPU ms/renewal': ((r.caCpu / r.renewals) * 1000).toFixed(2), 'CA renewals per CPU-s': (r.renewals / r.caCpu).toFixed(0),
      'fleet in': `${(r.renewals / rate / 60).toFixed(1)} min`, headroom: `${(rate / (AGENTS / WINDOW_S)).toFixed(0)}x`, 'meets 10x': rate >= need ? 'yes' : 'NO',
    };
  });
  const cols = Object.keys(rows[0]);
  process.stdout.write(`\nFleet of ${AGENTS} agents, ${CONCURRENCY} renewals in flight from ${LOADERS} threads, one CA process (${os.cpus().length} CPUs, ${os.cpus()[0].model.trim()}); setup ${setupSeconds.toFixed(1)} s\n`);
  process.stdout.write(`Needed for the whole fleet within ${WINDOW_S / 60} min with ${HEADROOM}x headroom: ${need.toFixed(1)} renewals/s\n\n`);
  process.stdout.write(`| ${cols.join(' | ')} |\n|${cols.map(() => '---').join('|')}|\n${rows.map((r) => `| ${cols.map((c) => (r as Record<string, unknown>)[c]).join(' | ')} |`).join('\n')}\n`);
  process.stdout.write(JSON.stringify({ agents: AGENTS, concurrency: CONCURRENCY, results: rows }) + '\n');
} finally {
  server.kill('SIGTERM');
  await once(server, 'exit');
  fs.rmSync(work, { recursive: true, force: true });
}
