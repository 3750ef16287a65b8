/**
 * mutual gateway vs nginx as mTLS terminator, side by side in one run (BASELINES.md, "mTLS
 * termination and proxying"): same certificates (P-256), same plain-HTTP nginx upstream (1 worker),
 * TLS 1.3 with X25519, no session resumption anywhere, 1 worker each, the same load generator
 * (bench/gateway-client.ts, its own process, its own CPU accounting).
 *
 *   npx node bench/gateway.ts [--seconds 15] [--rounds 3] [--json out.json] [--profile dir]
 *     [--modes handshake,keepalive] [--compare <checkout>]
 *
 * `--compare <checkout>` adds, to the keep-alive rounds, a gateway run from another checkout's
 * src/ (the same config, load and upstream), to pair a before and an after in one run.
 * `--profile dir` writes a V8 CPU profile of each mutual gateway process into dir (open it in
 * Chrome's DevTools, or summarize it with `node bench/lib/profile-top.ts file.cpuprofile`).
 *
 * Measures, in interleaved rounds (the order flips every round), medians reported:
 * - full mTLS handshakes/s: a new connection per request, 8 concurrent;
 * - keep-alive proxied requests/s: 32 connections reused, p50/p99;
 * - the cost of revocation checking with a 100,000-entry CRL: mutual (hash-set lookup, CRL read
 *   once) against mutual without revocation, and nginx with `ssl_crl` against nginx without.
 * Server CPU per request comes from /proc/PID/stat (utime + stime of all the server's processes).
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { makeTestCa } from '../test/helpers/test-ca.ts';
import { buildCrl, encodeRevokedEntry } from '../src/core/crl.ts';
import { readPemOrDer, toPem } from '../src/core/pem.ts';
import { formatTable, median } from './lib/measure.ts';
import { PeerVerifier } from '../src/sdk/verifier.ts';
import type { LoadOptions, LoadResult } from './gateway-client.ts';
import { freePort, waitForPort } from './lib/procs.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const SECONDS = arg('seconds', 15);
const ROUNDS = arg('rounds', 3);
const jsonOut = process.argv.includes('--json') ? process.argv[process.argv.indexOf('--json') + 1] : undefined;
const modes = process.argv.includes('--modes') ? process.argv[process.argv.indexOf('--modes') + 1].split(',') : ['handshake', 'keepalive'];
const compareTree = process.argv.includes('--compare') ? path.resolve(process.argv[process.argv.indexOf('--compare') + 1]) : undefined;
const profileDir = process.argv.includes('--profile') ? path.resolve(process.argv[process.argv.indexOf('--profile') + 1]) : undefined;
const CRL_ENTRIES = 100_000;
const CLK_TCK = 100;



/** utime + stime (seconds) of a process and its direct children (nginx master + workers). */
function cpuSeconds(pid: number): number {
  const of = (p: number): { ppid: number; cpu: number } | undefined => {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK };
    } catch {
      return undefined;
    }
  };
  let total = of(pid)?.cpu ?? 0;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = of(Number(d));
    if (s && s.ppid === pid) total += s.cpu;
  }
  return total;
}

interface Server {
  name: string;
  port: number;
  pid: number;
  child: ChildProcess;
}

const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

