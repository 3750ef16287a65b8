/**
 * The monitor report for people (a table that fits a terminal) and for programs (`--json`).
 */
import { humanDuration, type Finding } from './finding.ts';
import type { MonitorReport } from './run-scan.ts';

/** Widest a SUBJECT cell is shown. */
export const MAX_SUBJECT_WIDTH = 48;

const cut = (s: string, n: number) => (s.length > n ? s.slice(0, n - 1) + '~' : s);

function when(f: Finding, now: Date): string {
  if (!f.notAfter) return '';
  const left = f.notAfter.getTime() - now.getTime();
  return left <= 0 ? `${humanDuration(-left)} ago` : `in ${humanDuration(left)}`;
}

/** A readable table of the findings, a summary line, and each distinct fix. */
export function formatReport(r: MonitorReport): string {
  const out: string[] = [];
  const inv = r.inventory ? `, ${r.inventory.total.toLocaleString('en')} certificates in the inventory (${(r.inventory.scanMs / 1000).toFixed(2)} s)` : '';
  out.push(`mutual monitor ${r.startedAt.toISOString()}: scanned in ${(r.durationMs / 1000).toFixed(2)} s${inv}, ${r.files} files, ${r.endpoints.length} endpoints (${r.endpoints.filter((e) => e.up).length} up), ${r.crls.length} CRLs`);
  if (r.findings.length === 0) {
    out.push('Healthy: nothing expires within the thresholds and nothing is broken.');
    return out.join('\n') + '\n';
  }
  out.push(`${r.counts.critical} critical, ${r.counts.warning} warning`);
  out.push('');
  const rows = r.findings.map((f) => [f.severity.toUpperCase(), f.kind, cut(f.subject, MAX_SUBJECT_WIDTH), when(f, r.startedAt), f.source]);
  const head = ['SEVERITY', 'KIND', 'SUBJECT', 'WHEN', 'SOURCE'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const fmt = (row: string[]) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  out.push(fmt(head));
  for (const row of rows) out.push(fmt(row));
  out.push('');
  out.push('Details and fixes:');
  for (const f of r.findings) {
    out.push(`  - [${f.code}] ${f.message}`);
    out.push(`    fix: ${f.fix}`);
  }
  return out.join('\n') + '\n';
}

/** The report as JSON-ready data. */
export function reportJson(r: MonitorReport, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    startedAt: r.startedAt.toISOString(), durationMs: Math.round(r.durationMs), counts: r.counts, inventory: r.inventory, files: r.files,
    findings: r.findings.map((f) => ({ ...f, notAfter: f.notAfter?.toISOString() })),
    certificates: r.certificates.map((c) => ({ ...c, notAfter: c.notAfter.toISOString() })),
    crls: r.crls.map((c) => ({ ...c, thisUpdate: c.thisUpdate.toISOString(), nextUpdate: c.nextUpdate?.toISOString() })),
    endpoints: r.endpoints, ...extra,
  };
}
