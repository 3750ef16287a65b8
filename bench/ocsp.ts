/**
 * OCSP: `mutual serve`'s responder (plain-HTTP public listener, cached pre-signed answers) vs
 * `openssl ocsp -index` (signs every answer, one new connection per request), same machine,
 * same wrk (1 thread). Two comparisons, as BASELINES.md asks: in openssl's conditions (a new
 * connection per request, `Connection: close`) and in mutual's normal one (keep-alive, 32
 * connections, and 16 for the latency at the target rate). openssl runs in a private network namespace (its -port listens on every
 * interface), with a fresh responder per run, stopped by PID (it spins once a client closes
 * without a request); wrk's resolve probe is replaced for the same reason.
 *
 *   npm run bench:ocsp -- [seconds=10] [rounds=3]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { initCa } from '../src/ca/init-ca.ts';
import { formatTable, median } from './lib/measure.ts';
import { freePort, startServer, stop, cpuSeconds } from './lib/procs.ts';
import { prepareOpensslCa } from './peers/openssl-ca.ts';
import { openAuthority } from '../src/ca/open-authority.ts';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-bench-ocsp-'));
const lua = path.join(work, 'no-probe.lua');
// wrk's default resolve() connects to test each address and closes without a request.
fs.writeFileSync(lua, 'wrk.resolve = function(host, service) wrk.addrs = wrk.lookup(host, service) end\n');

interface WrkResult { rps: number; p50ms: number; p99ms: number; errors: number }
function parseWrk(out: string): WrkResult {
  const num = (re: RegExp) => Number(out.match(re)?.[1] ?? NaN);
  const ms = (v: string | undefined) => (v === undefined ? NaN : v.endsWith('us') ? Number.parseFloat(v) / 1000 : v.endsWith('ms') ? Number.parseFloat(v) : Number.parseFloat(v) * 1000);
  const non2xx = num(/Non-2xx or 3xx responses: (\d+)/);
  const sock = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50ms: ms(out.match(/50%\s+([\d.]+\w+)/)?.[1]),
    p99ms: ms(out.match(/99%\s+([\d.]+\w+)/)?.[1]),
    errors: (Number.isNaN(non2xx) ? 0 : non2xx) + (sock ? Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]) : 0),
  };
}
const wrkArgs = (url: string, conns: number, close: boolean) => ['-t1', `-c${conns}`, `-d${seconds}s`, '--latency', '-s', lua, ...(close ? ['-H', 'Connection: close'] : []), url];

// ---- mutual
const passphrase = 'bench-passphrase-not-secret';
const home = path.join(work, 'mutual');
await initCa({ home, trustDomain: 'bench.internal', name: 'Bench', passphrase });
{
  const ca = await openAuthority({ home, passphrase });
  const leaf = await ca.issue({ role: 'client', names: { dns: [], ip: [], uri: ['spiffe://bench.internal/prod/payments'] } });
  fs.writeFileSync(path.join(work, 'leaf.pem'), leaf.certificatePem);
  await ca.close();
}
execFileSync('openssl', ['ocsp', '-issuer', `${home}/ca/client-ca.pem`, '-cert', path.join(work, 'leaf.pem'), '-no_nonce', '-reqout', path.join(work, 'req.der')]);
const reqB64 = encodeURIComponent(fs.readFileSync(path.join(work, 'req.der')).toString('base64'));

async function runMutual(close: boolean, conns = close ? 8 : 32): Promise<WrkResult & { serverCpuMsPer1k: number }> {
  const port = await freePort();
  const pub = await freePort();
  const child = await startServer('taskset', ['-c', '0', process.execPath, 'bin/mutual.mjs', '--home', home, 'serve', '--listen', `127.0.0.1:${port}`, '--public-listen', `127.0.0.1:${pub}`, '--log-level', 'warn'], pub, { env: { ...process.env, MUTUAL_CA_PASSPHRASE: passphrase } });
  const url = `http://127.0.0.1:${pub}/ocsp/${reqB64}`;
  const first = spawnSync('curl', ['-s', '-o', path.join(work, 'resp.der'), '-w', '%{http_code}', url], { encoding: 'utf8' });
  if (first.stdout !== '200') throw new Error(`mutual OCSP answered ${first.stdout}`);
  const check = spawnSync('openssl', ['ocsp', '-respin', path.join(work, 'resp.der'), '-issuer', `${home}/ca/client-ca.pem`, '-cert', path.join(work, 'leaf.pem'), '-CAfile', `${home}/ca/root.pem`], { encoding: 'utf8' });
  if (!/leaf\.pem: good/.test(check.stdout) || !/Response verify OK/.test(check.stderr + check.stdout)) throw new Error(`mutual's answer did not verify: ${check.stdout}${check.stderr}`);
  const c0 = cpuSeconds(child.pid!);
  const out = execFileSync('taskset', ['-c', '1', 'wrk', ...wrkArgs(url, conns, close)], { encoding: 'utf8' });
  const cpu = cpuSeconds(child.pid!) - c0;
  await stop(child);
  const r = parseWrk(out);
  return { ...r, serverCpuMsPer1k: (cpu * 1e6) / (r.rps * seconds) };
}

// ---- openssl ocsp
const peer = await prepareOpensslCa(path.join(work, 'openssl-ca'));
execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(work, 'p.key'), '-subj', '/CN=host-0.bench.internal', '-addext', 'subjectAltName=DNS:host-0.bench.internal', '-out', path.join(work, 'p.csr')], { stdio: 'ignore' });
execFileSync('openssl', ['ca', '-batch', '-notext', '-config', peer.config, '-in', path.join(work, 'p.csr'), '-out', path.join(work, 'p.pem')], { stdio: 'ignore' });
execFileSync('openssl', ['ocsp', '-issuer', peer.certificate, '-cert', path.join(work, 'p.pem'), '-no_nonce', '-reqout', path.join(work, 'preq.der')]);
const preqB64 = encodeURIComponent(fs.readFileSync(path.join(work, 'preq.der')).toString('base64'));

function runOpenssl(): WrkResult & { serverCpuMsPer1k: number } {
  const port = 18000 + Math.floor(Math.random() * 1000);
  const script = `set -e
ip link set lo up
taskset -c 0 openssl ocsp -index ${peer.database} -port ${port} -rsigner ${peer.certificate} -rkey ${peer.privateKey} -CA ${peer.certificate} -ignore_err >/dev/null 2>&1 &
PID=$!
for i in $(seq 1 50); do curl -s -o ${work}/presp.der "http://127.0.0.1:${port}/${preqB64}" && break; sleep 0.1; done
openssl ocsp -respin ${work}/presp.der -issuer ${peer.certificate} -cert ${work}/p.pem -CAfile ${peer.certificate} 2>&1 | grep -q 'p.pem: good'
T0=$(awk '{print $14+$15}' /proc/$PID/stat)
taskset -c 1 wrk ${wrkArgs(`http://127.0.0.1:${port}/${preqB64}`, 8, true).map((a) => `'${a}'`).join(' ')}
T1=$(awk '{print $14+$15}' /proc/$PID/stat)
echo "CPUTICKS $((T1-T0))"
kill -9 $PID`;
  const out = execFileSync('unshare', ['-n', 'sh', '-c', script], { encoding: 'utf8' });
  const r = parseWrk(out);
  const ticks = Number(out.match(/CPUTICKS (\d+)/)?.[1]);
  return { ...r, serverCpuMsPer1k: (ticks * 10 * 1000) / (r.rps * seconds) };
}

const res = { keep: [] as ReturnType<typeof runOpenssl>[], keep16: [] as ReturnType<typeof runOpenssl>[], close: [] as ReturnType<typeof runOpenssl>[], peer: [] as ReturnType<typeof runOpenssl>[] };
for (let i = 0; i < rounds; i++) {
  res.keep.push(await runMutual(false));
  // Latency at the target rate: the fewest connections that still carry >= 20,000/s queue less.
  res.keep16.push(await runMutual(false, 16));
  res.peer.push(runOpenssl());
  res.close.push(await runMutual(true));
}
const row = (name: string, xs: ReturnType<typeof runOpenssl>[]) => ({
  responder: name,
  'answers/s (median)': Math.round(median(xs.map((x) => x.rps))),
  'p50 ms': median(xs.map((x) => x.p50ms)).toFixed(2),
  'p99 ms': median(xs.map((x) => x.p99ms)).toFixed(2),
  'server CPU ms per 1k': median(xs.map((x) => x.serverCpuMsPer1k)).toFixed(0),
  errors: xs.reduce((n, x) => n + x.errors, 0),
  'all rounds': xs.map((x) => Math.round(x.rps)).join(', '),
});
const m = (xs: ReturnType<typeof runOpenssl>[]) => median(xs.map((x) => x.rps));
process.stdout.write(`\nOCSP GET, good answer, wrk -t1, ${seconds} s x ${rounds} rounds\n\n${formatTable([
  row('mutual, keep-alive (32 conns), cached', res.keep),
  row('mutual, keep-alive (16 conns), cached', res.keep16),
  row('mutual, new connection per request (8 conns)', res.close),
  row('openssl ocsp, new connection per request (8 conns)', res.peer),
])}\nratio in mutual's conditions (keep-alive vs openssl): ${(m(res.keep) / m(res.peer)).toFixed(1)}x\nratio in openssl's conditions (both a new connection per request): ${(m(res.close) / m(res.peer)).toFixed(1)}x\n`);
fs.rmSync(work, { recursive: true, force: true });