async function startNginx(name: string, dir: string, body: string): Promise<Server> {
  const port = await freePort();
  const conf = path.join(dir, `${name}.conf`);
  const tmp = path.join(dir, `${name}-tmp`);
  fs.mkdirSync(tmp, { recursive: true });
  fs.writeFileSync(conf, `worker_processes 1;
error_log ${dir}/${name}.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${tmp}/body; proxy_temp_path ${tmp}/proxy; fastcgi_temp_path ${tmp}/fastcgi; uwsgi_temp_path ${tmp}/uwsgi; scgi_temp_path ${tmp}/scgi;
${body.replaceAll('PORT', String(port))}
}
`);
  const child = spawn('nginx', ['-p', dir, '-c', conf, '-g', `daemon off; pid ${dir}/${name}.pid;`], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  await waitForPort(port);
  return { name, port, pid: child.pid!, child };
}

async function startMutual(name: string, dir: string, config: Record<string, unknown>, tree = path.join(here, '..')): Promise<Server> {
  const port = await freePort();
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(file, stringify({ ...config, listen: { host: '127.0.0.1', port } }));
  const prof = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}-\${pid}.cpuprofile`] : [];
  const child = spawn(process.execPath, [...prof, path.join(tree, 'bench', 'gateway-server.ts'), file], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
  return { name, port, pid: child.pid!, child };
}

function runClient(o: LoadOptions): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(here, 'gateway-client.ts'), JSON.stringify(o)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as LoadResult) : reject(new Error(`load client exited with ${code}`))));
  });
}

async function main(): Promise<void> {
  const tc = await makeTestCa();
  const dir = tc.dir;
  const issue = async (role: 'server' | 'client', names: { dns: string[]; ip: string[]; uri: string[] }) => {
    const r = await tc.ca.issue({ role, names });
    return { fullchain: r.fullchainPem, key: r.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string, serial: r.serial };
  };
  const server = await issue('server', { dns: ['localhost'], ip: ['127.0.0.1'], uri: [] });
  const client = await issue('client', { dns: [], ip: [], uri: ['spiffe://acme.internal/prod/loadgen'] });
  const files = {
    cert: tc.file('server.fullchain.pem', server.fullchain),
    key: tc.file('server.key.pem', server.key),
    trust: tc.file('trust.pem', tc.ca.rootPem + tc.ca.client.pem),
    clientCa: tc.file('client-ca.pem', tc.ca.client.pem),
  };
  // A 100,000-entry CRL of the client CA (the load generator's certificate is not on it).
  const t = new Date(Math.floor(Date.now() / 1000) * 1000);
  const entries: Buffer[] = [];
  for (let i = 0; i < CRL_ENTRIES; i++) {
    const s = crypto.randomBytes(16);
    s[0] = (s[0] & 0x3f) | 0x40;
    entries.push(encodeRevokedEntry(s, t, i % 2 ? 'keyCompromise' : 'unspecified'));
  }
  const crlDer = await buildCrl({
    issuerName: tc.ca.client.info.subjectName, authorityKeyId: Buffer.from(tc.ca.client.keyId, 'hex'), crlNumber: 1000n,
    thisUpdate: t, nextUpdate: new Date(t.getTime() + 86_400_000), entries: [Buffer.concat(entries)], signer: tc.ca.client.signer,
  });
  const crlFile = tc.file('client-100k.crl', crlDer);
  // nginx checks CRLs for every CA in the chain: the root's CRL (of the intermediates) goes along.
  const rootCrl = readPemOrDer(fs.readFileSync(tc.layout.rootCrl), ['X509 CRL']);
  const nginxCrl = tc.file('crl-100k.pem', toPem(rootCrl, 'X509 CRL') + toPem(crlDer, 'X509 CRL'));

  const upstream = await startNginx('upstream', dir, `  server { listen 127.0.0.1:PORT; keepalive_requests 1000000; location / { return 200 "ok"; } }`);
  const terminator = (crl: boolean) => `  upstream up { server 127.0.0.1:${upstream.port}; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:PORT ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate ${files.cert};
    ssl_certificate_key ${files.key};
    ssl_client_certificate ${files.trust};
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_session_cache off;
    ssl_session_tickets off;
    keepalive_requests 1000000;
    ${crl ? `ssl_crl ${nginxCrl};` : ''}
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-Client-Cert "Hash=$ssl_client_fingerprint;Subject=\\"$ssl_client_s_dn\\"";
    }
  }`;
  const gatewayConfig = (revocation: Record<string, unknown>) => ({
    tls: { cert: files.cert, key: files.key },
    trust: { ca: files.trust, clientCas: files.clientCa },
    revocation,
    sessionResumption: false,
    forward: { xfcc: true, clientCert: false },
    routes: [{ name: 'all', pathPrefix: '/', upstream: `http://127.0.0.1:${upstream.port}`, allow: [{ identities: ['spiffe://acme.internal/prod/*'] }] }],
    accessLog: false,
    logLevel: 'warn',
  });
  const servers = {
    mutual: await startMutual('mutual', dir, gatewayConfig({ mode: 'off' })),
    nginx: await startNginx('nginx', dir, terminator(false)),
    'mutual+crl100k': await startMutual('mutual-crl', dir, gatewayConfig({ mode: 'fail-closed', crlFiles: [crlFile], ocsp: false })),
    'nginx+crl100k': await startNginx('nginx-crl', dir, terminator(true)),
    ...(compareTree ? { compared: await startMutual('compared', dir, gatewayConfig({ mode: 'off' }), compareTree) } : {}),
  } as Record<string, Server>;
  const load = (s: Server, mode: LoadOptions['mode'], seconds: number): LoadOptions => ({
    mode, port: s.port, concurrency: mode === 'handshake' ? 8 : 32, seconds, ca: tc.ca.rootPem, cert: client.fullchain, key: client.key, servername: 'localhost',
  });

  // Warm-up (JIT, pools) and a check that every server answers 200 through the upstream.
  for (const s of Object.values(servers)) {
    const r = await runClient(load(s, 'handshake', 2));
    if (r.errors > 0 || r.requests === 0) throw new Error(`${s.name} does not answer: ${r.firstError}`);
    await runClient(load(s, 'keepalive', 1));
  }

  type Row = LoadResult & { serverCpuSeconds: number; serverCpuMsPerRequest: number };
  const results: Record<string, Record<string, Row[]>> = { handshake: {}, keepalive: {} };
  const plan = ([
    ['handshake', ['mutual', 'nginx', 'mutual+crl100k', 'nginx+crl100k']],
    ['keepalive', ['mutual', 'nginx', ...(compareTree ? ['compared'] : [])]],
  ] as [LoadOptions['mode'], string[]][]).filter(([mode]) => modes.includes(mode));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [mode, names] of plan) {
      for (const name of round % 2 ? [...names].reverse() : names) {
        const s = servers[name];
        const cpu0 = cpuSeconds(s.pid);
        const r = await runClient(load(s, mode, SECONDS));
        const cpu = cpuSeconds(s.pid) - cpu0;
        (results[mode][name] ??= []).push({ ...r, serverCpuSeconds: cpu, serverCpuMsPerRequest: (cpu * 1000) / Math.max(1, r.requests) });
        process.stderr.write(`round ${round + 1} ${mode} ${name}: ${r.perSecond.toFixed(0)}/s p50 ${r.p50Ms.toFixed(2)} ms p99 ${r.p99Ms.toFixed(2)} ms, server ${(cpu * 1000 / Math.max(1, r.requests)).toFixed(3)} ms CPU/req, errors ${r.errors}\n`);
      }
    }
  }

  const med = (rows: Row[], k: keyof Row) => median(rows.map((r) => Number(r[k])));
  const summary: Record<string, Record<string, { perSecond: number; p50Ms: number; p99Ms: number; serverCpuMsPerRequest: number; clientCpuMsPerRequest: number; errors: number }>> = {};
  for (const [mode, byServer] of Object.entries(results)) {
    summary[mode] = {};
    for (const [name, rows] of Object.entries(byServer)) {
      summary[mode][name] = {
        perSecond: med(rows, 'perSecond'), p50Ms: med(rows, 'p50Ms'), p99Ms: med(rows, 'p99Ms'), serverCpuMsPerRequest: med(rows, 'serverCpuMsPerRequest'),
        clientCpuMsPerRequest: median(rows.map((r) => (r.clientCpuSeconds * 1000) / Math.max(1, r.requests))), errors: rows.reduce((a, r) => a + r.errors, 0),
      };
    }
  }
  const hs = summary.handshake ?? {};
  const ka = summary.keepalive ?? {};
  const rows = [
    ...Object.entries(hs).map(([name, s]) => ({ test: 'full mTLS handshakes (new connection per request, 8 concurrent)', server: name, 'req/s': Math.round(s.perSecond), 'p50 ms': s.p50Ms, 'p99 ms': s.p99Ms, 'server CPU ms/req': s.serverCpuMsPerRequest, 'client CPU ms/req': s.clientCpuMsPerRequest, errors: s.errors })),
    ...Object.entries(ka).map(([name, s]) => ({ test: 'keep-alive proxied (32 connections)', server: name, 'req/s': Math.round(s.perSecond), 'p50 ms': s.p50Ms, 'p99 ms': s.p99Ms, 'server CPU ms/req': s.serverCpuMsPerRequest, 'client CPU ms/req': s.clientCpuMsPerRequest, errors: s.errors })),
  ];
  const pct = (a: number, b: number) => `${((a / b) * 100).toFixed(0)}%`;
  const ratios: Record<string, string> = {};
  if (ka.mutual) ratios['proxied req/s, mutual / nginx (goal >= 60%)'] = pct(ka.mutual.perSecond, ka.nginx.perSecond);
  if (hs.mutual) Object.assign(ratios, {
    'handshakes/s, mutual / nginx (goal >= 90%)': pct(hs.mutual.perSecond, hs.nginx.perSecond),
    'server CPU per handshake, nginx / mutual': pct(hs.nginx.serverCpuMsPerRequest, hs.mutual.serverCpuMsPerRequest),
    'handshakes/s with 100k CRL, mutual / nginx without CRL': pct(hs['mutual+crl100k'].perSecond, hs.nginx.perSecond),
    'revocation cost with 100k CRL, mutual (goal < 5%)': `${((1 - hs['mutual+crl100k'].perSecond / hs.mutual.perSecond) * 100).toFixed(1)}% of the handshake rate, ${((hs['mutual+crl100k'].serverCpuMsPerRequest / hs.mutual.serverCpuMsPerRequest - 1) * 100).toFixed(1)}% server CPU per handshake`,
    'revocation cost with 100k CRL, nginx ssl_crl': `${((1 - hs['nginx+crl100k'].perSecond / hs.nginx.perSecond) * 100).toFixed(1)}% of the handshake rate, ${((hs['nginx+crl100k'].serverCpuMsPerRequest / hs.nginx.serverCpuMsPerRequest - 1) * 100).toFixed(1)}% server CPU per handshake`,
  });
  // The revocation check itself, in this process and without the network: what a connection costs
  // the verifier with no revocation data vs with the 100,000-entry CRL loaded (and the load itself).
  const leaf = new crypto.X509Certificate(client.fullchain).raw;
  const off = new PeerVerifier({ clientCas: tc.ca.client.pem, revocation: { mode: 'off' } });
  const on = new PeerVerifier({ clientCas: tc.ca.client.pem, revocation: { ocsp: false } });
  const loadStart = performance.now();
  on.loadCrl(crlDer);
  const crlLoadMs = performance.now() - loadStart;
  const perVerify = (v: PeerVerifier) => {
    const n = 200_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) v.verify({ leaf, authorized: true });
    return ((performance.now() - t0) * 1000) / n;
  };
  const offUs: number[] = [];
  const onUs: number[] = [];
  for (let i = 0; i < 5; i++) {
    offUs.push(perVerify(off));
    onUs.push(perVerify(on));
  }
  const verifyOff = median(offUs);
  const verifyOn = median(onUs);
  if (hs.mutual) ratios['revocation check per connection, in-process (100k CRL vs none)'] =
    `${verifyOn.toFixed(2)} us vs ${verifyOff.toFixed(2)} us, i.e. ${(((verifyOn - verifyOff) / 1000 / hs.mutual.serverCpuMsPerRequest) * 100).toPrecision(2)}% of mutual's server CPU per handshake; loading the CRL (parse + signature) took ${crlLoadMs.toFixed(0)} ms once`;

  process.stdout.write(`\n## mutual gateway vs nginx ${ROUNDS} rounds x ${SECONDS} s, medians (node ${process.version})\n\n${formatTable(rows)}\n\n`);
  for (const [k, v] of Object.entries(ratios)) process.stdout.write(`- ${k}: ${v}\n`);
  if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify({ seconds: SECONDS, rounds: ROUNDS, results, summary, ratios }, null, 2));

  for (const s of Object.values(servers)) s.child.kill('SIGTERM');
  upstream.child.kill('SIGTERM');
  await Promise.all([...Object.values(servers), upstream].map((s) => new Promise<void>((r) => (s.child.exitCode !== null ? r() : s.child.once('exit', () => r())))));
  await tc.close();
}

await main();
