/**
 * `mutual agent run`: cycles when something is due (a renewal time, a retry after backoff, a
 * trust refresh), when the watched folder or a token file changes, and when woken (SIGHUP).
 */
import fs from 'node:fs';
import path from 'node:path';
import { isMutualError } from '../core/errors.ts';
import type { Agent, AgentLogger, AgentOptions, CycleReport } from './agent.ts';
import { MAX_IDLE_MS, MIN_CYCLE_GAP_MS } from './agent.ts';

/** Pause after a cycle that could not run at all (lock held, state folder unwritable). */
export const DAEMON_ERROR_PAUSE_MS = 5000;
/** Changes in watched folders arriving within this window wake the daemon once. */
export const WATCH_DEBOUNCE_MS = 250;

/** Options of {@link runDaemon}. */
export interface DaemonOptions {
  agent: Agent;
  /** Aborting stops the daemon after the cycle in progress (SIGTERM, SIGINT). */
  signal: AbortSignal;
  logger?: AgentLogger;
  /** Called after each cycle. */
  onCycle?: (r: CycleReport) => void;
  /**
   * The agent's clock ({@link AgentOptions.now}; default the wall clock). A report's nextWakeAt is on
   * that clock, so the time to sleep is measured on it too.
   */
  now?: () => Date;
}

/** A running daemon. */
export interface Daemon {
  /** Runs a cycle now (e.g. after SIGHUP re-read agent.yaml). */
  wake(): void;
  /** Resolves when the daemon stopped. */
  done: Promise<void>;
}

/** Starts the daemon loop. */
export function runDaemon(o: DaemonOptions): Daemon {
  const log = o.logger;
  const now = o.now ?? (() => new Date());
  let wakeUp: (() => void) | undefined;
  let woken = false;
  const wake = () => {
    woken = true;
    wakeUp?.();
  };
  let debounce: NodeJS.Timeout | undefined;
  const watchers: fs.FSWatcher[] = [];
  const watched = new Set<string>();
  const watchAll = () => {
    const m = o.agent.manifest;
    const dirs = [m.templatesDir, ...m.certificates.map((c) => c.tokenFile && path.dirname(c.tokenFile))].filter((d): d is string => Boolean(d));
    for (const d of dirs) {
      if (watched.has(d) || !fs.existsSync(d)) continue;
      try {
        watchers.push(fs.watch(d, { persistent: false }, () => {
          clearTimeout(debounce);
          debounce = setTimeout(wake, WATCH_DEBOUNCE_MS);
        }));
        watched.add(d);
      } catch (e) {
        log?.warn({ dir: d, err: (e as Error).message }, 'cannot watch a folder; changes are noticed at the next cycle');
      }
    }
  };
  const done = (async () => {
    log?.info({ manifest: o.agent.manifest.file, certificates: o.agent.manifest.certificates.map((c) => c.name) }, 'mutual agent started');
    while (!o.signal.aborted) {
      woken = false;
      watchAll();
      let delay = DAEMON_ERROR_PAUSE_MS;
      try {
        const r = await o.agent.cycle({});
        o.onCycle?.(r);
        delay = Math.min(MAX_IDLE_MS, Math.max(MIN_CYCLE_GAP_MS, Date.parse(r.nextWakeAt) - now().getTime()));
        log?.debug({ exitCode: r.exitCode, nextWakeAt: r.nextWakeAt }, 'cycle done');
      } catch (e) {
        log?.error({ code: isMutualError(e) ? e.code : undefined, err: (e as Error).message }, 'cycle could not run; trying again shortly');
      }
      if (o.signal.aborted) break;
      if (woken) continue;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          o.signal.removeEventListener('abort', done);
          resolve();
        };
        const t = setTimeout(done, delay);
        wakeUp = done;
        o.signal.addEventListener('abort', done, { once: true });
      });
      wakeUp = undefined;
    }
    clearTimeout(debounce);
    for (const w of watchers) w.close();
    log?.info({}, 'mutual agent stopped');
  })();
  return { wake, done };
}
