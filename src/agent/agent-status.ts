/**
 * `mutual agent status`: what the agent manages, the expiry and renewal time of each certificate,
 * the last result, pending deployments, and the trust files. Read from disk only: no lock, no CA.
 */
import fs from 'node:fs';
import path from 'node:path';
import { readState, type LastResult } from './agent-state.ts';
import { GenerationStore, targetsOf } from './generation-store.ts';
import type { AgentManifest } from './manifest.ts';
import { renewAt as renewalPoint } from './renewal-decision.ts';
import { TrustCache } from './trust-cache.ts';
import { discoverTemplates } from './deploy-templates.ts';

/** How a certificate stands. */
export type CertificateHealth = 'ok' | 'due' | 'expiring' | 'expired' | 'missing' | 'failing' | 'revoked' | 'pending';

/** One certificate in the status. */
export interface CertificateStatus {
  name: string;
  profile: 'server' | 'client';
  names: string[];
  health: CertificateHealth;
  serial?: string;
  notBefore?: string;
  notAfter?: string;
  renewAt?: string;
  secondsLeft?: number;
  failures: number;
  nextAttemptAt?: string;
  lastResult?: LastResult;
  /** An interrupted or failed deployment the next run resumes. */
  pending?: { generation: string; attempts: number; lastError?: string };
  files: { path: string; linked: boolean }[];
}

/** The whole status. */
export interface AgentStatus {
  manifest: string;
  stateDir: string;
  lastCycle?: { at: string; exitCode: number; summary: string };
  certificates: CertificateStatus[];
  trust: {
    lastFetchAt?: string;
    lastResult?: LastResult;
    failures: number;
    crls: { issuer: string; thisUpdate: string; nextUpdate?: string; entries: number }[];
    files: { path: string; present: boolean }[];
  };
  templates: { file: string; target?: string; lastResult?: LastResult; error?: string }[];
}

/** Reads the status. */
export function agentStatus(m: AgentManifest, now: Date = new Date()): AgentStatus {
  const s = readState(m.stateDir);
  const cache = new TrustCache(m.stateDir);
  const certificates = m.certificates.map((c): CertificateStatus => {
    const store = new GenerationStore(path.join(m.stateDir, 'live'), c.name);
    const cs = s.certificates[c.name];
    const targets = targetsOf(c.files);
    const out: CertificateStatus = {
      name: c.name, profile: c.profile, names: [...c.names.dns, ...c.names.ip, ...c.names.uri], health: 'missing', failures: cs?.failures ?? 0,
      nextAttemptAt: cs?.nextAttemptAt, lastResult: cs?.lastResult,
      files: targets.map((t) => ({ path: t.path, linked: (() => {
        try {
          return fs.readlinkSync(t.path) === store.linkTarget(t.file);
        } catch {
          return false;
        }
      })() })),
    };
    const j = store.readJournal();
    if (j) out.pending = { generation: j.to, attempts: j.attempts, lastError: j.lastError };
    const gen = store.current();
    if (gen && store.has(gen)) {
      try {
        const { info } = store.read(gen);
        const renewAt = renewalPoint(info, cs?.obtained ?? {}, m.renewal, cs?.ari);
        const left = info.notAfter.getTime() - now.getTime();
        const life = info.notAfter.getTime() - info.notBefore.getTime();
        Object.assign(out, { serial: info.serial, notBefore: info.notBefore.toISOString(), notAfter: info.notAfter.toISOString(), renewAt: renewAt.toISOString(), secondsLeft: Math.floor(left / 1000) });
        const crl = cache.crlCovering(c.profile === 'server' ? 'server' : 'client', info.authorityKeyId);
        if (cs?.revokedSerial === info.serial || crl?.revoked.has(info.serial)) out.health = 'revoked';
        else if (left <= 0) out.health = 'expired';
        else if (left < life * m.renewal.warnFraction) out.health = 'expiring';
        else if (out.pending) out.health = 'pending';
        else if (cs?.lastResult?.ok === false) out.health = 'failing';
        else if (now >= renewAt) out.health = 'due';
        else out.health = 'ok';
      } catch {
        out.health = 'missing';
      }
    }
    return out;
  });
  const trustFiles = [...m.trust.bundles.map((b) => b.path), ...m.trust.crls.map((c) => c.path)];
  const tpl = m.templatesDir ? discoverTemplates(m.templatesDir) : { templates: [], errors: [] };
  return {
    manifest: m.file, stateDir: m.stateDir, lastCycle: s.lastCycle, certificates,
    trust: {
      lastFetchAt: s.trust.lastFetchAt, lastResult: s.trust.lastResult, failures: s.trust.failures,
      crls: Object.entries(s.trust.crls).map(([issuer, c]) => ({ issuer, ...c })),
      files: trustFiles.map((p) => ({ path: p, present: fs.existsSync(p) })),
    },
    templates: [
      ...tpl.templates.map((t) => ({ file: t.file, target: t.target, lastResult: s.templates[t.file] })),
      ...tpl.errors.map((e) => ({ file: String(e.fields.detail ?? '').split(':')[0], error: e.message })),
    ],
  };
}

