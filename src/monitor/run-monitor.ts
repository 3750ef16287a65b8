/**
 * One monitor cycle, what `mutual monitor once` runs and `mutual monitor run` repeats: scan,
 * alert (deduped against the state file), write the state and the metrics textfile, and say how
 * it went as an exit code.
 */
import type { InventoryQueries } from '../ca/store.ts';
import { readAlertState, writeAlertState } from './alert-state.ts';
import { createChannels, deliverAlerts, type AlertChannel, type DeliveryResult } from './deliver-alerts.ts';
import type { MonitorConfig } from './monitor-config.ts';
import { createMonitorMetrics, writeMetricsTextfile, type MonitorMetrics } from './monitor-metrics.ts';
import type { TlsProbeOptions, TlsProbeResult } from './probe-tls.ts';
import { runScan, type MonitorReport } from './run-scan.ts';

/** Exit codes of `mutual monitor once` and `mutual doctor` (beside the CLI's 0-4). */
export const MONITOR_EXIT = {
  HEALTHY: 0,
  /** Findings at warning, none critical. */
  WARNING: 5,
  /** At least one critical finding. */
  CRITICAL: 6,
  /** An alert could not be delivered (takes precedence: the monitor cannot tell anyone). */
  ALERT_FAILED: 7,
} as const;

/** Options of {@link runMonitorOnce}. */
export interface RunMonitorOnceOptions {
  now?: Date;
  /** Skip alerting (and leave the state file alone). */
  noAlerts?: boolean;
  /** Default: from the config's alerts section. */
  channels?: readonly AlertChannel[];
  /** Metrics to update (the daemon keeps one registry); default a fresh one. */
  metrics?: MonitorMetrics;
  /** Textfile to write (default: metrics.textfile of the config). */
  textfile?: string;
  store?: InventoryQueries;
  probe?: (o: TlsProbeOptions) => Promise<TlsProbeResult>;
  env?: NodeJS.ProcessEnv;
}

/** What one cycle did. */
export interface MonitorCycleResult {
  report: MonitorReport;
  deliveries: DeliveryResult[];
  exitCode: number;
}

/** The exit code for a report and its deliveries. */
export function monitorExitCode(report: MonitorReport, deliveries: readonly DeliveryResult[]): number {
  if (deliveries.some((d) => !d.ok)) return MONITOR_EXIT.ALERT_FAILED;
  if (report.counts.critical > 0) return MONITOR_EXIT.CRITICAL;
  if (report.counts.warning > 0) return MONITOR_EXIT.WARNING;
  return MONITOR_EXIT.HEALTHY;
}

/** Runs one cycle. Throws only for what stops the whole run (a bad state file). */
export async function runMonitorOnce(config: MonitorConfig, o: RunMonitorOnceOptions = {}): Promise<MonitorCycleResult> {
  const now = o.now ?? new Date();
  // The state is read first: a broken state file should stop the run before anything is sent.
  const state = o.noAlerts ? undefined : readAlertState(config.stateFile!);
  const report = await runScan(config, { now, store: o.store, probe: o.probe });
  let deliveries: DeliveryResult[] = [];
  if (state) {
    const channels = o.channels ?? createChannels(config.alerts, o.env);
    const d = await deliverAlerts({ findings: report.findings, counts: report.counts, alerts: config.alerts, channels, state, now });
    deliveries = d.results;
    writeAlertState(config.stateFile!, d.state);
  }
  const metrics = o.metrics ?? createMonitorMetrics();
  metrics.update(report, deliveries);
  const textfile = o.textfile ?? config.metrics.textfile;
  if (textfile) await writeMetricsTextfile(metrics, textfile);
  return { report, deliveries, exitCode: monitorExitCode(report, deliveries) };
}
