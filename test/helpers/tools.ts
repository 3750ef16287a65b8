/**
 * Test helpers for real peers. Under MUTUAL_INTEROP=require a missing peer fails the test;
 * otherwise the test skips with a message naming the package to install.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
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
