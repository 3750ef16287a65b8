/**
 * mutual's side of the issuance benchmark, run as its own process (pinned to one core by the
 * caller): a fresh CA, then every CSR through the whole engine (CSR parse + proof of possession,
 * policy, lint, build, sign, durable SQLite persist with audit entry), `concurrency` requests in
 * flight so group commit can share transactions. Prints one JSON line.
 *
 *   node bench/engine/issue-engine.ts <csr-dir> <count> <concurrency> [key-store]
 *
 * `key-store` is where init makes the intermediates' keys: `file` (the default: encrypted key
 * files) or a `pkcs11:` token URI (bench/hsm.ts; the child then needs the token's SOFTHSM2_CONF).
 * The JSON says where the server CA's key was (`keyLocation`) and, per thread, the CPU it used.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initCa } from '../../src/ca/init-ca.ts';
import { CertificateAuthority } from '../../src/ca/authority.ts';
import { homeLayout } from '../../src/ca/home.ts';
import { openSqliteStore } from '../../src/store/sqlite-store.ts';
import { closeKeyStores, keyLocation, parseKeyStore } from '../../src/keys/index.ts';
import { threadCpuSeconds } from '../lib/thread-cpu.ts';

const [dir, countText, concText, keyStoreText] = process.argv.slice(2);
const count = Number(countText);
const concurrency = Number(concText ?? 64);
const csrs = Array.from({ length: count }, (_, i) => fs.readFileSync(path.join(dir, `host-${i}.csr`)));
const home = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-bench-issue-'));
const passphrase = 'bench-passphrase-not-secret';
await initCa({ home: path.join(home, 'home'), trustDomain: 'bench.internal', name: 'Bench', passphrase, keyStore: parseKeyStore(keyStoreText) });
// FSYNC=commit: SQLite's synchronous=FULL inside COMMIT instead of the store's default (an fdatasync
// of the WAL on libuv's pool after the commit), for comparison; WRITER=1: the writer thread;
// CHECKPOINTS=inline: SQLite's checkpoints inside COMMIT instead of on the checkpointer thread;
// CHECKPOINTS_STATS=1 prints the checkpointer's counters to stderr at the end.
const store = openSqliteStore({
  path: homeLayout(path.join(home, 'home')).database, writerThread: process.env.WRITER === '1', fsync: process.env.FSYNC === 'commit' ? 'commit' : 'thread-pool',
  checkpoints: process.env.CHECKPOINTS === 'inline' ? 'inline' : 'thread',
});
const ca = await CertificateAuthority.open({ home: path.join(home, 'home'), passphrase, store });

const threads0 = threadCpuSeconds();
const r0 = process.resourceUsage();
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage();
let next = 0;
async function worker(): Promise<void> {
  while (next < count) {
    const csr = csrs[next++];
    await ca.issue({ role: 'server', csr, actor: 'bench' });
  }
}
await Promise.all(Array.from({ length: concurrency }, worker));
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(c0);
const r1 = process.resourceUsage();
// Context switches (the process's, all threads) and kernel time: a token's module does file and lock
// system calls, and every signature on libuv's pool is two hand-offs between threads.
const kernel = { systemSeconds: cpu.system / 1e6, contextSwitches: r1.voluntaryContextSwitches - r0.voluntaryContextSwitches + r1.involuntaryContextSwitches - r0.involuntaryContextSwitches };
// CPU by thread during the timed part only (init's key generation and unlocking left out).
const threads = Object.fromEntries(Object.entries(threadCpuSeconds()).map(([k, v]) => [k, Math.round((v - (threads0[k] ?? 0)) * 100) / 100]));
const stored = (await ca.list({ limit: count + 10 })).length;
if (process.env.CHECKPOINTS_STATS) process.stderr.write(JSON.stringify(store.checkpointStats()) + '\n');
const location = keyLocation(homeLayout(path.join(home, 'home')).serverCaKey);
await ca.close();
await closeKeyStores();
fs.rmSync(home, { recursive: true, force: true });
if (stored < count) throw new Error(`only ${stored} of ${count} certificates are in the inventory`);
process.stdout.write(JSON.stringify({ count, seconds, certsPerSec: count / seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, peakRssMB: process.resourceUsage().maxRSS / 1024, keyLocation: location, threads, ...kernel }) + '\n');
