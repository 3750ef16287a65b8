/**
 * `mutual monitor run`: the cycle of run-monitor.ts on a schedule, one at a time (a slow scan
 * delays the next instead of overlapping it), with /metrics served between scans.
 */
import { parseDuration } from '../core/duration.ts';
import { splitAddress, type MonitorConfig } from './monitor-config.ts';
import { createMonitorMetrics, serveMetrics, writeMetricsTextfile } from './monitor-metrics.ts';
import { runMonitorOnce, type MonitorCycleResult, type RunMonitorOnceOptions } from './run-monitor.ts';

/** Options of {@link startMonitorDaemon}. */
export interface MonitorDaemonOptions extends Omit<RunMonitorOnceOptions, 'metrics' | 'now'> {
  /** host:port for /metrics (default: metrics.listen of the config; none: not served). */
  metricsListen?: string;
  /** Interval in ms (default: schedule.every of the config). */
  everyMs?: number;
  /** Clock (tests freeze it). */
  now?: () => Date;
  /** Called after each cycle (logging). */
  onCycle?: (r: MonitorCycleResult) => void;
  /** Called when a cycle fails as a whole (e.g. a broken state file); the schedule goes on. */
  onError?: (e: unknown) => void;
}

/** A running daemon. */
export interface MonitorDaemon {
  /** The /metrics URL, when served. */
  metricsUrl?: string;
  /** Resolves after the first cycle. */
  firstCycle: Promise<void>;
  /** Stops the schedule, waits for a running cycle, closes the metrics server. */
  close(): Promise<void>;
}

/** Starts the schedule: a first cycle at once, then one every `everyMs` after the previous one ends. */
export async function startMonitorDaemon(config: MonitorConfig, o: MonitorDaemonOptions = {}): Promise<MonitorDaemon> {
  const metrics = createMonitorMetrics();
  const every = o.everyMs ?? parseDuration(config.schedule.every);
  const listen = o.metricsListen ?? config.metrics.listen;
  const served = listen ? await serveMetrics(metrics, splitAddress(listen, true).host, splitAddress(listen, true).port) : undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const cycle = async (): Promise<void> => {
    try {
      const r = await runMonitorOnce(config, { ...o, now: o.now?.(), metrics });
      o.onCycle?.(r);
    } catch (e) {
      metrics.scanFailed();
      const textfile = o.textfile ?? config.metrics.textfile;
      if (textfile) await writeMetricsTextfile(metrics, textfile).catch(() => {});
      o.onError?.(e);
    }
  };
  const loop = (): void => {
    if (stopped) return;
    running = cycle().finally(() => {
      if (!stopped) timer = setTimeout(loop, every);
    });
  };
  loop();
  const firstCycle = running;
  return {
    metricsUrl: served?.url,
    firstCycle,
    async close() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
      await served?.close();
    },
  };
}
