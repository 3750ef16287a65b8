/**
 * Issuance with the intermediate key on a PKCS#11 token (SoftHSM2) against the same with the key in
 * an encrypted file, in one run, and the limits around them:
 *
 *   npm run bench:hsm -- [count=20000] [rounds=3] [in-flight=64] [--openssl-count=5000] [--profile]
 *
 * Each round, in alternating order: the engine (bench/engine/issue-engine.ts: the whole issuance
 * path with durable SQLite, pinned to core 0 as bench:issuance is) with `file` keys and with the
 * keys on a SoftHSM2 token this run makes (softhsm2-util, its own SOFTHSM2_CONF); `openssl speed
 * ecdsap256` on core 0 (the file key's ceiling); bench/peers/p11-speed.c, C_SignInit/C_Sign in C
 * on the very key the token round signed with, 1 thread on core 0 (the token key's ceiling), 2
 * threads on both cores, and a session key on core 0 (SoftHSM2 without its per-use check of the
 * token's files); and `openssl ca -infiles` with its key in a file and on the token through
 * libp11's engine, on core 0. Then, once: what `openssl speed -engine pkcs11` and `openssl pkeyutl`
 * do with the token (bench/peers/openssl-engine.ts says why neither is a signing rate).
 * `--profile` runs the engine once more on the token and once on the file under `--cpu-prof`,
 * prints the top of both and keeps the token's profile in bench/out/.
 *
 * Needs Debian's softhsm2, gcc and libp11-kit-dev; libengine-pkcs11-openssl and opensc (pkcs11-spy)
 * for the openssl rows, which are left out without them. The whole output also goes to
 * bench/out/hsm-<date>.txt.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { measureOpensslIssuance, prepareOpensslCa, writeCsrs, type OpensslCa } from './peers/openssl-ca.ts';
import { buildP11Speed, runP11Speed } from './peers/p11-speed.ts';
import { engineEnv, engineInstalled, engineKeyUri, engineSpeedCheck, pkeyutlLoop, PKCS11_SPY } from './peers/openssl-engine.ts';
import { formatTable, median } from './lib/measure.ts';
import { ecdsaSpeed } from './lib/openssl-speed.ts';
import { selfTimes } from './lib/profile-top.ts';
import { makeBenchToken } from './lib/softhsm-token.ts';

const flags = process.argv.slice(2).filter((a) => a.startsWith('--'));
const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const count = Number(args[0] ?? 20000);
const rounds = Number(args[1] ?? 3);
const inFlight = Number(args[2] ?? 64);
const opensslCount = Math.min(count, Number(flags.find((f) => f.startsWith('--openssl-count='))?.split('=')[1] ?? 5000));
const profile = flags.includes('--profile');
/** How many `openssl pkeyutl` processes the once-only row starts. */
const PKEYUTL_RUNS = 200;
/** Seconds of each p11-speed run. */
const P11_SPEED_SECONDS = 2;

for (const tool of ['softhsm2-util', 'gcc', 'taskset']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is needed: apt-get install softhsm2 gcc libp11-kit-dev util-linux`);
}
const withOpenssl = engineInstalled();

const repo = path.resolve(import.meta.dirname, '..');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-bench-hsm-'));
const csrDir = path.join(work, 'csrs');
const csrs = await writeCsrs(csrDir, count);
const token = makeBenchToken(path.join(work, 'softhsm'));
const p11Speed = buildP11Speed(work);
const out: string[] = [];
const say = (line = '') => {
  out.push(line);
  process.stdout.write(line + '\n');
};
const progress = (line: string) => process.stderr.write(line + '\n');

type EngineRun = {
  certsPerSec: number;
  cpuSeconds: number;
  peakRssMB: number;
  keyLocation: { kind: 'file' } | { kind: 'pkcs11'; uri: string };
  threads: Record<string, number>;
  systemSeconds: number;
  contextSwitches: number;
};

/** One engine run, pinned to core 0, after `sync` (see bench/issuance.ts for why). */
function engine(store: 'file' | 'token', nodeArgs: string[] = []): EngineRun {
  execFileSync('sync');
  const res = execFileSync('taskset', ['-c', '0', process.execPath, ...nodeArgs, 'bench/engine/issue-engine.ts', csrDir, String(count), String(inFlight), store === 'file' ? 'file' : token.uri], {
    cwd: repo,
    env: token.env,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const run = JSON.parse(res.trim().split('\n').pop()!) as EngineRun;
  // A run that quietly fell back to the other kind of key would make the comparison meaningless.
  const want = store === 'file' ? 'file' : 'pkcs11';
  if (run.keyLocation.kind !== want) throw new Error(`the ${store} run's server CA key is ${run.keyLocation.kind}, not ${want}`);
  return run;
}

