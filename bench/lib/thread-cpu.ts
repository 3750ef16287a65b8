/**
 * CPU time of this process by thread, grouped by the thread's name (/proc/self/task/<tid>/comm):
 * `main` for the event loop's thread, `libuv-worker` for the pool where async crypto and PKCS#11
 * calls run, `V8 DefaultWorke` for GC and compiler helpers, SQLite's own threads by theirs. A V8
 * CPU profile sees only the main thread; this shows where the rest of the core went.
 */
import fs from 'node:fs';

/** CPU seconds (user + system) by thread name; threads that already exited are not counted. */
export function threadCpuSeconds(): Record<string, number> {
  const byName: Record<string, number> = {};
  for (const tid of fs.readdirSync('/proc/self/task')) {
    let stat: string;
    let name: string;
    try {
      stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      name = Number(tid) === process.pid ? 'main' : fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
    } catch {
      continue; // the thread ended between the listing and the read
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime, in clock ticks of 1/100 s (USER_HZ on Linux).
    byName[name] = (byName[name] ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100;
  }
  return byName;
}
