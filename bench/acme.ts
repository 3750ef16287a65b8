/**
 * Complete ACME orders per second (RFC 8555): one reused account, then per order newOrder, http-01
 * answered by a local responder and validated by the server, finalize, download. The same load
 * client (bench/lib/acme-load.ts, written with jose) runs against pebble and, once the ACME server
 * is merged, against `mutual serve`, in the same run, rounds interleaved; it prints orders/s and
 * p50/p99 latency per round and the medians.
 *
 * Read the figures with this in mind: pebble keeps nothing on disk (accounts, orders and
 * certificates live in its memory and die with it), while mutual writes every order, authorization
 * and certificate to its store (SQLite, WAL fsync) before it answers. Both servers, the load client
 * and its responder share this machine's 2 cores.
 *
 *   npm run bench:acme -- [seconds=10] [concurrency=8] [rounds=3]
 */
import fs from 'node:fs';
import { startPebble } from '../test/acme/pebble.ts';
import { ACME_SERVER_PRESENT, startMutualWith } from '../test/acme/mutual.ts';
import { startChallTestSrv } from '../test/acme/test-dns.ts';
import type { AcmeTarget, StartTarget } from '../test/acme/target.ts';
import { formatTable, median } from './lib/measure.ts';
import { freePort } from './lib/procs.ts';
import { runAcmeLoad, type AcmeLoadResult } from './lib/acme-load.ts';

const seconds = Number(process.argv[2] ?? 10);
const concurrency = Number(process.argv[3] ?? 8);
const rounds = Number(process.argv[4] ?? 3);

const dns = await startChallTestSrv();
const servers: { name: string; start: StartTarget }[] = [{ name: 'pebble 2.4 (in memory)', start: startPebble }];
// mutual limits new orders per account (300 an hour by default); one account makes them all here.
if (ACME_SERVER_PRESENT) servers.push({ name: 'mutual serve (SQLite)', start: (o) => startMutualWith(o, { ordersPerHour: 1_000_000 }) });
else console.log('mutual: the ACME server (src/server/acme/) is not merged yet; measuring pebble only');

/** One round against one server: a fresh server, the load, the server stopped. */
async function round(start: StartTarget): Promise<AcmeLoadResult> {
  const httpPort = await freePort();
  const target: AcmeTarget = await start({ httpPort, tlsPort: await freePort(), dns, eab: false });
  try {
    return await runAcmeLoad({ directoryUrl: target.directoryUrl, ca: fs.readFileSync(target.tlsCaFile, 'utf8'), httpPort, domain: 'acme.internal', concurrency, seconds });
  } finally {
    await target.close();
  }
}

const results = new Map<string, AcmeLoadResult[]>(servers.map((s) => [s.name, []]));
try {
  for (let r = 0; r < rounds; r++) {
    for (const s of servers) {
      const res = await round(s.start);
      results.get(s.name)!.push(res);
      const err = res.errors ? `, ${res.errors} errors (first: ${res.firstError})` : '';
      console.log(`round ${r + 1} ${s.name}: ${res.orders} orders in ${res.seconds.toFixed(1)} s = ${res.ordersPerSecond.toFixed(1)}/s, p50 ${res.p50ms.toFixed(0)} ms, p99 ${res.p99ms.toFixed(0)} ms${err}`);
    }
  }
} finally {
  await dns.close();
}

console.log(`\n${seconds} s per round, ${concurrency} orders in flight, ${rounds} rounds; medians:\n`);
console.log(formatTable([...results].map(([name, rs]) => ({
  server: name,
  'orders/s': Number(median(rs.map((x) => x.ordersPerSecond)).toFixed(1)),
  'p50 ms': Math.round(median(rs.map((x) => x.p50ms))),
  'p99 ms': Math.round(median(rs.map((x) => x.p99ms))),
  errors: rs.reduce((n, x) => n + x.errors, 0),
  'all rounds (orders/s)': rs.map((x) => x.ordersPerSecond.toFixed(1)).join(', '),
}))));
console.log('\npebble keeps nothing on disk: its figures are an in-memory upper bound, not a like-for-like durable server.');
