/**
 * One managed certificate's part of a cycle, up to its deployment: resume an interrupted
 * deployment, or decide what is needed ({@link decideRenewal}), obtain it ({@link obtainCertificate})
 * and stage it as a new generation, its journal written first so that a crash from there on is
 * resumed. Then, once its unit is deployed, the outcome is recorded here too (state, log, events).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import diagnostics from 'node:diagnostics_channel';
import type { CertificateInfo } from '../core/certificate.ts';
import { isMutualError } from '../core/errors.ts';
import { certificateState, writeState, type CertificateState, type LastResult } from './agent-state.ts';
import { asError, codeOf, type AgentContext, type CertificateOutcome, type Cycle } from './cycle-report.ts';
import type { CertChange } from './deploy.ts';
import { GENERATION_FILES, targetsOf, type GenerationMaterial, type GenerationStore, type Journal } from './generation-store.ts';
import type { CertificateSpec, Ownership } from './manifest.ts';
import { currentMaterial, freshToken, nameMismatch, obtainCertificate, type ObtainResult } from './obtain-certificate.ts';
import { obtainWithAcme, refreshRenewalInfo } from './obtain-acme.ts';
import { canResume, decideRenewal, expiryWarning, inBackoff, renewAt, type DecisionCertificate } from './renewal-decision.ts';
import { retryDelay } from './schedule.ts';
import { rootRotationReason } from './root-set.ts';
import type { CrlInfo } from './crl-check.ts';

/** Serial -> obtainedAt entries kept per certificate. */
export const MAX_OBTAINED_ENTRIES = 8;

const deployedChannel = diagnostics.channel('mutual:agent:deployed');
const failedChannel = diagnostics.channel('mutual:agent:failed');

/** The generation in place of a certificate. */
export interface Current {
  gen: string;
  certificatePem: string;
  keyPem: string;
  info: CertificateInfo;
}

/** The chain file of the generation in place ('' when unreadable). */
function readChain(store: GenerationStore, cur: Current): string {
  try {
    return fs.readFileSync(path.join(store.dir, cur.gen, GENERATION_FILES.chain), 'utf8');
  } catch {
    return '';
  }
}

/** The generation in place, or undefined (none yet, or unreadable). */
export function readCurrent(store: GenerationStore): Current | undefined {
  const gen = store.current();
  if (!gen || !store.has(gen)) return undefined;
  try {
    const r = store.read(gen);
    return { gen, certificatePem: r.certificatePem, keyPem: r.keyPem, info: r.info };
  } catch {
    return undefined;
  }
}

const issuerOf = (c: CertificateSpec): 'server' | 'client' => (c.profile === 'server' ? 'server' : 'client');

/** The cached CRL that says whether a certificate of `c` is revoked. */
const crlFor = (cx: Cycle, c: CertificateSpec, info: DecisionCertificate): CrlInfo | undefined => cx.cache.crlCovering(issuerOf(c), info.authorityKeyId);

/** Why the files in place differ from what agent.yaml asks (links, files, modes, owners), or undefined. */
function drifted(store: GenerationStore, gen: string, c: CertificateSpec): string | undefined {
  const targets = targetsOf(c.files);
  if (!store.linked(targets)) return 'a target is not linked to the managed files';
  const need: [string, Ownership][] = [
    [GENERATION_FILES.key, { ...c.ownership, mode: c.keyMode }],
    [GENERATION_FILES.cert, c.ownership], [GENERATION_FILES.chain, c.ownership], [GENERATION_FILES.fullchain, c.ownership],
  ];
  if (c.files.pkcs12) need.push([GENERATION_FILES.pkcs12, { ...c.ownership, mode: c.keyMode }]);
  for (const [file, o] of need) {
    const st = store.stat(gen, file);
    if (!st) return `${file} is missing`;
    if ((st.mode & 0o777) !== o.mode || (o.uid !== undefined && st.uid !== o.uid) || (o.gid !== undefined && st.gid !== o.gid)) return `${file} has other owner or mode than agent.yaml asks`;
  }
  return undefined;
}

