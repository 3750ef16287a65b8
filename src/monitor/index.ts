/**
 * The monitor: scans (inventory, files, endpoints, CRLs, the CA), alerts, metrics, and the doctor.
 */
export { runScan, type MonitorReport, type RunScanOptions } from './run-scan.ts';
export { runMonitorOnce, monitorExitCode, MONITOR_EXIT, type MonitorCycleResult, type RunMonitorOnceOptions } from './run-monitor.ts';
export { startMonitorDaemon, type MonitorDaemon, type MonitorDaemonOptions } from './monitor-daemon.ts';
export { readMonitorConfig, validateMonitorConfig, MonitorConfigSchema, type MonitorConfig } from './monitor-config.ts';
export { diagnoseConnection, formatDoctorReport, type DoctorOptions, type DoctorReport } from './doctor.ts';
export { probeTls, type TlsProbeOptions, type TlsProbeResult } from './probe-tls.ts';
export { analyzeChain, type ChainAnalysis } from './analyze-chain.ts';
export { createMonitorMetrics, serveMetrics, writeMetricsTextfile, type MonitorMetrics } from './monitor-metrics.ts';
export { formatReport, reportJson } from './format-report.ts';
export { FINDING_KINDS, SEVERITIES, type Finding, type FindingKind, type Severity } from './finding.ts';
export { splitAddress } from './monitor-config.ts';
export { readBundle } from './run-scan.ts';
export { crlFromFile, crlFromUrl } from './scan-crls.ts';
