/**
 * Child servers for the benchmarks: start, wait until they answer, read their CPU time from
 * /proc, stop them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { freePort, waitForPort } from '../../test/helpers/tools.ts';

// The same port helpers as the tests.
export { freePort, waitForPort };


/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat (clock ticks of 1/100 s). */
export function cpuSeconds(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Starts a server process and waits until `port` accepts connections. */
export async function startServer(cmd: string, args: string[], port: number, o: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<ChildProcess> {
  const child = spawn(cmd, args, { env: o.env ?? process.env, cwd: o.cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  try {
    await Promise.race([
      waitForPort(port, o.timeoutMs ?? 20_000),
      new Promise((_, reject) => child.once('exit', () => reject(new Error(`${cmd} exited: ${err}`)))),
    ]);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${cmd} did not listen on ${port}: ${(e as Error).message} ${err}`);
  }
  return child;
}


/** Stops a child and waits for it. */
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await done;
  clearTimeout(t);
}