/** The certificate's interrupted deployment when it can still go in place; an unusable one is dropped. */
function resumable(cx: Cycle, c: CertificateSpec, cs: CertificateState, store: GenerationStore, cur: Current | undefined): Journal | undefined {
  const journal = store.readJournal();
  if (!journal) return undefined;
  let usable = false;
  if (store.has(journal.to)) {
    try {
      const g = store.read(journal.to);
      const spki = crypto.createPublicKey(g.keyPem).export({ type: 'spki', format: 'der' });
      usable = canResume({ now: cx.now, info: g.info, keyMatches: spki.equals(g.info.spki), revokedSerial: cs.revokedSerial, crl: crlFor(cx, c, g.info) });
    } catch {
      usable = false;
    }
  }
  if (usable) return { ...journal, from: journal.from ?? (cur && cur.gen !== journal.to ? cur.gen : null) };
  // Never completed, expired or revoked meanwhile: dropped; what is needed now is decided by the caller.
  store.clearJournal();
  store.remove(journal.to);
  return undefined;
}

/**
 * Decides what a certificate needs and prepares it: a staged generation (journal first) to
 * deploy, or nothing. Failures before the deployment are recorded here.
 */
export async function planCertificate(ctx: AgentContext, cx: Cycle, c: CertificateSpec, root: string | undefined, rootError: unknown): Promise<{ out: CertificateOutcome; change?: CertChange }> {
  const m = ctx.manifest;
  const now = cx.now;
  const cs = certificateState(cx.state, c.name);
  const store = ctx.store(c.name);
  const out: CertificateOutcome = { name: c.name, action: 'none', ok: true };
  let cur: Current | undefined;
  try {
    store.sweep();
    cur = readCurrent(store);
    // An ACME certificate's renewal time comes from its server's renewal information when it gives some.
    if (cur && c.acme) await refreshRenewalInfo(ctx, { ...c, acme: c.acme }, cs, cur, now);
    if (cur) Object.assign(out, { serial: cur.info.serial, notAfter: cur.info.notAfter.toISOString(), renewAt: renewAt(cur.info, cs.obtained, m.renewal, cs.ari).toISOString() });
    const forced = cx.force.has(c.name);
    if (inBackoff({ now, nextAttemptAt: cs.nextAttemptAt, lastCode: cs.lastResult?.code, ignoreBackoff: cx.ignoreBackoff, forced, hasFreshToken: () => Boolean(freshToken(c, cs)) })) {
      Object.assign(out, { action: 'waiting', ok: true, code: cs.lastResult?.code, message: `retrying at ${cs.nextAttemptAt}` });
      return { out };
    }
    // 1. A deployment that was interrupted (crash) or failed (check/reload/verify) is resumed.
    const resume = resumable(cx, c, cs, store, cur);
    if (resume) return { out, change: { kind: 'cert', c, cs, store, journal: resume, serial: store.read(resume.to).info.serial, action: 'resumed', cur, out, hooks: c.hooks } };
    // 2. What is needed now.
    // A root rollover: a certificate under a root being retired moves to the new one now.
    const moveRoot = cur && !c.acme ? rootRotationReason(cx, readChain(store, cur), cs.obtained[cur.info.serial]) : undefined;
    const decision = decideRenewal({
      now, current: cur?.info, schedule: m.renewal, obtained: cs.obtained, ari: cs.ari, revokedSerial: cs.revokedSerial, crl: cur ? crlFor(cx, c, cur.info) : undefined, forced, moveRoot, drift: () => drifted(store, cur!.gen, c),
    });
    if (moveRoot && decision.need === 'renew') ctx.log.info({ name: c.name, serial: cur!.info.serial, why: moveRoot }, 'renewing now: a root rollover');
    if (decision.need === 'none') return { out };
    if (decision.need === 'enroll' && decision.revoked && cs.revokedSerial !== cur!.info.serial) {
      cs.revokedSerial = cur!.info.serial;
      ctx.log.warn({ name: c.name, serial: cur!.info.serial }, 'the CA revoked this certificate');
    }
    // 3. Nothing is asked of the CA for files that cannot be written (a token would be wasted).
    store.precheck(targetsOf(c.files));
    let material: GenerationMaterial;
    let action: CertificateOutcome['action'];
    let serial: string;
    if (decision.need === 'redeploy') {
      ctx.log.info({ name: c.name, why: decision.why }, 'redeploying the current certificate');
      material = currentMaterial(c, store, cur!);
      action = 'redeployed';
      serial = cur!.info.serial;
    } else {
      let got: ObtainResult;
      if (c.acme) got = await obtainWithAcme({ stateDir: m.stateDir, c: { ...c, acme: c.acme }, cs, cur, now: () => now });
      else if (!root || !m.ca) throw rootError;
      else got = await obtainCertificate({ caUrl: m.ca.url, root, c, cs, cur, need: decision.need, why: decision.why });
      ({ material, action } = got);
      serial = got.info.serial;
      const mismatch = nameMismatch(c, got.info);
      if (mismatch) {
        cx.warnings.push({ code: 'CONFIG_INVALID', message: mismatch });
        ctx.log.warn({ name: c.name }, mismatch);
      }
    }
    return { out, change: stage(ctx, cx, c, cs, store, material, serial, action, cur, out) };
  } catch (e) {
    recordFailure(ctx, cx, c, cs, out, e, cur);
    return { out };
  }
}

