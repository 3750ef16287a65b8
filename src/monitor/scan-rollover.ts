/**
 * A root rollover as the monitor sees it (issue 17): the CA's roots and which is retiring, read
 * from its /roots.json or, monitoring locally, from the CA home (the same document, made by the
 * CA's own reader of `ca/roots.pem` and `ca/rotation.json`); and the findings that follow from it:
 * - `root-retiring-served`: an endpoint whose chain reaches only a retiring root (its leaf has not
 *   moved to the new root; relying parties that drop the old root will refuse it);
 * - `bundle-missing-root`: a trust bundle file (one holding a root of the CA) that lacks the
 *   current root while the rollover is in overlap (the relying party would refuse the new leaves);
 * - `root-retiring`: the retiring root's retire-at is near (warning), or past while leaves seen
 *   in this scan still chain to it (`root-retired-in-use`, critical).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { homeLayout } from '../ca/home.ts';
import { createFetchBytes } from '../sdk/index.ts';
import { MutualError, isMutualError } from '../core/errors.ts';
import { parseDuration } from '../core/duration.ts';
import { humanDuration, makeFinding, type Finding } from './finding.ts';
import type { MonitorConfig } from './monitor-config.ts';

/** Largest /roots.json read. */
export const MAX_ROOTS_DOCUMENT_BYTES = 256 * 1024;
/** Most roots read from a rollover (a rollover has two). */
export const MAX_ROLLOVER_ROOTS = 8;
/** A retiring root's retire-at this close is a warning. */
export const RETIRE_WARN_DAYS = 14;

/** One root of the CA. */
export interface RolloverRoot {
  fingerprint: string;
  cert: crypto.X509Certificate;
  retiring: boolean;
  retireAt?: Date;
}

/** The CA's roots and the state of its rollover. */
export interface RolloverView {
  /** Where it was read: `ca` (the home) or the URL. */
  source: string;
  phase: 'none' | 'overlap' | 'retired';
  /** Fingerprint of the root new intermediates chain to. */
  current?: string;
  roots: RolloverRoot[];
}

const fp = (x: crypto.X509Certificate): string => crypto.createHash('sha256').update(x.raw).digest('hex');
const date = (v: unknown): Date | undefined => (typeof v === 'string' && !Number.isNaN(Date.parse(v)) ? new Date(v) : undefined);
const phaseOf = (v: unknown): RolloverView['phase'] => (v === 'overlap' || v === 'retired' ? v : 'none');

interface RootsDocument {
  current?: unknown;
  roots?: { pem?: unknown; status?: unknown; retireAt?: unknown }[];
  rotation?: { phase?: unknown };
}

/** The view of a /roots.json document (the contract of issue 17), from the CA or its home. */
function viewOf(doc: RootsDocument, source: string): RolloverView {
  if (!Array.isArray(doc.roots)) throw new MutualError('MONITOR_SOURCE_UNREADABLE', { detail: `${source}: no roots` });
  const roots = doc.roots.slice(0, MAX_ROLLOVER_ROOTS).map((e): RolloverRoot => {
    const cert = new crypto.X509Certificate(String(e.pem));
    const retireAt = date(e.retireAt);
    return { fingerprint: fp(cert), cert, retiring: e.status === 'retiring', ...(retireAt ? { retireAt } : {}) };
  });
  return { source, phase: phaseOf(doc.rotation?.phase), ...(typeof doc.current === 'string' ? { current: doc.current } : {}), roots };
}

/**
 * Reads the rollover from a CA home: the document `mutual serve` answers /roots.json with, made
 * by the CA's own reader of `ca/roots.pem` and `ca/rotation.json` (a CA from before rollovers:
 * its one root).
 */
export async function readRolloverFromHome(home: string): Promise<RolloverView> {
  // Loaded only when a rollover is judged from a home: the CA's index is heavy for a light scan.
  const { rootsDocument } = await import('../ca/index.ts');
  return viewOf(rootsDocument(homeLayout(home)) as RootsDocument, 'ca');
}

/** Reads the rollover from the CA's /roots.json (`caUrl` its base URL; `ca` the trust for https). */
export async function fetchRollover(caUrl: string, o: { ca?: string; timeoutMs: number }): Promise<RolloverView> {
  const url = `${caUrl.replace(/\/+$/, '')}/roots.json`;
  const r = await createFetchBytes({ ca: o.ca, timeoutMs: o.timeoutMs })(url, { maxBytes: MAX_ROOTS_DOCUMENT_BYTES });
  if (r.status !== 200) throw new MutualError('MONITOR_SOURCE_UNREADABLE', { detail: `${url}: HTTP ${r.status}` });
  let doc: RootsDocument;
  try {
    doc = JSON.parse(r.body.toString('utf8')) as RootsDocument;
  } catch {
    throw new MutualError('MONITOR_SOURCE_UNREADABLE', { detail: `${url}: not JSON` });
  }
  return viewOf(doc, url);
}

/** The roots of `view` that one of `chain` (DER, leaf first) was issued and signed by. */
export function rootsReached(view: RolloverView, chain: readonly Buffer[]): RolloverRoot[] {
  const certs = chain.map((d) => new crypto.X509Certificate(d));
  return view.roots.filter((r) => certs.some((c) => !c.raw.equals(r.cert.raw) && c.checkIssued(r.cert) && c.verify(r.cert.publicKey)));
}

