/**
 * Alert dedupe: per channel, the level last alerted for each finding, kept in a JSON state file
 * written atomically. A finding is alerted again only when it reaches a worse level (30d -> 14d ->
 * 7d -> 1d -> expired); when it goes away it is forgotten, so a relapse is alerted afresh. A
 * channel that failed keeps its old state, so the next run retries exactly what was not delivered.
 */
import fs from 'node:fs';
import { MutualError } from '../core/errors.ts';
import { writeFileAtomic } from '../io/index.ts';
import { levelRank, severityRank, type Finding, type Severity } from './finding.ts';

/** Largest state file read. */
export const MAX_STATE_BYTES = 64 * 1024 * 1024;

/** What was alerted for one finding on one channel. */
export interface SentEntry {
  level: string;
  severity: Severity;
  /** ISO time of the alert. */
  at: string;
  /** For "resolved" notices: what it was about. */
  subject: string;
  kind: string;
}

/** The state file. */
export interface AlertState {
  version: 1;
  /** channel -> finding id -> what was sent. */
  channels: Record<string, Record<string, SentEntry>>;
  /** UTC day (YYYY-MM-DD) of the last digest sent. */
  lastDigest?: string;
}

/** A fresh state. */
export const emptyAlertState = (): AlertState => ({ version: 1, channels: {} });

/** Reads the state file; a missing file is an empty state. Throws MONITOR_STATE_INVALID. */
export function readAlertState(file: string): AlertState {
  let text: string;
  try {
    const st = fs.statSync(file);
    if (st.size > MAX_STATE_BYTES) throw new MutualError('MONITOR_STATE_INVALID', { detail: `${file} is larger than ${MAX_STATE_BYTES} bytes` });
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return emptyAlertState();
    if (e instanceof MutualError) throw e;
    throw new MutualError('MONITOR_STATE_INVALID', { detail: `${file}: ${(e as Error).message}` }, { cause: e });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new MutualError('MONITOR_STATE_INVALID', { detail: `${file}: ${(e as Error).message}` }, { cause: e });
  }
  const s = raw as AlertState;
  if (!s || s.version !== 1 || typeof s.channels !== 'object' || s.channels === null) throw new MutualError('MONITOR_STATE_INVALID', { detail: `${file}: not a version 1 monitor state` });
  return s;
}

/** Writes the state file atomically (0600: it names every certificate in trouble). */
export function writeAlertState(file: string, state: AlertState): void {
  writeFileAtomic(file, JSON.stringify(state, null, 1) + '\n', { mode: 0o600 });
}

/** What a channel should be told now. */
export interface ChannelPlan {
  /** New findings, and findings that reached a worse level. */
  alert: Finding[];
  /** Findings alerted before that are gone. */
  resolved: (SentEntry & { id: string })[];
}

/** Plans one channel's alerts from the current findings and what it was sent before. */
export function planChannel(findings: readonly Finding[], sent: Record<string, SentEntry> | undefined, minSeverity: Severity): ChannelPlan {
  const prev = sent ?? {};
  const alert: Finding[] = [];
  const current = new Set<string>();
  for (const f of findings) {
    if (severityRank(f.severity) < severityRank(minSeverity)) continue;
    current.add(f.id);
    const p = prev[f.id];
    if (!p || levelRank(f.level) > levelRank(p.level) || severityRank(f.severity) > severityRank(p.severity)) alert.push(f);
  }
  const resolved = Object.entries(prev).filter(([id]) => !current.has(id)).map(([id, e]) => ({ id, ...e }));
  return { alert, resolved };
}

/** The channel's state after a successful delivery of `plan`: sent findings recorded, resolved ones forgotten. */
export function applyPlan(sent: Record<string, SentEntry> | undefined, plan: ChannelPlan, now: Date): Record<string, SentEntry> {
  const next: Record<string, SentEntry> = { ...(sent ?? {}) };
  for (const r of plan.resolved) delete next[r.id];
  for (const f of plan.alert) next[f.id] = { level: f.level, severity: f.severity, at: now.toISOString(), subject: f.subject, kind: f.kind };
  return next;
}
