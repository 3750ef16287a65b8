/**
 * Smoke run of the `openssl ca` peer: `npx node bench/peers/openssl-ca.smoke.ts [--full] [--keep]`.
 * Small: 200 CSRs, CRLs of 10,000, one round. `--full`: 2,000 CSRs, CRLs of 100,000 and 1,000,000,
 * three interleaved rounds, medians. `--keep` leaves the temporary directory behind.
 */
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatTable, median, runTimed } from '../lib/measure.ts';
import { measureOpensslCrl, measureOpensslIssuance, prepareOpensslCa, writeCsrs } from './openssl-ca.ts';

const full = process.argv.includes('--full');
const keep = process.argv.includes('--keep');
const rounds = full ? 3 : 1;
const csrCount = full ? 2_000 : 200;
const crlCounts = full ? [100_000, 1_000_000] : [10_000];
const fmt = (n: number) => n.toLocaleString('en-US');
const loadavg = async () => (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');

interface Figures {
  count: number;
  seconds: number;
  peakRssMB: number;
  cpuSeconds: number;
  derBytes?: number;
}
interface Variant {
  work: string;
  unit: string;
  run: () => Promise<Figures>;
  results: Figures[];
}

const dir = await mkdtemp(join(tmpdir(), 'mutual-bench-openssl-'));
try {
  const version = (await runTimed('openssl', ['version'])).stdout.trim();
  console.log(`${version}; Node ${process.version}; ${rounds} round(s); load average ${await loadavg()}; dir ${dir}\n`);
  const ca = await prepareOpensslCa(join(dir, 'ca'));
  const t0 = performance.now();
  const csrs = await writeCsrs(join(dir, 'csr'), csrCount);
  console.log(`wrote ${fmt(csrs.length)} CSRs in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`);

  const variants: Variant[] = [
    { work: `issue ${fmt(csrCount)} leaves, one process, -out file`, unit: 'certs/s', run: () => measureOpensslIssuance(ca, csrs), results: [] },
    { work: `issue ${fmt(csrCount)} leaves, one process, -out /dev/null`, unit: 'certs/s', run: () => measureOpensslIssuance(ca, csrs, { out: '/dev/null' }), results: [] },
  ];
  for (const count of crlCounts) {
    for (const order of ['sorted', 'random'] as const) {
      variants.push({ work: `CRL of ${fmt(count)}, ${order} serials, keyCompromise`, unit: 'entries/s', run: () => measureOpensslCrl(ca, count, order), results: [] });
    }
  }
  // BASELINES.md's CRL rows (35 bytes an entry) were made without reasons: the same for comparison.
  const largest = crlCounts.at(-1)!;
  for (const order of ['sorted', 'random'] as const) {
    variants.push({ work: `CRL of ${fmt(largest)}, ${order} serials, no reason`, unit: 'entries/s', run: () => measureOpensslCrl(ca, largest, order, { reason: null }), results: [] });
  }

  // Rounds outermost, so slow drifts of this shared machine spread over every variant alike.
  for (let r = 0; r < rounds; r++) for (const v of variants) v.results.push(await v.run());

  console.log(formatTable(variants.map((v) => {
    const m = (f: (x: Figures) => number) => median(v.results.map(f));
    const seconds = m((x) => x.seconds);
    return {
      work: v.work,
      seconds,
      rate: `${fmt(Math.round(v.results[0].count / seconds))} ${v.unit}`,
      'peak RSS MiB': m((x) => x.peakRssMB),
      'CPU s': m((x) => x.cpuSeconds),
      'CPU/wall': m((x) => x.cpuSeconds / x.seconds),
      'DER MB': v.results[0].derBytes === undefined ? undefined : v.results[0].derBytes / 1e6,
      rounds: v.results.map((x) => x.seconds.toFixed(3)).join(' / '),
    };
  })));
  console.log(`\nload average after: ${await loadavg()}`);
} finally {
  if (keep) console.log(`\nkept ${dir}`);
  else await rm(dir, { recursive: true, force: true });
}
