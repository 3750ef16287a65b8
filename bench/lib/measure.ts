/**
 * Measuring helpers shared by the benchmarks: a child process timed under GNU time (wall, peak RSS,
 * CPU), the same figures for work done in this process, medians and markdown tables.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { access, constants, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where GNU time is expected. Bash's `time` keyword reports no memory, so the binary is needed. */
export const TIME_BIN = '/usr/bin/time';

/** Options for {@link runTimed}. */
export interface RunTimedOptions {
  /** Working directory of the child; default: this process's. */
  cwd?: string;
  /** Environment of the child; default: `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Bytes written to the child's stdin, which is then closed; default: stdin is `/dev/null`. */
  input?: string | Uint8Array;
}

/** What {@link runTimed} measured. */
export interface TimedRun {
  /** Wall-clock seconds from spawn to exit, measured here (includes GNU time's own ~1 ms fork). */
  seconds: number;
  /** Peak resident set of the child in MiB (GNU time's `%M` KiB / 1024). */
  peakRssMB: number;
  /** User + system CPU seconds of the child (and the descendants it waited for). */
  cpuSeconds: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cmd args...` under GNU time (`/usr/bin/time -f '%M %U %S' -o FILE`) and returns its wall time,
 * peak RSS and CPU. The figures go to a private file so the child's own stderr cannot garble them.
 * Throws if GNU time is missing (install it with `apt-get install -y time`), or if the child exits
 * non-zero or is killed (the error carries the tail of its stderr).
 */
export async function runTimed(cmd: string, args: readonly string[], opts: RunTimedOptions = {}): Promise<TimedRun> {
  try {
    await access(TIME_BIN, constants.X_OK);
  } catch {
    throw new Error(`GNU time is needed at ${TIME_BIN} to measure peak RSS and CPU of a child; install it with \`apt-get install -y time\``);
  }
  const statsFile = join(tmpdir(), `mutual-bench-time-${process.pid}-${randomUUID()}.txt`);
  const child = spawn(TIME_BIN, ['-f', '%M %U %S', '-o', statsFile, '--', cmd, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  const t0 = process.hrtime.bigint();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  if (opts.input !== undefined) {
    // A child that exits without reading its input would otherwise crash us with EPIPE.
    child.stdin!.on('error', () => {});
    child.stdin!.end(opts.input);
  }
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const stdout = Buffer.concat(out).toString('utf8');
  const stderr = Buffer.concat(err).toString('utf8');
  let stats = '';
  try {
    stats = await readFile(statsFile, 'utf8');
  } catch {
    // GNU time writes the file even when the command fails; no file means time itself failed.
  } finally {
    await rm(statsFile, { force: true });
  }
  if (code !== 0) {
    const why = stats.split('\n').find((l) => l.startsWith('Command ')) ?? `exit code ${code}`;
    throw new Error(`${[cmd, ...args.slice(0, 4)].join(' ')}${args.length > 4 ? ' ...' : ''}: ${why}\n${stderr.slice(-2000)}`);
  }
  // On success the figures are the file's only line; take the last line anyway, to be safe.
  const m = stats.trim().split('\n').at(-1)?.match(/^(\d+) (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)$/);
  if (!m) throw new Error(`could not read GNU time's figures for ${cmd}: ${JSON.stringify(stats)}`);
  return { seconds, peakRssMB: Number(m[1]) / 1024, cpuSeconds: Number(m[2]) + Number(m[3]), stdout, stderr };
}

/** What {@link measureInProcess} measured. */
export interface InProcessMeasurement<T> {
  result: T;
  /** Wall-clock seconds `fn` took (until its promise settled). */
  seconds: number;
  /** User + system CPU seconds of this whole process meanwhile (all threads, GC included). */
  cpuSeconds: number;
  /** This process's peak RSS after `fn`, in MiB. */
  peakRssMB: number;
  /**
   * How far `fn` raised the peak RSS, in MiB. It is a high-water mark: work that stays under an earlier
   * peak shows 0, so measure in a fresh process (or first thing) for a figure comparable to a child's.
   */
  peakRssDeltaMB: number;
}

/** Runs `fn` in this process and measures wall time, CPU and peak RSS (from `process.resourceUsage()`). */
export async function measureInProcess<T>(fn: () => T | Promise<T>): Promise<InProcessMeasurement<T>> {
  const rss0 = process.resourceUsage().maxRSS;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const result = await fn();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const rss1 = process.resourceUsage().maxRSS;
  return { result, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, peakRssMB: rss1 / 1024, peakRssDeltaMB: (rss1 - rss0) / 1024 };
}

/** The median of `xs` (the mean of the two middle values for an even count). Throws on an empty list. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new TypeError('median of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Formats a figure for a table: integers with thousands separators, others to 3 significant digits (at least 0 decimals). */
export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  const abs = Math.abs(n);
  const decimals = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : Math.min(6, 2 - Math.floor(Math.log10(abs)));
  return n.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/**
 * A markdown table from rows of named cells. Columns are the keys in first-seen order; numbers go
 * through {@link formatNumber} and their columns are right-aligned; a missing cell prints as `-`.
 */
export function formatTable(rows: readonly Record<string, string | number | undefined>[]): string {
  const cols: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  const numeric = cols.map((c) => rows.some((r) => typeof r[c] === 'number'));
  const cell = (v: string | number | undefined) => (v === undefined ? '-' : typeof v === 'number' ? formatNumber(v) : v.replaceAll('|', '\\|'));
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(cols), line(numeric.map((n) => (n ? '---:' : '---'))), ...rows.map((r) => line(cols.map((c) => cell(r[c]))))].join('\n');
}