/** The CKA_LABEL (`object=`) of a key reference URI. */
function objectLabel(uri: string): string {
  const m = /[:;]object=([^;?]*)/.exec(uri);
  if (!m) throw new Error(`no object= in the key reference ${uri}`);
  return decodeURIComponent(m[1]);
}

let opensslFile: OpensslCa | undefined;
let opensslToken: OpensslCa | undefined;
const opensslCsrs = csrs.slice(0, opensslCount);
if (withOpenssl) {
  // openssl's CA key: a token key of its own, made as mutual makes them (sensitive, never extractable).
  runP11Speed(p11Speed, token, '+openssl-ca', 0, 1);
  opensslFile = await prepareOpensslCa(path.join(work, 'openssl-file'));
  opensslToken = await prepareOpensslCa(path.join(work, 'openssl-token'), { uri: engineKeyUri(token, 'openssl-ca'), env: engineEnv(token) });
}

const speedBefore = ecdsaSpeed();
const runs = { file: [] as EngineRun[], token: [] as EngineRun[] };
const limits = { opensslSpeed: [] as number[], p11One: [] as number[], p11Two: [] as number[], p11Session: [] as number[], initMicros: [] as number[], signMicros: [] as number[] };
const peer = { file: [] as number[], token: [] as number[] };
let tokenKeyLabel = '';
for (let r = 0; r < rounds; r++) {
  // Alternate which side goes first, so a drift of this shared VM within a round hurts both alike.
  for (const store of r % 2 === 0 ? (['file', 'token'] as const) : (['token', 'file'] as const)) {
    const run = engine(store);
    runs[store].push(run);
    if (run.keyLocation.kind === 'pkcs11') tokenKeyLabel = objectLabel(run.keyLocation.uri);
    progress(`round ${r + 1}: ${store} ${Math.round(run.certsPerSec)} certs/s`);
  }
  limits.opensslSpeed.push(ecdsaSpeed()[0]);
  const one = runP11Speed(p11Speed, token, tokenKeyLabel, P11_SPEED_SECONDS, 1, '0');
  limits.p11One.push(one.perSecond);
  limits.initMicros.push(one.initMicros);
  limits.signMicros.push(one.signMicros);
  limits.p11Two.push(runP11Speed(p11Speed, token, tokenKeyLabel, P11_SPEED_SECONDS, 2, '0,1').perSecond);
  // The same with a session key: SoftHSM2 then skips the check of its token files it makes on every use of a token key.
  limits.p11Session.push(runP11Speed(p11Speed, token, '-', P11_SPEED_SECONDS, 1, '0').perSecond);
  if (opensslFile && opensslToken) {
    for (const store of r % 2 === 0 ? (['file', 'token'] as const) : (['token', 'file'] as const)) {
      execFileSync('sync');
      peer[store].push((await measureOpensslIssuance(store === 'file' ? opensslFile : opensslToken, opensslCsrs, { cpus: '0', out: '/dev/null' })).certsPerSec);
    }
  }
  progress(`round ${r + 1}: openssl speed ${limits.opensslSpeed.at(-1)}/s, p11-speed ${limits.p11One.at(-1)}/s (1 thread), ${limits.p11Two.at(-1)}/s (2)`);
}
const speedAfter = ecdsaSpeed();

