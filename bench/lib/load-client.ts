/**
 * A small HTTP(S) load generator that can present a client certificate (wrk cannot), with its
 * own CPU accounting. Runs `concurrency` keep-alive connections for `seconds`, each sending the
 * next body from a list, and prints one JSON line: requests, rps, p50/p99 ms, errors, CPU.
 *
 *   node bench/lib/load-client.ts '<json options>'
 *   options: { url, concurrency, seconds, bodies?: string (file: one JSON body per line),
 *              csrDir?: string, csrCount?: number, bodyTemplate?: "mutual" | "cfssl",
 *              ca?, cert?, key? (PEM file paths), keepAlive?: boolean (default true) }
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';

interface Options {
  url: string;
  concurrency: number;
  seconds: number;
  csrDir?: string;
  csrCount?: number;
  bodyTemplate?: 'mutual' | 'cfssl';
  ca?: string;
  cert?: string;
  key?: string;
  keepAlive?: boolean;
  expectStatus?: number;
}

const o = JSON.parse(process.argv[2]) as Options;
const u = new URL(o.url);
const secure = u.protocol === 'https:';
const bodies: Buffer[] = [];
if (o.csrDir) {
  for (let i = 0; i < (o.csrCount ?? 0); i++) {
    const csr = fs.readFileSync(path.join(o.csrDir, `host-${i}.csr`), 'utf8');
    bodies.push(Buffer.from(JSON.stringify(o.bodyTemplate === 'cfssl' ? { certificate_request: csr } : { csr, profile: 'server' })));
  }
}
const agentOptions = { keepAlive: o.keepAlive !== false, maxSockets: o.concurrency, ca: o.ca && fs.readFileSync(o.ca), cert: o.cert && fs.readFileSync(o.cert), key: o.key && fs.readFileSync(o.key) };
const agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
const lib = secure ? https : http;
const latencies: number[] = [];
let errors = 0;
let next = 0;
const expect = o.expectStatus ?? (bodies.length ? [200, 201] : [200]);
const deadline = performance.now() + o.seconds * 1000;
const c0 = process.cpuUsage();
const t0 = performance.now();

function one(): Promise<void> {
  return new Promise((resolve) => {
    const body = bodies.length ? bodies[next++ % bodies.length] : undefined;
    const started = performance.now();
    const req = lib.request(o.url, {
      method: body ? 'POST' : 'GET', agent,
      headers: body ? { 'content-type': 'application/json', 'content-length': body.length } : {},
    }, (res) => {
      res.on('data', () => undefined);
      res.on('end', () => {
        if ((Array.isArray(expect) ? expect : [expect]).includes(res.statusCode ?? 0)) latencies.push(performance.now() - started);
        else errors++;
        resolve();
      });
    });
    req.on('error', () => {
      errors++;
      resolve();
    });
    req.end(body);
  });
}

async function loop(): Promise<void> {
  while (performance.now() < deadline) await one();
}
await Promise.all(Array.from({ length: o.concurrency }, loop));
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(c0);
latencies.sort((a, b) => a - b);
const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
agent.destroy();
process.stdout.write(JSON.stringify({ requests: latencies.length, errors, seconds, rps: latencies.length / seconds, p50ms: q(0.5), p99ms: q(0.99), clientCpuSeconds: (cpu.user + cpu.system) / 1e6 }) + '\n');
