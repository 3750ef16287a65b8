/**
 * `mutual agent`: keeps a host's certificates, keys, trust bundles and CRLs fresh on disk and
 * reloads the services that use them.
 *
 * One {@link Agent.cycle} does what is due, under the state folder's lock: refresh the CA
 * certificates and CRLs ({@link refreshTrust}), then for each certificate resume an interrupted
 * deployment, or enroll (token), renew (mTLS, at a fraction of the lifetime with jitter, at once
 * when the CA's CRL lists it), or repair drifted links ({@link planCertificate}, deciding with
 * {@link decideRenewal}), then render the watched folder's deployment files
 * ({@link templateChanges}). Everything that changed is deployed in units ({@link deployUnit}) and
 * the outcome recorded. `once` runs one cycle; the daemon runs cycles when something is due, with
 * exponential backoff after failures.
 *
 * The `Agent` is the coordinator: it owns the options and the lock, and wires the parts together.
 */
import path from 'node:path';
import { MutualError } from '../core/errors.ts';
import { acquireLock, readState, writeState, DEFAULT_LOCK_WAIT_MS } from './agent-state.ts';
import { asError, codeOf, type AgentContext, type AgentLogger, type CertificateOutcome, type Cycle, type CycleOptions, type CycleReport } from './cycle-report.ts';
import { deployUnit, unitsOf, type Change } from './deploy.ts';
import { exitCodeFor } from './exit-codes.ts';
import { GenerationStore, type DeployStep } from './generation-store.ts';
import type { AgentManifest } from './manifest.ts';
import { renderMetrics } from './metrics-file.ts';
import { writeOwnedFile } from './owned-file.ts';
import { commitCertificate, planCertificate, readCurrent, recordFailure } from './plan-certificate.ts';
import { renewAt } from './renewal-decision.ts';
import { templateChanges, recordTemplateResult, type Planned } from './template-changes.ts';
import { pinnedRoot, recordTrustFailure, refreshTrust, trustChanges, trustDueAt } from './trust-refresh.ts';
import { TrustCache } from './trust-cache.ts';
import { trustedRoots } from './root-set.ts';

export type { AgentLogger, CycleOptions, CycleReport, CertificateOutcome, TrustOutcome, TemplateOutcome } from './cycle-report.ts';

/** Longest the daemon sleeps between cycles, so manual changes on disk are noticed. */
export const MAX_IDLE_MS = 5 * 60_000;
/** Shortest pause between two daemon cycles. */
export const MIN_CYCLE_GAP_MS = 200;

const SILENT: AgentLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** Options of {@link Agent}. */
export interface AgentOptions {
  manifest: AgentManifest;
  /** Default: silent. The CLI passes a pino logger writing JSON lines to stderr. */
  logger?: AgentLogger;
  /** Clock (tests move it). Default `new Date()`. */
  now?: () => Date;
  /** Randomness of the retry jitter. Default Math.random. */
  random?: () => number;
  /** Called at each step of a certificate deployment (crash tests stop the process here). */
  onStep?: (certificate: string, step: DeployStep) => void;
  /** How long a cycle waits for the state folder's lock (default {@link DEFAULT_LOCK_WAIT_MS}). */
  lockWaitMs?: number;
}

/** The agent. Construct once; {@link cycle} may be called repeatedly (the daemon does). */
export class Agent {
  #m: AgentManifest;
  readonly #log: AgentLogger;
  readonly #now: () => Date;
  readonly #random: () => number;
  readonly #onStep: (certificate: string, step: DeployStep) => void;
  readonly #lockWaitMs: number;

  constructor(o: AgentOptions) {
    this.#m = o.manifest;
    this.#log = o.logger ?? SILENT;
    this.#now = o.now ?? (() => new Date());
    this.#random = o.random ?? Math.random;
    this.#onStep = o.onStep ?? (() => {});
    this.#lockWaitMs = o.lockWaitMs ?? DEFAULT_LOCK_WAIT_MS;
  }

  /** The manifest in use. */
  get manifest(): AgentManifest {
    return this.#m;
  }

  /** Replaces the manifest (the daemon re-reads agent.yaml on SIGHUP); takes effect at the next cycle. */
  setManifest(m: AgentManifest): void {
    this.#m = m;
  }

  /** What the parts of a cycle are given: the manifest of this cycle and the injected dependencies. */
  #context(): AgentContext {
    const m = this.#m;
    const liveRoot = path.join(m.stateDir, 'live');
    const onStep = this.#onStep;
    return { manifest: m, log: this.#log, random: this.#random, onStep, store: (name) => new GenerationStore(liveRoot, name, (s) => onStep(name, s)) };
  }