/** Writes the journal, then the new generation's files (not yet in place). */
function stage(ctx: AgentContext, cx: Cycle, c: CertificateSpec, cs: CertificateState, store: GenerationStore, material: GenerationMaterial, serial: string, action: CertificateOutcome['action'], cur: Current | undefined, out: CertificateOutcome): CertChange {
  const now = cx.now;
  // When it was obtained is saved before the deployment, so a crash does not lose it.
  cs.obtained = Object.fromEntries([...Object.entries(cs.obtained), [serial, cs.obtained[serial] ?? now.toISOString()]].slice(-MAX_OBTAINED_ENTRIES));
  writeState(ctx.manifest.stateDir, cx.state);
  // The journal names the generation before it is written: a crash from here on is resumed.
  const gen = store.newName(serial, now);
  const j: Journal = { from: store.current() ?? null, to: gen, startedAt: now.toISOString(), attempts: 0 };
  store.writeJournal(j);
  ctx.onStep(c.name, 'journal-written');
  store.stage(gen, material, c.ownership, c.keyMode);
  return { kind: 'cert', c, cs, store, journal: j, serial, action, cur, out, hooks: c.hooks };
}

/** Records a certificate's failure: backoff, state, outcome, log, event, and the expiry warning when close. */
export function recordFailure(ctx: AgentContext, cx: Cycle, c: CertificateSpec, cs: CertificateState, out: CertificateOutcome, e: unknown, cur: Current | undefined): void {
  const now = cx.now;
  const r = ctx.manifest.renewal;
  cs.failures++;
  cs.nextAttemptAt = new Date(now.getTime() + retryDelay(cs.failures, r.retryInitialMs, r.retryMaxMs, ctx.random)).toISOString();
  cs.lastResult = { ok: false, at: now.toISOString(), action: 'failed', code: codeOf(e), message: asError(e).message };
  cx.errors.push(e);
  Object.assign(out, { action: 'failed', ok: false, code: codeOf(e), message: asError(e).message });
  ctx.log.error({ name: c.name, code: codeOf(e), err: asError(e).message, hint: isMutualError(e) ? e.hint : undefined, retryAt: cs.nextAttemptAt }, 'certificate not renewed; the files in place are kept');
  if (failedChannel.hasSubscribers) failedChannel.publish({ name: c.name, code: codeOf(e) });
  const message = cur && expiryWarning(c.name, cur.info, now, r.warnFraction);
  if (message) {
    cx.warnings.push({ code: 'AGENT_CERT_EXPIRING', message });
    ctx.log.warn({ code: 'AGENT_CERT_EXPIRING', name: c.name, serial: cur!.info.serial, notAfter: cur!.info.notAfter.toISOString() }, message);
  }
}

/** Commits a deployed certificate (journal cleared, old generations pruned) and records its success. */
export function commitCertificate(ctx: AgentContext, cx: Cycle, ch: CertChange): void {
  ch.store.clearJournal();
  ctx.onStep(ch.c.name, 'committed');
  ch.store.prune([ch.journal.to, ch.journal.from]);
  const { c, cs, action, serial } = ch;
  const previous = ch.cur?.info.serial;
  const cur = readCurrent(ctx.store(c.name))!;
  cs.failures = 0;
  cs.nextAttemptAt = undefined;
  cs.lastSuccessAt = cx.now.toISOString();
  cs.lastResult = { ok: true, at: cx.now.toISOString(), action, serial } satisfies LastResult;
  if (cs.revokedSerial && cs.revokedSerial !== serial) cs.revokedSerial = undefined;
  ctx.log.info({ name: c.name, action, serial, previous, notAfter: cur.info.notAfter.toISOString() }, `certificate ${action}`);
  if (deployedChannel.hasSubscribers) deployedChannel.publish({ name: c.name, action, serial, previous });
  Object.assign(ch.out, { ...ch.out, action, ok: true, serial, previousSerial: previous, notAfter: cur.info.notAfter.toISOString(), renewAt: renewAt(cur.info, cs.obtained, ctx.manifest.renewal, cs.ari).toISOString(), code: undefined, message: undefined });
}