const m = (xs: number[]) => Math.round(median(xs));
const all = (xs: number[]) => xs.map((x) => Math.round(x).toLocaleString('en-US')).join(', ');
/** Median CPU microseconds per certificate of the threads whose names match `re`. */
const threadUs = (xs: EngineRun[], re: RegExp) => Math.round((median(xs.map((x) => Object.entries(x.threads).reduce((s, [k, v]) => (re.test(k) ? s + v : s), 0))) / count) * 1e6);
const engineRow = (name: string, xs: EngineRun[]) => ({
  issuer: name,
  'certs/s (median)': m(xs.map((x) => x.certsPerSec)),
  'CPU µs/cert': Math.round((median(xs.map((x) => x.cpuSeconds)) / count) * 1e6),
  'main thread': threadUs(xs, /^main$/),
  'libuv pool': threadUs(xs, /^libuv-worker$/),
  'other threads': threadUs(xs, /^(?!main$|libuv-worker$)/),
  'of it kernel': Math.round((median(xs.map((x) => x.systemSeconds)) / count) * 1e6),
  'context switches/cert': Math.round((median(xs.map((x) => x.contextSwitches)) / count) * 10) / 10,
  'peak RSS MB': m(xs.map((x) => x.peakRssMB)),
  'all rounds': all(xs.map((x) => x.certsPerSec)),
});
const issuance: Record<string, string | number | undefined>[] = [
  engineRow(`mutual, key in encrypted file (core 0, durable, ${inFlight} in flight)`, runs.file),
  engineRow(`mutual, key on SoftHSM2 token (core 0, durable, ${inFlight} in flight)`, runs.token),
];
if (peer.file.length > 0) {
  issuance.push({ issuer: `openssl ca -infiles, key in file (${opensslCount} CSRs, core 0, -out /dev/null, no fsync)`, 'certs/s (median)': m(peer.file), 'all rounds': all(peer.file) });
  issuance.push({ issuer: `openssl ca -infiles, key on the token (engine pkcs11)`, 'certs/s (median)': m(peer.token), 'all rounds': all(peer.token) });
}

const signing: Record<string, string | number>[] = [
  { signer: 'openssl speed ecdsap256, core 0 (software key: the file key ceiling)', 'signatures/s (median)': m(limits.opensslSpeed), 'all rounds': all(limits.opensslSpeed) },
  { signer: 'p11-speed.c, token key, 1 thread, core 0 (the token key ceiling)', 'signatures/s (median)': m(limits.p11One), 'all rounds': all(limits.p11One) },
  { signer: 'p11-speed.c, token key, 2 threads, cores 0-1', 'signatures/s (median)': m(limits.p11Two), 'all rounds': all(limits.p11Two) },
  { signer: 'p11-speed.c, session key (CKA_TOKEN false), 1 thread, core 0', 'signatures/s (median)': m(limits.p11Session), 'all rounds': all(limits.p11Session) },
];
if (withOpenssl && opensslToken) {
  if (fs.existsSync(PKCS11_SPY)) {
    const check = engineSpeedCheck(token, work);
    signing.push({ signer: `openssl speed -engine pkcs11 ecdsap256, core 0: ${check.pkcs11Calls} PKCS#11 calls, ${check.signCalls} C_Sign (pkcs11-spy): software keys, not the token`, 'signatures/s (median)': check.signPerSecond, 'all rounds': 'once' });
  }
  const loop = pkeyutlLoop(token, engineKeyUri(token, 'openssl-ca'), opensslToken.certificate, work, PKEYUTL_RUNS);
  signing.push({ signer: `openssl pkeyutl -sign -engine pkcs11, token key, one process per signature (${PKEYUTL_RUNS}), core 0`, 'signatures/s (median)': Math.round(loop.perSecond), 'all rounds': 'once' });
}

