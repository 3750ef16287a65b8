/**
 * Child of bench/monitor.ts: one inventory expiry scan in a fresh process, as `mutual monitor`
 * runs it (scanInventory over the SQLite store). Prints one JSON line: rows, findings, the scan's
 * own time, the whole process's time and its peak RSS.
 *
 *   node bench/monitor-scan.ts DB NOW_EPOCH_MS
 */
import { openSqliteStore } from '../src/store/sqlite-store.ts';
import { scanInventory } from '../src/monitor/scan-inventory.ts';

const [db, nowMs] = process.argv.slice(2);
const store = openSqliteStore({ path: db });
const r = await scanInventory({ store, now: new Date(Number(nowMs)), thresholdsDays: [30, 14, 7, 1], criticalDays: 7, expiredLookbackDays: 30, maxSeries: 10_000 });
await store.close();
const bySeverity = { warning: 0, critical: 0 };
for (const f of r.findings) if (f.severity !== 'info') bySeverity[f.severity]++;
process.stdout.write(JSON.stringify({
  total: r.stats.total, unexpired: r.stats.unexpired, findings: r.findings.length, ...bySeverity,
  scanMs: r.stats.scanMs, processMs: process.uptime() * 1000, maxRssMB: process.resourceUsage().maxRSS / 1024,
}) + '\n');
