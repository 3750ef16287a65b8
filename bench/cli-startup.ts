/**
 * CLI start-up (issue 14, item 10): how long `mutual` takes to answer, beside bare `node -e 0`
 * and `openssl x509 -noout -in cert.pem`, in the same run, interleaved.
 *
 *   npm run bench:cli-startup -- [runs=20] [--compare <checkout>]
 *
 * Two ways of running mutual: the checkout's (bin/mutual.mjs running src/*.ts, Node stripping
 * the types) and the installed package's (npm pack, npm install into a scratch project: the
 * compiled dist/ JavaScript), plus `npx mutual --version` there. Commands: `--version`, `--help`,
 * `inspect cert.pem` and `--json list` against a CA made for the run (list decrypts the CA keys:
 * the passphrase KDF is part of its figure). `--compare <checkout>` adds the checkout rows of
 * another tree (e.g. `git worktree add /tmp/before <commit>`; without `--version` if it had
 * none). Every command runs once unmeasured first, so V8's compile cache (which bin/mutual.mjs
 * turns on) is warm, as it is for every run after a machine's first. Each spawn runs under GNU
 * time: wall time (median, p90, min), CPU time (user + system: less disturbed than wall time when
 * other work shares the cores) and peak RSS.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { formatTable, median, runTimed } from './lib/measure.ts';

const args = process.argv.slice(2);
const compareAt = args.indexOf('--compare');
const compare = compareAt >= 0 ? path.resolve(args.splice(compareAt, 2)[1]) : undefined;
const runs = Number(args[0] ?? 20);
const REPO = path.resolve(import.meta.dirname, '..');
const NODE = process.execPath;
const env: NodeJS.ProcessEnv = {
  ...process.env,
  // The pinned Node first: npm, npx and the installed bin run under it.
  PATH: `${path.dirname(NODE)}${path.delimiter}${process.env.PATH ?? ''}`,
  MUTUAL_CA_PASSPHRASE: 'bench-passphrase-0123456789',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
};
delete env.MUTUAL_HOME;
delete env.NODE_COMPILE_CACHE;

function sh(cmd: string, argv: string[], cwd: string): string {
  const r = spawnSync(cmd, argv, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-bench-cli-'));
process.stderr.write(`packing and installing mutual in ${work} ...\n`);
const packed = sh('npm', ['pack', '--json', '--pack-destination', work], REPO);
const tarball = path.join(work, (JSON.parse(packed.slice(packed.indexOf('\n[') + 1)) as { filename: string }[])[0].filename);
const app = path.join(work, 'app');
fs.mkdirSync(app);
fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'bench-app', private: true, type: 'module' }));
sh('npm', ['install', '--prefer-offline', '--no-package-lock', tarball], app);
const installedBin = path.join(app, 'node_modules/mutual/bin/mutual.mjs');
const home = path.join(work, 'home');
sh(NODE, [installedBin, '--home', home, 'init', '--trust-domain', 'bench.internal'], work);
sh(NODE, [installedBin, '--home', home, 'issue', 'server', 'api.bench.internal', '--out', path.join(work, 'api')], work);
const cert = path.join(work, 'api/cert.pem');

interface Case {
  name: string;
  cmd: string;
  argv: string[];
  cwd?: string;
}
const mutualCases = (label: string, bin: string, version = true): Case[] => [
  ...(version ? [{ name: `${label}: --version`, cmd: NODE, argv: [bin, '--version'] }] : []),
  { name: `${label}: --help`, cmd: NODE, argv: [bin, '--help'] },
  { name: `${label}: inspect cert.pem`, cmd: NODE, argv: [bin, '--home', home, 'inspect', cert] },
  { name: `${label}: --json list`, cmd: NODE, argv: [bin, '--home', home, '--json', 'list'] },
];
const cases: Case[] = [
  { name: 'node -e 0', cmd: NODE, argv: ['-e', '0'] },
  { name: 'openssl x509 -noout -in cert.pem', cmd: 'openssl', argv: ['x509', '-noout', '-in', cert] },
  ...mutualCases('installed (dist JS)', installedBin),
  ...mutualCases('checkout (src TS)', path.join(REPO, 'bin/mutual.mjs')),
  ...(compare ? mutualCases(`${path.basename(compare)} (src TS)`, path.join(compare, 'bin/mutual.mjs'), fs.readFileSync(path.join(compare, 'src/cli/main.ts'), 'utf8').includes('.version(')) : []),
  { name: 'installed: npx mutual --version', cmd: 'npx', argv: ['--no-install', 'mutual', '--version'], cwd: app },
];

/** One run under GNU time: wall ms, CPU ms (user + system, 10 ms resolution), peak RSS MB. */
async function once(c: Case): Promise<{ ms: number; cpuMs: number; rssMB: number }> {
  const r = await runTimed(c.cmd, c.argv, { cwd: c.cwd ?? work, env });
  return { ms: r.seconds * 1000, cpuMs: r.cpuSeconds * 1000, rssMB: r.peakRssMB };
}

for (const c of cases) await once(c);
const times = new Map<Case, { ms: number; cpuMs: number; rssMB: number }[]>(cases.map((c) => [c, []]));
for (let i = 0; i < runs; i++) for (const c of cases) times.get(c)!.push(await once(c));

const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.9) - 1)];
const base = median(times.get(cases[0])!.map((t) => t.ms));
const rows = cases.map((c) => {
  const wall = times.get(c)!.map((t) => t.ms);
  return {
    command: c.name, 'median ms': Math.round(median(wall)), 'p90 ms': Math.round(p90(wall)), 'min ms': Math.round(Math.min(...wall)), 'vs node -e 0': `${(median(wall) / base).toFixed(1)}x`,
    'CPU ms (median)': Math.round(median(times.get(c)!.map((t) => t.cpuMs))), 'peak RSS MB': Math.round(median(times.get(c)!.map((t) => t.rssMB))),
  };
});
const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
process.stdout.write(`\nCLI start-up, ${runs} interleaved runs each, Node ${process.version}, load average ${load}\n\n${formatTable(rows)}\n`);
fs.mkdirSync(path.join(REPO, 'bench/out'), { recursive: true });
fs.writeFileSync(path.join(REPO, 'bench/out', `cli-startup-${new Date().toISOString().slice(0, 10)}.txt`), formatTable(rows) + `\nload average ${load}\n`);
fs.rmSync(work, { recursive: true, force: true });
