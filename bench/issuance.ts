/**
 * Issuance: mutual's engine vs `openssl ca` on the same CSRs, in one run.
 *
 *   npm run bench:issuance -- [count=20000] [rounds=3] [in-flight=64,128]
 *
 * mutual runs pinned to one core (`taskset -c 0`): CSR parse + proof of possession, policy, lint,
 * build, sign, durable persist (SQLite WAL fdatasynced before any certificate is returned, audit
 * entry, group commit), with each of the given numbers of requests in flight.
 * openssl ca runs as it is fastest: one process for all CSRs (`-infiles`), index.txt written once
 * at the end without fsync. Medians of `rounds`, interleaved; `sync` before each side's round.
 * First it prints how fast this VM's core 0 signs and verifies P-256 (`openssl speed`), so
 * figures from different machines can be set against BASELINES.md's 51,500 signatures/s.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { prepareOpensslCa, measureOpensslIssuance, writeCsrs } from './peers/openssl-ca.ts';
import { formatTable, median } from './lib/measure.ts';
import { ecdsaSpeed } from './lib/openssl-speed.ts';

const count = Number(process.argv[2] ?? 20000);
const rounds = Number(process.argv[3] ?? 3);
const inFlight = (process.argv[4] ?? '64,128').split(',').map(Number);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-bench-issuance-'));
const csrDir = path.join(work, 'csrs');
fs.mkdirSync(csrDir);
const csrs = await writeCsrs(csrDir, count);
const peer = await prepareOpensslCa(path.join(work, 'openssl-ca'));

const speedBefore = ecdsaSpeed();

type Run = { certsPerSec: number; cpuSeconds: number; peakRssMB: number };
const ours = new Map<number, Run[]>(inFlight.map((n) => [n, []]));
const theirs: Run[] = [];
for (let r = 0; r < rounds; r++) {
  for (const n of inFlight) {
    // Each run starts with nothing dirty in the page cache: openssl ca leaves 20,000 unsynced
    // certificate files behind, and on ext4 the next fsync waits for their writeback. No run is
    // timed while flushing another's writes.
    execFileSync('sync');
    const out = execFileSync('taskset', ['-c', '0', process.execPath, 'bench/engine/issue-engine.ts', csrDir, String(count), String(n)], { encoding: 'utf8' });
    ours.get(n)!.push(JSON.parse(out.trim().split('\n').pop()!));
  }
  execFileSync('sync');
  theirs.push(await measureOpensslIssuance(peer, csrs));
}
const row = (name: string, xs: Run[]) => ({
  issuer: name,
  'certs/s (median)': Math.round(median(xs.map((x) => x.certsPerSec))),
  'CPU µs/cert': Math.round((median(xs.map((x) => x.cpuSeconds)) / count) * 1e6),
  'peak RSS MB': Math.round(median(xs.map((x) => x.peakRssMB))),
  'all rounds': xs.map((x) => Math.round(x.certsPerSec)).join(', '),
});
const table = formatTable([...[...ours].map(([n, xs]) => row(`mutual (1 core, durable, ${n} in flight)`, xs)), row('openssl ca -infiles (no fsync)', theirs)]);
const ratios = [...ours].map(([n, xs]) => `${n} in flight ${(median(xs.map((x) => x.certsPerSec)) / median(theirs.map((x) => x.certsPerSec))).toFixed(1)}x`);
const speedAfter = ecdsaSpeed();
const speed = `this machine, core 0, openssl speed ecdsap256: ${speedBefore[0]} sign/s, ${speedBefore[1]} verify/s before; ${speedAfter[0]} / ${speedAfter[1]} after`;
process.stdout.write(`\nIssuance of ${count} P-256 server certificates from CSRs, ${rounds} rounds\n${speed}\n\n${table}\nratio mutual/openssl: ${ratios.join(', ')}\n`);
fs.rmSync(work, { recursive: true, force: true });