const fileRate = median(runs.file.map((x) => x.certsPerSec));
const tokenRate = median(runs.token.map((x) => x.certsPerSec));
const cpuUs = (xs: EngineRun[]) => (median(xs.map((x) => x.cpuSeconds)) / count) * 1e6;
const extraUs = cpuUs(runs.token) - cpuUs(runs.file);
const signExtraUs = 1e6 / median(limits.p11One) - 1e6 / median(limits.opensslSpeed);
const version = execFileSync('softhsm2-util', ['--version'], { encoding: 'utf8' }).trim();

say();
say(`Issuance of ${count} P-256 server certificates from CSRs, intermediate key in a file vs on SoftHSM2 ${version}, ${rounds} rounds, ${os.loadavg()[0].toFixed(2)} load average at the end`);
say(`this machine, core 0, openssl speed ecdsap256: ${speedBefore[0]} sign/s, ${speedBefore[1]} verify/s before; ${speedAfter[0]} / ${speedAfter[1]} after`);
say();
say(formatTable(issuance));
say();
say(formatTable(signing));
say();
say(`ratio token/file, mutual: ${((tokenRate / fileRate) * 100).toFixed(0)}% (target >= 50%)` + (peer.file.length > 0 ? `; openssl ca: ${((median(peer.token) / median(peer.file)) * 100).toFixed(0)}%` : ''));
say(`the token costs ${extraUs.toFixed(0)} µs more CPU per certificate; its own signing, in C, costs ${signExtraUs.toFixed(0)} µs more than a software signature (1/p11-speed - 1/openssl speed); the rest, ${(extraUs - signExtraUs).toFixed(0)} µs, is the hop from Node (binding, thread pool, session pool, DER)`);
say(`one token signature in C: C_SignInit ${median(limits.initMicros).toFixed(1)} µs (on the event loop's thread in mutual), C_Sign ${median(limits.signMicros).toFixed(1)} µs (on libuv's pool)`);
say(`mutual on the token issues ${((tokenRate / median(limits.p11One)) * 100).toFixed(0)}% of p11-speed's signatures/s on one core`);

if (profile) {
  const outDir = path.join(repo, 'bench', 'out');
  fs.mkdirSync(outDir, { recursive: true });
  for (const store of ['token', 'file'] as const) {
    const profDir = path.join(work, `prof-${store}`);
    const run = engine(store, ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
    const file = path.join(profDir, fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'))!);
    const t = selfTimes(JSON.parse(fs.readFileSync(file, 'utf8')));
    if (store === 'token') {
      const kept = path.join(outDir, `hsm-${new Date().toISOString().slice(0, 10)}-token.cpuprofile`);
      fs.copyFileSync(file, kept);
      say(`\nprofile of the ${store} run (${Math.round(run.certsPerSec)} certs/s under the profiler), kept in ${path.relative(repo, kept)}`);
    } else {
      say(`\nprofile of the ${store} run (${Math.round(run.certsPerSec)} certs/s under the profiler)`);
    }
    say(`CPU by thread, µs/cert: ${Object.entries(run.threads).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${Math.round((v / count) * 1e6)}`).join(', ')}`);
    const top = (title: string, byKey: Map<string, number>, n: number) => {
      say(`${title} (main thread self time, of ${(t.total / 1000).toFixed(0)} ms)`);
      for (const [k, v] of [...byKey].sort((a, b) => b[1] - a[1]).slice(0, n)) say(`${((v / t.total) * 100).toFixed(1).padStart(5)}%  ${k}`);
    };
    if (store === 'token') top('by function', t.byFunction, 20);
    top('by file', t.byFile, 12);
  }
}

const outDir = path.join(repo, 'bench', 'out');
fs.mkdirSync(outDir, { recursive: true });
const raw = path.join(outDir, `hsm-${new Date().toISOString().slice(0, 10)}.txt`);
fs.writeFileSync(raw, `npm run bench:hsm -- ${process.argv.slice(2).join(' ')}\n${out.join('\n')}\n\nper run:\n${JSON.stringify({ runs, limits, peer }, null, 1)}\n`);
progress(`written to ${path.relative(repo, raw)}`);
fs.rmSync(work, { recursive: true, force: true });
