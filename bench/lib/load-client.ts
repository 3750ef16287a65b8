/**
 * A small HTTP/1.1 load generator that can present a client certificate (wrk cannot), with its
 * own CPU accounting. Runs `concurrency` keep-alive connections for `seconds`, each sending the
 * next body from a list, and prints one JSON line: requests, rps, p50/p99 ms, errors, CPU.
 *
 * It writes requests and reads responses on raw (TLS) sockets, like wrk, rather than through
 * node:http: the load generator shares the two cores with the server under test, and node:http's
 * client cost ~0.25-0.37 ms of CPU per request here, more than some servers it measures. Every
 * server is measured with the same client.
 *
 *   node bench/lib/load-client.ts '<json options>'
 *   options: { url, concurrency, seconds, csrDir?: string, csrCount?: number,
 *              bodyTemplate?: "mutual" | "cfssl", ca?, cert?, key? (PEM file paths),
 *              expectStatus?: number }
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';

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
  expectStatus?: number;
}

const o = JSON.parse(process.argv[2]) as Options;
const u = new URL(o.url);
const secure = u.protocol === 'https:';
const port = Number(u.port || (secure ? 443 : 80));
const requests: Buffer[] = [];
const head = (length?: number) =>
  `${length === undefined ? 'GET' : 'POST'} ${u.pathname}${u.search} HTTP/1.1\r\nhost: ${u.host}\r\n` +
  (length === undefined ? '' : `content-type: application/json\r\ncontent-length: ${length}\r\n`) + '\r\n';
if (o.csrDir) {
  for (let i = 0; i < (o.csrCount ?? 0); i++) {
    const csr = fs.readFileSync(path.join(o.csrDir, `host-${i}.csr`), 'utf8');
    const body = Buffer.from(JSON.stringify(o.bodyTemplate === 'cfssl' ? { certificate_request: csr } : { csr, profile: 'server' }));
    requests.push(Buffer.concat([Buffer.from(head(body.length)), body]));
  }
} else requests.push(Buffer.from(head()));
const tlsOptions = { ca: o.ca && fs.readFileSync(o.ca), cert: o.cert && fs.readFileSync(o.cert), key: o.key && fs.readFileSync(o.key), servername: net.isIP(u.hostname) ? undefined : u.hostname };
const expected = o.expectStatus !== undefined ? [o.expectStatus] : o.csrDir ? [200, 201] : [200];

const latencies: number[] = [];
let errors = 0;
let next = 0;
const deadline = performance.now() + o.seconds * 1000;

/**
 * Reads one response from the bytes received so far: undefined until it is complete, else its
 * status and length in bytes. Content-Length and chunked bodies (Go's net/http chunks large ones).
 */
function parseResponse(buf: Buffer): { status: number; length: number; close: boolean } | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const headText = buf.toString('latin1', 0, end).toLowerCase();
  const status = Number(headText.slice(9, 12));
  const close = /\r\nconnection: *close/.test(headText);
  const cl = /\r\ncontent-length: *(\d+)/.exec(headText);
  if (cl) {
    const length = end + 4 + Number(cl[1]);
    return buf.length >= length ? { status, length, close } : undefined;
  }
  if (!/\r\ntransfer-encoding: *chunked/.test(headText)) return { status, length: end + 4, close };
  let at = end + 4;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', at);
    if (lineEnd < 0) return undefined;
    const size = parseInt(buf.toString('latin1', at, lineEnd), 16);
    if (size === 0) {
      const trailerEnd = buf.indexOf('\r\n\r\n', lineEnd);
      if (trailerEnd >= 0) return { status, length: trailerEnd + 4, close };
      return buf.length >= lineEnd + 4 && buf[lineEnd + 2] === 13 ? { status, length: lineEnd + 4, close } : undefined;
    }
    at = lineEnd + 2 + size + 2;
    if (buf.length < at) return undefined;
  }
}

function connect(): net.Socket {
  return secure ? tls.connect({ host: u.hostname, port, ...tlsOptions }) : net.connect({ host: u.hostname, port });
}

/** One connection: send, wait for the whole answer, repeat until the deadline; reconnect on close. */
function connection(): Promise<void> {
  return new Promise((resolve) => {
    let socket = connect();
    let pending: Buffer = Buffer.alloc(0);
    let started = 0;
    let awaiting = false;
    const send = () => {
      if (performance.now() >= deadline) {
        socket.destroy();
        resolve();
        return;
      }
      started = performance.now();
      awaiting = true;
      socket.write(requests[next++ % requests.length]);
    };
    const attach = () => {
      socket.on(secure ? 'secureConnect' : 'connect', send);
      socket.on('data', (chunk: Buffer) => {
        pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
        const r = parseResponse(pending);
        if (!r) return;
        awaiting = false;
        if (expected.includes(r.status)) latencies.push(performance.now() - started);
        else errors++;
        pending = pending.subarray(r.length);
        if (r.close) socket.destroy();
        else send();
      });
      socket.on('error', () => undefined);
      socket.on('close', () => {
        if (performance.now() >= deadline) return resolve();
        // Closed between requests (a keep-alive limit) is not an error; with a request unanswered it is.
        if (awaiting) errors++;
        awaiting = false;
        pending = Buffer.alloc(0);
        socket = connect();
        attach();
      });
    };
    attach();
  });
}

const c0 = process.cpuUsage();
const t0 = performance.now();
await Promise.all(Array.from({ length: o.concurrency }, connection));
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(c0);
latencies.sort((a, b) => a - b);
const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
process.stdout.write(JSON.stringify({ requests: latencies.length, errors, seconds, rps: latencies.length / seconds, p50ms: q(0.5), p99ms: q(0.99), clientCpuSeconds: (cpu.user + cpu.system) / 1e6 }) + '\n');