const ago = (iso: string | undefined, now: Date): string => {
  if (!iso) return '-';
  const d = Math.round((Date.parse(iso) - now.getTime()) / 1000);
  const a = Math.abs(d);
  const t = a < 120 ? `${a}s` : a < 7200 ? `${Math.round(a / 60)}m` : a < 172_800 ? `${Math.round(a / 3600)}h` : `${Math.round(a / 86_400)}d`;
  return d > 0 ? `in ${t}` : a === 0 ? 'now' : `${t} ago`;
};

/** The status as text for a terminal. */
export function formatStatus(s: AgentStatus, now: Date = new Date()): string {
  const out: string[] = [`mutual agent: ${s.manifest} (state ${s.stateDir})`];
  out.push(s.lastCycle ? `last run ${s.lastCycle.at} (${ago(s.lastCycle.at, now)}): exit ${s.lastCycle.exitCode}, ${s.lastCycle.summary}` : 'never run');
  out.push('', 'CERTIFICATE          HEALTH    SERIAL            EXPIRES               RENEWS           LAST RESULT');
  for (const c of s.certificates) {
    const last = c.lastResult ? (c.lastResult.ok ? `${c.lastResult.action}, ${ago(c.lastResult.at, now)}` : `${c.lastResult.code}, ${ago(c.lastResult.at, now)}${c.nextAttemptAt ? `, retry ${ago(c.nextAttemptAt, now)}` : ''}`) : '-';
    out.push(`${c.name.padEnd(20)} ${c.health.padEnd(9)} ${(c.serial ?? '-').slice(0, 16).padEnd(17)} ${(c.notAfter ? `${c.notAfter.slice(0, 19)}Z` : '-').padEnd(21)} ${ago(c.renewAt, now).padEnd(16)} ${last}`);
    if (c.pending) out.push(`${''.padEnd(21)}pending deployment of ${c.pending.generation} (${c.pending.attempts} attempt(s))${c.pending.lastError ? `: ${c.pending.lastError}` : ''}`);
    for (const f of c.files) if (!f.linked) out.push(`${''.padEnd(21)}not in place: ${f.path}`);
  }
  out.push('', `trust: last refresh ${s.trust.lastFetchAt ?? 'never'}${s.trust.lastResult && !s.trust.lastResult.ok ? ` (failing: ${s.trust.lastResult.code}, ${s.trust.failures} time(s))` : ''}`);
  for (const c of s.trust.crls) out.push(`  CRL ${c.issuer.padEnd(7)} ${c.entries} entries, next update ${c.nextUpdate ?? '-'} (${ago(c.nextUpdate, now)})`);
  for (const f of s.trust.files) out.push(`  ${f.present ? 'ok     ' : 'MISSING'} ${f.path}`);
  if (s.templates.length) {
    out.push('', 'deployment files:');
    for (const t of s.templates) out.push(`  ${t.error ? `INVALID ${t.error}` : `${t.file} -> ${t.target}: ${t.lastResult ? (t.lastResult.ok ? t.lastResult.action : `${t.lastResult.code}`) : 'not run yet'}`}`);
  }
  return out.join('\n') + '\n';
}
