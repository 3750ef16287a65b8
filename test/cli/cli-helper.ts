/**
 * Runs the `mutual` CLI as a real subprocess (bin/mutual.mjs under this Node), and keeps every
 * output so a test can check that none of it leaks a secret.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { homeLayout } from '../../src/ca/home.ts';
import { freePort, send, waitFor } from '../helpers/server.ts';

/** The CLI entry point. */
export const BIN = path.resolve(import.meta.dirname, '../../bin/mutual.mjs');
/** The repository root. */
export const REPO = path.resolve(import.meta.dirname, '../..');
/** The PKCS#12 password the helper puts in MUTUAL_P12_PASSWORD. */
export const P12_PASSWORD = 'p12-password-for-tests';

/** What one CLI run gave. */
export interface CliResult {
  args: string[];
  /** Exit code, or null when killed by a signal. */
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Options of {@link mutual}. */
export interface CliOptions {
  /**
   * Replaces MUTUAL_CA_PASSPHRASE (default: TEST_PASSPHRASE); `null` leaves it unset (and
   * MUTUAL_ROOT_PASSPHRASE too).
   */
  passphrase?: string | null;
  /** More environment variables (applied last; `undefined` removes one). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Default 'ignore' for stdin: the CLI must never wait for input in a test. */
  stdio?: StdioOptions;
  /** Run in a new session (setsid): no controlling terminal, so /dev/tty cannot be opened. */
  detached?: boolean;
  /** Default 60 s. */
  timeoutMs?: number;
  /** Run this script instead of bin/mutual.mjs (e.g. src/cli/main.ts). */
  script?: string;
}

/** Where the CLI processes keep V8's compile cache. */
const COMPILE_CACHE = path.join(os.tmpdir(), 'mutual-test-compile-cache');

/** Every result of this process's runs, for the leak check. */
export const transcript: CliResult[] = [];

/** Most CLI processes at once (each is ~110 MB; tests start batches with Promise.all). */
const MAX_PARALLEL = 4;
let running = 0;
const waiting: (() => void)[] = [];
async function slot<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= MAX_PARALLEL) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** Runs `mutual ...args`. Never throws on a non-zero exit; the test asserts on `status`. */
export function mutual(args: string[], o: CliOptions = {}): Promise<CliResult> {
  return slot(() => spawnCli(args, o));
}

function spawnCli(args: string[], o: CliOptions): Promise<CliResult> {
  const env: Record<string, string | undefined> = {
    ...process.env, MUTUAL_P12_PASSWORD: P12_PASSWORD, MUTUAL_HOME: undefined,
    // V8's code cache halves the start-up of each CLI process (~0.5 s -> ~0.25 s CPU); it changes nothing else.
    NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? COMPILE_CACHE,
  };
  if (o.passphrase === null) {
    delete env.MUTUAL_CA_PASSPHRASE;
    delete env.MUTUAL_ROOT_PASSPHRASE;
  } else env.MUTUAL_CA_PASSPHRASE = o.passphrase ?? TEST_PASSPHRASE;
  for (const [k, v] of Object.entries(o.env ?? {})) env[k] = v;
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [o.script ?? BIN, ...args], {
      cwd: o.cwd ?? REPO,
      env: env as NodeJS.ProcessEnv,
      stdio: o.stdio ?? ['ignore', 'pipe', 'pipe'],
      detached: o.detached ?? false,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      const r: CliResult = { args, status, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
      transcript.push(r);
      resolve(r);
    });
  });
}

/** Parses `--json` output (the whole stdout). */
export function json<T = any>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`stdout of \`mutual ${r.args.join(' ')}\` (exit ${r.status}) is not JSON:\n${r.stdout}\nstderr:\n${r.stderr}`);
  }
}

/** The error code of a failed `--json` run (`{"error":{"code":...}}` on stdout). */
export function errorCode(r: CliResult): string | undefined {
  try {
    return (JSON.parse(r.stdout) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

/** A one-line description of a run, for assertion messages. */
export function explain(r: CliResult): string {
  return `\`mutual ${r.args.join(' ')}\` exited ${r.status ?? r.signal}\nstdout: ${r.stdout.slice(0, 2000)}\nstderr: ${r.stderr.slice(0, 2000)}`;
}

/** A passphrase that is not the CA's, for the wrong-passphrase cases. */
export const WRONG_PASSPHRASE = 'not-the-right-passphrase';

/** Strings no CLI output may contain. */
export const SECRETS = [TEST_PASSPHRASE, P12_PASSWORD, WRONG_PASSPHRASE, 'PRIVATE KEY'];

/** The runs whose output contains one of `secrets`. */
export function leaks(secrets: string[] = SECRETS): { args: string[]; secret: string }[] {
  const found: { args: string[]; secret: string }[] = [];
  for (const r of transcript) {
    for (const s of secrets) if (r.stdout.includes(s) || r.stderr.includes(s)) found.push({ args: r.args, secret: s === 'PRIVATE KEY' ? s : '<passphrase>' });
  }
  return found;
}

/** File mode bits (e.g. 0o600). */
export const mode = (p: string): number => fs.statSync(p).mode & 0o777;

/** SHA-256 of a file, hex. */
export const sha256 = (p: string): string => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');

/** Every file under `dir`, recursively. */
export function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

/** A `mutual serve` process; resolves when /health answers, rejects when it exits first. */
export async function startServe(home: string): Promise<{ url: string; child: ChildProcess; stderr: () => string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [BIN, '--home', home, 'serve', '--listen', `127.0.0.1:${port}`, '--log-level', 'warn', '--rate-limit', 'off'], {
    env: { ...process.env, MUTUAL_CA_PASSPHRASE: TEST_PASSPHRASE, MUTUAL_DATABASE_URL: undefined, MUTUAL_HOME: undefined }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  // Never left behind by a failed test (the hook goes when the child does: one per live server).
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  child.once('exit', () => process.off('exit', kill));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString('utf8')));
  const url = `https://127.0.0.1:${port}`;
  const root = fs.readFileSync(homeLayout(home).rootCert, 'utf8');
  await waitFor(`mutual serve on ${url}`, 60_000, async () => {
    if (child.exitCode !== null) throw new Error(`mutual serve exited ${child.exitCode} before it served:\n${err}`);
    try {
      return (await send(`${url}/health`, { tls: { ca: root } })).status === 200 ? true : undefined;
    } catch {
      return undefined;
    }
  });
  return { url, child, stderr: () => err };
}

/** Stops a process with SIGTERM and waits for it to exit. */
export const stopProcess = (c: ChildProcess) => new Promise<void>((resolve) => {
  if (c.exitCode !== null || c.signalCode !== null) return resolve();
  c.once('exit', () => resolve());
  c.kill('SIGTERM');
});