  /** Runs one cycle under the lock. Never throws for a failure of what it manages: see the report. */
  async cycle(o: CycleOptions = {}): Promise<CycleReport> {
    for (const n of o.force ?? []) {
      if (!this.#m.certificates.some((c) => c.name === n)) throw new MutualError('CONFIG_INVALID', { detail: `no certificate named ${n} in ${this.#m.file} (known: ${this.#m.certificates.map((c) => c.name).join(', ') || 'none'})` });
    }
    const release = await acquireLock(this.#m.stateDir, this.#lockWaitMs);
    try {
      return await this.#cycle(this.#context(), o);
    } finally {
      release();
    }
  }

  async #cycle(ctx: AgentContext, o: CycleOptions): Promise<CycleReport> {
    const m = ctx.manifest;
    const now = this.#now();
    const cx: Cycle = {
      now, state: readState(m.stateDir), errors: [], warnings: [], force: new Set(o.force ?? []), ignoreBackoff: Boolean(o.ignoreBackoff), cache: new TrustCache(m.stateDir),
    };
    let root: string | undefined;
    let rootError: unknown;
    try {
      // Without ca: every certificate is ACME's and needs no pinned root.
      if (m.ca) root = await pinnedRoot(m, cx);
    } catch (e) {
      rootError = e;
    }
    const trust = await refreshTrust(ctx, cx, root, rootError);
    // Certificates are checked against, and the CA reached with, every root trusted now (a rollover).
    if (root) root = trustedRoots(cx, root);
    const changes: Change[] = [...trustChanges(m, cx)];
    const certificates: CertificateOutcome[] = [];
    for (const c of m.certificates) {
      const r = await planCertificate(ctx, cx, c, root, rootError);
      certificates.push(r.out);
      if (r.change) changes.push(r.change);
    }
    // Where each certificate deployed now goes to, and the generation a rollback takes it back to.
    const planned = new Map<string, Planned>(changes.flatMap((ch) => (ch.kind === 'cert' ? [[ch.c.name, {
      to: path.join(ch.store.dir, ch.journal.to), from: ch.journal.from && ch.store.has(ch.journal.from) ? path.join(ch.store.dir, ch.journal.from) : undefined,
    }] as const] : [])));
    const templates = templateChanges(ctx, cx, changes, planned);
    // A rollback must take back every file of a generation: a deployment file rendered from a
    // certificate deployed now goes with that certificate, whatever its own hooks.
    for (const unit of unitsOf(changes)) this.#record(ctx, cx, unit, await deployUnit(unit, now, ctx.onStep));
    const exitCode = exitCodeFor(cx.errors);
    const changed = certificates.filter((c) => c.ok && c.action !== 'none' && c.action !== 'waiting').length + trust.changed.length + templates.filter((t) => t.action === 'written').length;
    cx.state.lastCycle = { at: now.toISOString(), exitCode, summary: exitCode === 0 ? (changed ? `${changed} change(s)` : 'nothing to do') : cx.errors.map((e) => codeOf(e)).join(', ') };
    try {
      writeState(m.stateDir, cx.state);
    } catch (e) {
      this.#log.error({ err: asError(e).message }, 'could not write the state file');
    }
    const nextWakeAt = this.#nextWake(ctx, cx);
    if (m.metricsFile) {
      try {
        writeOwnedFile(m.metricsFile, renderMetrics(m, cx.state, (name) => readCurrent(ctx.store(name))?.info, cx.cache, now), { mode: 0o644 });
      } catch (e) {
        this.#log.warn({ err: asError(e).message, file: m.metricsFile }, 'could not write the metrics file');
      }
    }
    return { at: now.toISOString(), exitCode, certificates, trust, templates, warnings: cx.warnings, nextWakeAt: nextWakeAt.toISOString() };
  }

  /** Records the result of a deployed (`error` undefined) or rolled back unit on each of its changes. */
  #record(ctx: AgentContext, cx: Cycle, unit: Change[], error: unknown): void {
    for (const ch of unit) {
      if (ch.kind === 'cert') {
        if (error) recordFailure(ctx, cx, ch.c, ch.cs, ch.out, error, ch.cur);
        else commitCertificate(ctx, cx, ch);
      } else if (ch.owner === 'trust') {
        if (error) recordTrustFailure(ctx, cx, cx.trustOut!, error);
        else {
          cx.trustOut!.changed.push(ch.path);
          this.#log.info({ file: ch.path }, 'updated a trust file');
        }
      } else recordTemplateResult(ctx, cx, ch.owner, error);
    }
  }

  /** When the daemon should run the next cycle: the earliest retry, renewal point or trust refresh. */
  #nextWake(ctx: AgentContext, cx: Cycle): Date {
    const m = ctx.manifest;
    const now = cx.now.getTime();
    let next = now + MAX_IDLE_MS;
    for (const c of m.certificates) {
      const cs = cx.state.certificates[c.name];
      const cur = readCurrent(ctx.store(c.name));
      if (cs?.nextAttemptAt) next = Math.min(next, Date.parse(cs.nextAttemptAt));
      else if (cur && cs) next = Math.min(next, renewAt(cur.info, cs.obtained, m.renewal, cs.ari).getTime());
      else if (!cur) next = Math.min(next, now + m.renewal.retryInitialMs);
      // The ACME server's renewal information is asked again when it said to.
      if (cur && c.acme && cs?.ari) next = Math.min(next, Date.parse(cs.ari.checkAfter));
    }
    next = Math.min(next, trustDueAt(m, cx));
    return new Date(Math.max(next, now + MIN_CYCLE_GAP_MS));
  }
}
