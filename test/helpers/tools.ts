/**
 * Test helpers for real peers. Under MUTUAL_INTEROP=require a missing peer fails the test;
 * otherwise the test skips with a message naming the package to install.
 */
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import net from 'node:net';
import type { TestContext } from 'node:test';

const found = new Map<string, boolean>();

/** True when `cmd` is on PATH. */
export function hasTool(cmd: string): boolean {
  if (!found.has(cmd)) found.set(cmd, spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0);
  return found.get(cmd)!;
}

/**
 * Ensures a peer is present: returns true to go on; false after marking the test skipped. Under
 * MUTUAL_INTEROP=require it throws instead, so CI cannot pass by skipping.
 */
export function requireTool(t: TestContext, cmd: string, pkg = cmd): boolean {
  if (hasTool(cmd)) return true;
  const msg = `${cmd} is not installed (apt-get install ${pkg})`;
  if (process.env.MUTUAL_INTEROP === 'require') throw new Error(`${msg}; MUTUAL_INTEROP=require`);
  t.skip(msg);
  return false;
}

/** Result of a tool run. */
export interface RunResult {
  status: number;
  /** The signal that ended it, when one did (runAsync only). */
  signal?: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command (no shell) and returns its exit status and output. */
export function run(cmd: string, args: string[], o: SpawnSyncOptions = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, ...o });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}

/** Runs openssl. */
export const openssl = (args: string[], o: SpawnSyncOptions = {}): RunResult => run('openssl', args, o);

/** A free TCP port on 127.0.0.1 (listen on 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Waits until something accepts connections on 127.0.0.1:`port`, at most `ms`. */
export async function waitForPort(port: number, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() - t0 > ms) throw new Error(`nothing listens on ${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Runs a command without blocking the event loop (when the server under test runs in this
 * process, `spawnSync` would deadlock against it). Resolves with exit status, signal and output;
 * never rejects on a non-zero exit. Killed after `timeoutMs` (default 30 s).
 */
export function runAsync(cmd: string, args: string[], o: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: o.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status: status ?? -1, signal, stdout, stderr });
    });
    child.stdin.end(o.input);
  });
}