/** What a scan saw that a rollover judges. */
export interface RolloverInput {
  view: RolloverView;
  now: Date;
  /** Served chains (leaf first) by endpoint address. */
  endpoints: readonly { address: string; chain: readonly Buffer[] }[];
  /** Certificate files: each file's certificates (DER), in file order. */
  files: readonly { file: string; ders: readonly Buffer[] }[];
}

/** The rollover findings of a scan. */
export function rolloverFindings(o: RolloverInput): Finding[] {
  const v = o.view;
  const out: Finding[] = [];
  const fingerprints = new Set(v.roots.map((r) => r.fingerprint));
  /** Fingerprint of a retiring root -> what was seen under it. */
  const under = new Map<string, string[]>();
  const judgeChain = (where: string, chain: readonly Buffer[]): RolloverRoot | undefined => {
    if (chain.length < 2) return undefined;
    const reached = rootsReached(v, chain);
    if (reached.length === 0 || !reached.every((r) => r.retiring)) return undefined;
    for (const r of reached) under.set(r.fingerprint, [...(under.get(r.fingerprint) ?? []), where]);
    return reached[0];
  };
  for (const e of o.endpoints) {
    const r = judgeChain(`endpoint:${e.address}`, e.chain);
    if (!r) continue;
    out.push(makeFinding({
      kind: 'root-retiring-served', severity: 'warning', code: 'MONITOR_ROOT_RETIRING', source: `endpoint:${e.address}`, subject: e.address,
      message: `${e.address} serves a chain that leads only to the root ${r.fingerprint.slice(0, 16)}.., which the CA is retiring${r.retireAt ? ` at ${r.retireAt.toISOString()}` : ''}`,
      fix: 'Renew the certificate (`mutual agent` does at once during the overlap) and serve the new fullchain.pem, which leads to the new root.',
    }));
  }
  for (const f of o.files) {
    const roots = f.ders.map((d) => fp(new crypto.X509Certificate(d)));
    const isBundle = roots.some((x) => fingerprints.has(x));
    if (isBundle && v.phase === 'overlap' && v.current && !roots.includes(v.current)) {
      out.push(makeFinding({
        kind: 'bundle-missing-root', severity: 'critical', code: 'MONITOR_BUNDLE_MISSING_ROOT', source: `file:${f.file}`, subject: f.file,
        message: `${f.file} trusts a root of the CA but not its current root ${v.current.slice(0, 16)}..; certificates issued from now on will be refused by what reads it`,
        fix: `Add the current root (the CA serves its trust bundle as roots.pem), or let \`mutual agent\` render this file with include: [root].`,
      }));
    } else if (!isBundle && f.ders.length >= 2) {
      judgeChain(`file:${f.file}`, f.ders);
    }
  }
  const t = o.now.getTime();
  for (const r of v.roots) {
    if (!r.retiring || !r.retireAt) continue;
    const left = r.retireAt.getTime() - t;
    const seen = under.get(r.fingerprint) ?? [];
    const subject = `root ${r.fingerprint.slice(0, 16)}..`;
    if (left <= 0 && seen.length > 0) {
      out.push(makeFinding({
        kind: 'root-retired-in-use', severity: 'critical', code: 'MONITOR_ROOT_RETIRED_IN_USE', source: v.source, subject, key: `${v.source}|${r.fingerprint}`,
        message: `The root ${r.fingerprint.slice(0, 16)}.. was to retire ${humanDuration(left)} ago, and ${seen.length} certificate(s) still chain to it (${seen.slice(0, 3).join(', ')}${seen.length > 3 ? ', ...' : ''})`,
      }));
    } else if (left > 0 && left <= RETIRE_WARN_DAYS * 86_400_000) {
      out.push(makeFinding({
        kind: 'root-retiring', severity: 'warning', code: 'MONITOR_ROOT_RETIRING', source: v.source, subject, key: `${v.source}|${r.fingerprint}`,
        message: `The root ${r.fingerprint.slice(0, 16)}.. retires in ${humanDuration(left)} (${r.retireAt.toISOString()})${seen.length ? `; ${seen.length} certificate(s) seen still chain to it` : ''}`,
      }));
    }
  }
  return out;
}

/**
 * The rollover to judge this scan by: sources.roots' /roots.json, else the CA home's roots.pem;
 * undefined when neither is there. A source that cannot be read is a finding.
 */
export async function loadRollover(config: MonitorConfig, findings: Finding[]): Promise<RolloverView | undefined> {
  const src = config.sources.roots;
  const home = config.sources.inventory?.home;
  try {
    if (src) return await fetchRollover(src.url, { ca: src.ca ? fs.readFileSync(src.ca, 'utf8') : undefined, timeoutMs: parseDuration(src.timeout) });
    return home ? await readRolloverFromHome(home) : undefined;
  } catch (e) {
    const where = src?.url ?? `the CA home ${home}`;
    findings.push(makeFinding({ kind: 'unreadable', severity: 'warning', code: isMutualError(e) ? e.code : 'MONITOR_SOURCE_UNREADABLE', source: 'roots', subject: where,
      message: `The CA's roots could not be read from ${where}: ${(e as Error).message}`, key: `roots:${where}` }));
    return undefined;
  }
}
