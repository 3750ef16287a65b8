/**
 * `mutual agent`: keeps a host's certificates, keys, trust bundles and CRLs fresh on disk and
 * reloads the services that use them.
 *
 * One {@link Agent.cycle} does what is due, under the state folder's lock: refresh the CA
 * certificates and CRLs (on their own schedule, well before a CRL's nextUpdate), then for each
 * certificate resume an interrupted deployment, or enroll (token), renew (mTLS, at a fraction of
 * the lifetime with jitter, at once when the CA's CRL lists it), or repair drifted links, then
 * render the watched folder's deployment files. `once` runs one cycle; the daemon runs cycles
 * when something is due, with exponential backoff after failures.
 *
 * Everything a cycle changes is then deployed in units: the changes that share a check and a
 * reload command (e.g. nginx's certificate, client-CA bundle and CRL) go together, and so does
 * every deployment file rendered from a certificate deployed in the same cycle, whatever its own
 * hooks. A unit is put in place together, each of its checks run once, each reload once, verified,
 * and rolled back together: a generation is never half deployed (the certificate's files on one
 * certificate, a deployment file on another). A certificate goes in place through
 * {@link GenerationStore} (one symlink flip, journal); a single file through an atomic rename with
 * the previous bytes kept for the rollback.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { MutualError, isMutualError } from '../core/errors.ts';
import { readPemOrDer } from '../core/pem.ts';
import { buildPkcs12 } from '../core/pkcs12.ts';
import { acquireLock, certificateState, readState, writeState, DEFAULT_LOCK_WAIT_MS, MAX_SPENT_TOKENS, type AgentState, type CertificateState, type LastResult } from './agent-state.ts';
import { enroll, fetchCaCertificates, fetchCrl, fetchPinnedRoot, fingerprintOf, readTokenClaims, renew, type IssuedCertificate } from '../sdk/ca-client.ts';
import { checkCrl, isNotOlder } from './crl-check.ts';
import { discoverTemplates, renderTemplate, templateOwnership, type DeployTemplate } from './deploy-templates.ts';
import { exitCodeFor } from './exit-codes.ts';
import { GenerationStore, GENERATION_FILES, targetsOf, type DeployStep, type GenerationMaterial, type Journal } from './generation-store.ts';
import { reloadService, runCommand, verifyServed, describeCommand } from './hooks.ts';
import { DEFAULT_COMMAND_TIMEOUT_MS, type AgentManifest, type BundlePart, type CertificateSpec, type CrlIssuer, type HookSpec, type Ownership } from './manifest.ts';
import { isSame, readPrevious, restorePrevious, writeOwnedFile, type PreviousFile } from './owned-file.ts';
import { renderMetrics } from './metrics-file.ts';
import { renewalTime, retryDelay } from './schedule.ts';
import { TrustCache, CRL_SIGNER, retiredSlot, type CrlSlot } from './trust-cache.ts';

/** Longest the daemon sleeps between cycles, so manual changes on disk are noticed. */
export const MAX_IDLE_MS = 5 * 60_000;
/** Shortest pause between two daemon cycles. */
export const MIN_CYCLE_GAP_MS = 200;
/** A CRL is refetched once this fraction of its validity (thisUpdate..nextUpdate) has passed. */
export const CRL_REFRESH_FRACTION = 0.5;
/** A CRL with less than this fraction of its validity left is reported (AGENT_CRL_STALE). */
export const CRL_WARN_FRACTION = 0.25;
/** Largest token file read. */
export const MAX_TOKEN_FILE_BYTES = 8 * 1024;
/** Serial -> obtainedAt entries kept per certificate. */
export const MAX_OBTAINED_ENTRIES = 8;

/** What enrollment and renewal return: the CA's answer and the key it certifies (when made here). */
type Obtained = IssuedCertificate & { key?: crypto.KeyObject };

const deployedChannel = diagnostics.channel('mutual:agent:deployed');
const failedChannel = diagnostics.channel('mutual:agent:failed');

/** The logger the agent writes to (pino's shape). */
export interface AgentLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

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

/** What to do in a cycle beyond what is due. */
export interface CycleOptions {
  /** Attempt what is due even inside a retry backoff (`once` and `rotate` do). */
  ignoreBackoff?: boolean;
  /** Renew these certificates now, due or not (`rotate`). */
  force?: string[];
}

/** What happened to one certificate. */
export interface CertificateOutcome {
  name: string;
  action: 'none' | 'waiting' | 'enrolled' | 'renewed' | 'redeployed' | 'resumed' | 'failed';
  ok: boolean;
  serial?: string;
  previousSerial?: string;
  notAfter?: string;
  renewAt?: string;
  code?: string;
  message?: string;
}

/** What happened to the trust files. */
export interface TrustOutcome {
  fetched: boolean;
  ok: boolean;
  /** Trust files rewritten. */
  changed: string[];
  code?: string;
  message?: string;
}

/** What happened to one deployment file. */
export interface TemplateOutcome {
  file: string;
  target?: string;
  action: 'none' | 'written' | 'waiting' | 'failed';
  ok: boolean;
  code?: string;
  message?: string;
}

/** The report of one cycle. */
export interface CycleReport {
  at: string;
  exitCode: number;
  certificates: CertificateOutcome[];
  trust: TrustOutcome;
  templates: TemplateOutcome[];
  warnings: { code: string; message: string }[];
  /** When the daemon should run the next cycle. */
  nextWakeAt: string;
}

interface Cycle {
  now: Date;
  state: AgentState;
  errors: unknown[];
  warnings: { code: string; message: string }[];
  force: Set<string>;
  ignoreBackoff: boolean;
  cache: TrustCache;
  trustOut?: TrustOutcome;
}

interface Current {
  gen: string;
  certificatePem: string;
  keyPem: string;
  info: CertificateInfo;
}

/** A certificate deployed in this cycle: its new generation's folder and the one a rollback returns to. */
interface Planned {
  to: string;
  from?: string;
}

/** A change a cycle deploys. */
type Change =
  | { kind: 'file'; path: string; data: Buffer; ownership: Ownership; prev: PreviousFile; hooks: HookSpec; owner: 'trust' | TemplateOutcome; renders?: string[] }
  | { kind: 'cert'; c: CertificateSpec; cs: CertificateState; store: GenerationStore; journal: Journal; serial: string; action: CertificateOutcome['action']; cur?: Current; out: CertificateOutcome; hooks: HookSpec };

const hooksKey = (h: HookSpec): string => JSON.stringify([h.check ? describeCommand(h.check) : '', h.reload ? describeCommand(h.reload) : '']);

/**
 * Splits a cycle's changes into deployment units, each in the order planned: changes that share a
 * check and a reload, and a deployment file with the certificates of this cycle it renders (its
 * {@link Change} `renders`), transitively. A change tied to nothing goes alone.
 */
function deploymentUnits<T extends { hooks: HookSpec; name?: string; renders?: string[] }>(changes: T[]): T[][] {
  const parent = changes.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i])));
  const join = (a: number, b: number) => {
    const [x, y] = [find(a), find(b)];
    if (x !== y) parent[Math.max(x, y)] = Math.min(x, y);
  };
  const byHooks = new Map<string, number>();
  const byName = new Map<string, number>();
  changes.forEach((ch, i) => {
    if (ch.name !== undefined) byName.set(ch.name, i);
    if (!ch.hooks.check && !ch.hooks.reload) return;
    const k = hooksKey(ch.hooks);
    const first = byHooks.get(k);
    if (first === undefined) byHooks.set(k, i);
    else join(first, i);
  });
  changes.forEach((ch, i) => {
    for (const n of ch.renders ?? []) {
      const j = byName.get(n);
      if (j !== undefined) join(i, j);
    }
  });
  const units = new Map<number, T[]>();
  changes.forEach((ch, i) => units.set(find(i), [...(units.get(find(i)) ?? []), ch]));
  return [...units.values()];
}

// Only the message is read; a thrown non-Error (none of ours) still gets one.
const asError = (e: unknown): { message: string } => (e instanceof Error ? e : { message: String(e) });
const codeOf = (e: unknown): string => (isMutualError(e) ? e.code : (e as NodeJS.ErrnoException)?.code ?? 'FAILURE');
const issuerOf = (c: CertificateSpec): 'server' | 'client' => (c.profile === 'server' ? 'server' : 'client');
const sha256 = (s: string): string => crypto.createHash('sha256').update(s).digest('hex');

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

  get #liveRoot(): string {
    return path.join(this.#m.stateDir, 'live');
  }

  #store(name: string): GenerationStore {
    return new GenerationStore(this.#liveRoot, name, (s) => this.#onStep(name, s));
  }

  /** Runs one cycle under the lock. Never throws for a failure of what it manages: see the report. */
  async cycle(o: CycleOptions = {}): Promise<CycleReport> {
    for (const n of o.force ?? []) {
      if (!this.#m.certificates.some((c) => c.name === n)) throw new MutualError('CONFIG_INVALID', { detail: `no certificate named ${n} in ${this.#m.file} (known: ${this.#m.certificates.map((c) => c.name).join(', ') || 'none'})` });
    }
    const release = await acquireLock(this.#m.stateDir, this.#lockWaitMs);
    try {
      return await this.#cycle(o);
    } finally {
      release();
    }
  }

  async #cycle(o: CycleOptions): Promise<CycleReport> {
    const now = this.#now();
    const cx: Cycle = {
      now, state: readState(this.#m.stateDir), errors: [], warnings: [], force: new Set(o.force ?? []), ignoreBackoff: Boolean(o.ignoreBackoff), cache: new TrustCache(this.#m.stateDir),
    };
    let root: string | undefined;
    let rootError: unknown;
    try {
      root = await this.#root(cx);
    } catch (e) {
      rootError = e;
    }
    const trust = await this.#trust(cx, root, rootError);
    const changes: Change[] = [];
    const trustChanges = this.#trustChanges(cx);
    changes.push(...trustChanges);
    const certificates: CertificateOutcome[] = [];
    for (const c of this.#m.certificates) {
      const r = await this.#certificate(cx, c, root, rootError);
      certificates.push(r.out);
      if (r.change) changes.push(r.change);
    }
    // Where each certificate deployed now goes to, and the generation a rollback takes it back to.
    const planned = new Map(changes.flatMap((ch) => (ch.kind === 'cert' ? [[ch.c.name, {
      to: path.join(ch.store.dir, ch.journal.to), from: ch.journal.from && ch.store.has(ch.journal.from) ? path.join(ch.store.dir, ch.journal.from) : undefined,
    }] as const] : [])));
    const templates = this.#templates(cx, changes, planned);
    // A rollback must take back every file of a generation: a deployment file rendered from a
    // certificate deployed now goes with that certificate, whatever its own hooks.
    const units = deploymentUnits(changes.map((ch) => ({ ch, hooks: ch.hooks, name: ch.kind === 'cert' ? ch.c.name : undefined, renders: ch.kind === 'file' ? ch.renders : undefined })));
    for (const unit of units) await this.#apply(cx, unit.map((u) => u.ch));
    const exitCode = exitCodeFor(cx.errors);
    const changed = certificates.filter((c) => c.ok && c.action !== 'none' && c.action !== 'waiting').length + trust.changed.length + templates.filter((t) => t.action === 'written').length;
    cx.state.lastCycle = { at: now.toISOString(), exitCode, summary: exitCode === 0 ? (changed ? `${changed} change(s)` : 'nothing to do') : cx.errors.map((e) => codeOf(e)).join(', ') };
    try {
      writeState(this.#m.stateDir, cx.state);
    } catch (e) {
      this.#log.error({ err: asError(e).message }, 'could not write the state file');
    }
    const nextWakeAt = this.#nextWake(cx);
    if (this.#m.metricsFile) {
      try {
        writeOwnedFile(this.#m.metricsFile, renderMetrics(this.#m, cx.state, (name) => this.#readCurrent(this.#store(name))?.info, cx.cache, now), { mode: 0o644 });
      } catch (e) {
        this.#log.warn({ err: asError(e).message, file: this.#m.metricsFile }, 'could not write the metrics file');
      }
    }
    return { at: now.toISOString(), exitCode, certificates, trust, templates, warnings: cx.warnings, nextWakeAt: nextWakeAt.toISOString() };
  }

  // ---- the pinned root

  async #root(cx: Cycle): Promise<string> {
    const ca = this.#m.ca;
    if (ca.rootFile) {
      let pem: string;
      try {
        pem = fs.readFileSync(ca.rootFile, 'utf8');
        fingerprintOf(pem);
      } catch (e) {
        throw new MutualError('CONFIG_INVALID', { detail: `ca.root ${ca.rootFile}: ${isMutualError(e) ? e.message : (e as Error).message}` });
      }
      return pem;
    }
    let pin = ca.rootFingerprint;
    const cached = cx.cache.caCertificate('root');
    if (cached && (!pin || fingerprintOf(cached) === pin)) return cached;
    if (!pin) {
      // Pinned by the token that enrols first (the token carries the root's fingerprint).
      for (const c of this.#m.certificates) {
        const t = this.#token(c);
        if (t) {
          pin = readTokenClaims(t).rootFingerprint.toLowerCase();
          break;
        }
      }
    }
    if (!pin) throw new MutualError('AGENT_TOKEN_NEEDED', { detail: 'no root is pinned yet and no token names one; set ca.root or ca.rootFingerprint, or give a token' });
    const pem = await fetchPinnedRoot(ca.url, pin);
    cx.cache.saveCaCertificate('root', pem);
    return pem;
  }

  // ---- trust bundles and CRLs

  #crlIssuersNeeded(): Set<CrlIssuer> {
    const s = new Set<CrlIssuer>();
    for (const c of this.#m.trust.crls) for (const i of c.issuers) s.add(i);
    // The CRL of each managed certificate's issuer tells the agent when its own certificate is revoked.
    for (const c of this.#m.certificates) s.add(issuerOf(c));
    return s;
  }

  /**
   * The CRLs kept fresh: each needed issuer's, and for a server or client issuer those of its
   * intermediates retired by a key rotation that are still valid (what the old key issued is
   * revoked on those).
   */
  #crlSlots(cx: Cycle): CrlSlot[] {
    const slots: CrlSlot[] = [];
    for (const issuer of this.#crlIssuersNeeded()) {
      slots.push(issuer);
      if (issuer !== 'root') for (const r of cx.cache.retired(issuer, cx.now)) slots.push(r.slot);
    }
    return slots;
  }

  #trustDueAt(cx: Cycle): number {
    const t = cx.state.trust;
    if (this.#m.trust.bundles.length + this.#m.trust.crls.length + this.#m.certificates.length === 0) return Infinity;
    let due = t.lastFetchAt ? Date.parse(t.lastFetchAt) + this.#m.trust.refreshMs : 0;
    for (const issuer of this.#crlSlots(cx)) {
      const c = t.crls[issuer];
      if (!c || !cx.cache.crl(issuer)) return 0;
      if (c.nextUpdate) {
        const a = Date.parse(c.thisUpdate);
        due = Math.min(due, a + (Date.parse(c.nextUpdate) - a) * CRL_REFRESH_FRACTION);
      }
    }
    const parts = new Set<BundlePart>(this.#m.trust.bundles.flatMap((b) => b.include));
    for (const p of parts) if (!cx.cache.caCertificate(p)) return 0;
    if (t.nextAttemptAt && !cx.ignoreBackoff) due = Math.max(due, Date.parse(t.nextAttemptAt));
    return due;
  }

  async #trust(cx: Cycle, root: string | undefined, rootError: unknown): Promise<TrustOutcome> {
    const out: TrustOutcome = { fetched: false, ok: true, changed: [] };
    cx.trustOut = out;
    const ts = cx.state.trust;
    const now = cx.now;
    if (this.#trustDueAt(cx) <= now.getTime()) {
      try {
        if (!root) throw rootError;
        await this.#fetchTrust(cx, root);
        out.fetched = true;
        ts.lastFetchAt = now.toISOString();
        ts.failures = 0;
        ts.nextAttemptAt = undefined;
        ts.lastResult = { ok: true, at: now.toISOString(), action: 'refreshed' };
      } catch (e) {
        ts.failures++;
        ts.nextAttemptAt = new Date(now.getTime() + retryDelay(ts.failures, this.#m.renewal.retryInitialMs, this.#m.renewal.retryMaxMs, this.#random)).toISOString();
        ts.lastResult = { ok: false, at: now.toISOString(), action: 'refresh', code: codeOf(e), message: asError(e).message };
        Object.assign(out, { ok: false, code: codeOf(e), message: asError(e).message });
        cx.errors.push(e);
        this.#log.warn({ code: codeOf(e), err: asError(e).message, retryAt: ts.nextAttemptAt }, 'could not refresh the CA certificates and CRLs; the files in place are kept');
      }
    }
    // A CRL close to its nextUpdate is reported whether or not this cycle fetched.
    for (const issuer of this.#crlSlots(cx)) {
      const c = ts.crls[issuer];
      if (!c?.nextUpdate) continue;
      const a = Date.parse(c.thisUpdate);
      const b = Date.parse(c.nextUpdate);
      if (b - now.getTime() < (b - a) * CRL_WARN_FRACTION) {
        const message = b <= now.getTime() ? `the ${issuer} CRL expired at ${c.nextUpdate}` : `the ${issuer} CRL expires at ${c.nextUpdate}`;
        cx.warnings.push({ code: 'AGENT_CRL_STALE', message });
        this.#log.warn({ code: 'AGENT_CRL_STALE', issuer, nextUpdate: c.nextUpdate }, message);
      }
    }
    return out;
  }

  async #fetchTrust(cx: Cycle, root: string): Promise<void> {
    const cas = await fetchCaCertificates(this.#m.ca.url, root, cx.now);
    const wanted: { slot: CrlSlot; signer: string }[] = [];
    for (const issuer of this.#crlIssuersNeeded()) {
      wanted.push({ slot: issuer, signer: cas[CRL_SIGNER[issuer]] });
      for (const r of cas.retired) if (r.role === issuer) wanted.push({ slot: retiredSlot(r.role, r.keyId), signer: r.pem });
    }
    const fresh = new Map<CrlSlot, { der: Buffer; info: ReturnType<typeof checkCrl> }>();
    for (const { slot, signer } of wanted) {
      const der = await fetchCrl(this.#m.ca.url, root, slot);
      const info = checkCrl(der, signer, cx.now, `the ${slot} CRL`);
      fresh.set(slot, { der, info });
    }
    // Everything checked: now the cache changes (CA certificates first, the CRLs they sign after).
    for (const part of ['root', 'server-ca', 'client-ca'] as const) {
      if (cx.cache.caCertificate(part) !== cas[part]) cx.cache.saveCaCertificate(part, cas[part]);
    }
    for (const role of ['server', 'client'] as const) {
      cx.cache.saveRetired(role, cas.retired.filter((r) => r.role === role).map((r) => r.pem));
    }
    for (const slot of Object.keys(cx.state.trust.crls)) {
      if (slot.includes('.') && !fresh.has(slot as CrlSlot)) delete cx.state.trust.crls[slot];
    }
    for (const [slot, { der, info }] of fresh) {
      const cached = cx.cache.crlInfo(slot);
      if (cached && !isNotOlder(info, cached)) {
        // An older CRL than the one in use (a replay, or a lagging replica) would un-revoke certificates.
        this.#log.warn({ issuer: slot, cached: cached.thisUpdate, fetched: info.thisUpdate }, 'the CA served an older CRL than the one in use; kept the newer one');
        continue;
      }
      if (!cached || !cached.der.equals(der)) cx.cache.saveCrl(slot, der);
      cx.state.trust.crls[slot] = { thisUpdate: info.thisUpdate.toISOString(), nextUpdate: info.nextUpdate?.toISOString(), entries: info.revoked.size };
    }
  }

  /** The trust files whose content (from the cache) or ownership differs from what is on disk. */
  #trustChanges(cx: Cycle): Change[] {
    const changes: Change[] = [];
    const add = (p: string, data: Buffer | undefined, ownership: Ownership, hooks: HookSpec) => {
      if (data === undefined) return;
      let prev: PreviousFile;
      try {
        prev = readPrevious(p);
      } catch {
        // Unreadable or in the way (e.g. a folder): the write fails in its group, which then rolls back.
        prev = { path: p };
      }
      if (!isSame(prev, data, ownership)) changes.push({ kind: 'file', path: p, data, ownership, prev, hooks, owner: 'trust' });
    };
    // Rendered from the cache every cycle: a deleted or edited trust file comes back.
    for (const b of this.#m.trust.bundles) add(b.path, ((pem) => pem === undefined ? undefined : Buffer.from(pem))(cx.cache.bundle(b.include, cx.now)), b.ownership, b.hooks);
    for (const c of this.#m.trust.crls) add(c.path, cx.cache.crls(c.issuers, c.format, cx.now), c.ownership, c.hooks);
    return changes;
  }

  #trustFailed(cx: Cycle, out: TrustOutcome, e: unknown): void {
    if (!out.ok && out.code === codeOf(e)) return;
    Object.assign(out, { ok: false, code: codeOf(e), message: asError(e).message });
    cx.errors.push(e);
    this.#log.error({ code: codeOf(e), err: asError(e).message }, 'could not deploy the trust files; the previous files were kept');
  }

  /**
   * Deploys one unit (see {@link deploymentUnits}): every file and certificate in place, each
   * distinct check once, each distinct reload once, the verify steps; on a failure everything goes
   * back and every service already reloaded is reloaded again.
   */
  async #apply(cx: Cycle, group: Change[]): Promise<void> {
    // The distinct check/reload pairs of the unit, in order; each runs once with the longest limit of its changes.
    const hookSets = new Map<string, { hooks: HookSpec; timeoutMs: number }>();
    for (const ch of group) {
      if (!ch.hooks.check && !ch.hooks.reload) continue;
      const k = hooksKey(ch.hooks);
      const h = hookSets.get(k);
      hookSets.set(k, { hooks: ch.hooks, timeoutMs: Math.max(h?.timeoutMs ?? 0, ch.hooks.timeoutMs) });
    }
    const certs = group.filter((ch): ch is Extract<Change, { kind: 'cert' }> => ch.kind === 'cert');
    const steps = (s: DeployStep) => certs.forEach((ch) => this.#onStep(ch.c.name, s));
    const undo: (() => void)[] = [];
    const reloaded: { hooks: HookSpec; timeoutMs: number }[] = [];
    let error: unknown;
    try {
      for (const ch of group) {
        if (ch.kind === 'file') {
          writeOwnedFile(ch.path, ch.data, ch.ownership);
          undo.push(() => restorePrevious(ch.prev));
        } else {
          undo.push(() => this.#unflip(ch));
          this.#flip(cx, ch);
        }
      }
      for (const h of hookSets.values()) if (h.hooks.check) await runCommand(h.hooks.check, h.timeoutMs, 'AGENT_CHECK_FAILED');
      steps('checked');
      for (const h of hookSets.values()) {
        if (!h.hooks.reload) continue;
        reloaded.push(h);
        await reloadService(h.hooks.reload, h.timeoutMs);
      }
      steps('reloaded');
      for (const ch of certs) {
        if (ch.c.verify) await verifyServed(ch.c.verify, ch.serial);
        this.#onStep(ch.c.name, 'verified');
      }
    } catch (e) {
      error = e;
      // Every file is put back and every reloaded service reloaded again, even when one of them
      // fails: the first failure is reported.
      let failed: unknown;
      for (const u of undo.reverse()) {
        try {
          u();
        } catch (e2) {
          failed ??= e2;
        }
      }
      for (const h of reloaded) {
        try {
          await reloadService(h.hooks.reload!, h.timeoutMs);
        } catch (e2) {
          failed ??= e2;
        }
      }
      if (failed !== undefined) error = new MutualError('AGENT_ROLLBACK_FAILED', { detail: `${asError(e).message}; then the rollback failed: ${asError(failed).message}` }, { cause: failed });
      // The journals stay: the next attempt deploys the same generations (no new certificate, no token).
      for (const ch of certs) {
        ch.store.writeJournal({ ...ch.journal, lastError: asError(error).message });
        if (!isMutualError(error, 'AGENT_ROLLBACK_FAILED')) this.#onStep(ch.c.name, 'rolled-back');
      }
    }
    for (const ch of group) {
      if (ch.kind === 'cert') {
        if (error) {
          this.#failed(cx, ch.c, ch.cs, ch.out, error, ch.cur);
          continue;
        }
        ch.store.clearJournal();
        this.#onStep(ch.c.name, 'committed');
        ch.store.prune([ch.journal.to, ch.journal.from]);
        Object.assign(ch.out, this.#succeeded(cx, ch.c, ch.cs, ch.out, ch.action, ch.serial, ch.cur?.info.serial));
      } else if (ch.owner === 'trust') {
        if (error) this.#trustFailed(cx, cx.trustOut!, error);
        else {
          cx.trustOut!.changed.push(ch.path);
          this.#log.info({ file: ch.path }, 'updated a trust file');
        }
      } else {
        const t = ch.owner;
        if (error) {
          cx.errors.push(error);
          Object.assign(t, { action: 'failed', ok: false, code: codeOf(error), message: asError(error).message });
          cx.state.templates[t.file] = { ok: false, at: cx.now.toISOString(), action: 'failed', code: codeOf(error), message: asError(error).message };
          this.#log.error({ file: t.file, code: codeOf(error), err: asError(error).message }, 'could not deploy a file from the watched folder; the file in place was kept');
        } else {
          t.action = 'written';
          cx.state.templates[t.file] = { ok: true, at: cx.now.toISOString(), action: 'written' };
          this.#log.info({ file: t.file, target: t.target }, 'deployed a file from the watched folder');
        }
      }
    }
  }

  /** Puts a certificate's staged generation in place (links, one flip), adopting existing files on a first deployment. */
  #flip(cx: Cycle, ch: Extract<Change, { kind: 'cert' }>): void {
    const { store, c } = ch;
    const j = ch.journal;
    const step = (s: DeployStep) => this.#onStep(c.name, s);
    const targets = targetsOf(c.files);
    j.attempts++;
    store.writeJournal(j);
    if (store.current() === undefined) {
      if (j.from === null) {
        // First deployment onto files that are already there: they become generation "adopted",
        // so the rollback has something to go back to and turning them into links changes no byte.
        const adopted = store.adopt(targets, cx.now);
        if (adopted) {
          store.flip(adopted);
          store.link(targets);
          j.from = adopted;
          store.writeJournal(j);
        }
      } else if (store.has(j.from)) {
        store.flip(j.from);
      }
      step('adopted');
    }
    if (store.current() !== undefined) {
      store.link(targets);
      step('links-ready');
    }
    store.flip(j.to);
    step('flipped');
    if (!store.linked(targets)) {
      j.created = [...(j.created ?? []), ...store.link(targets)];
      store.writeJournal(j);
      step('links-ready');
    }
  }

  /** Puts the previous generation back (or, after a first deployment, no files at all). */
  #unflip(ch: Extract<Change, { kind: 'cert' }>): void {
    const j = ch.journal;
    if (j.from && ch.store.has(j.from)) ch.store.flip(j.from);
    else {
      ch.store.unlink(j.created ?? []);
      ch.store.removeCurrent();
    }
  }

  // ---- certificates

  #readCurrent(store: GenerationStore): Current | undefined {
    const gen = store.current();
    if (!gen || !store.has(gen)) return undefined;
    try {
      const r = store.read(gen);
      return { gen, certificatePem: r.certificatePem, keyPem: r.keyPem, info: r.info };
    } catch {
      return undefined;
    }
  }

  #token(c: CertificateSpec): string | undefined {
    if (c.token) return c.token.trim();
    if (!c.tokenFile) return undefined;
    try {
      const st = fs.statSync(c.tokenFile);
      if (!st.isFile() || st.size > MAX_TOKEN_FILE_BYTES) return undefined;
      return fs.readFileSync(c.tokenFile, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  }

  /** A token not spent yet, if one is configured. */
  #freshToken(c: CertificateSpec, cs: CertificateState): string | undefined {
    const t = this.#token(c);
    return t && !cs.spentTokens.includes(sha256(t)) ? t : undefined;
  }

  #renewAt(c: Current, cs: CertificateState): Date {
    const got = cs.obtained[c.info.serial];
    return renewalTime({ serial: c.info.serial, notBefore: c.info.notBefore, notAfter: c.info.notAfter, obtainedAt: got ? new Date(got) : undefined, fraction: this.#m.renewal.fraction, jitter: this.#m.renewal.jitter });
  }

  #revoked(cx: Cycle, c: CertificateSpec, info: CertificateInfo, cs: CertificateState): boolean {
    if (cs.revokedSerial === info.serial) return true;
    const crl = cx.cache.crlCovering(issuerOf(c), info.authorityKeyId);
    if (!crl) return false;
    // The CRL must be the issuer's (same key id) when both name one; serials are 16 random bytes.
    if (crl.authorityKeyId && info.authorityKeyId && !info.authorityKeyId.equals(crl.authorityKeyId)) return false;
    return crl.revoked.has(info.serial);
  }

  /** True when the files in place differ from what agent.yaml asks (links, files, modes, owners). */
  #drifted(store: GenerationStore, gen: string, c: CertificateSpec): string | undefined {
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

  #pkcs12(c: CertificateSpec, keyPem: string, certificatePem: string, chainPem: string): Buffer | undefined {
    if (!c.files.pkcs12) return undefined;
    const pwFile = c.files.pkcs12.passwordFile;
    let password: string;
    try {
      password = fs.readFileSync(pwFile, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new MutualError('AGENT_WRITE_FAILED', { detail: `${pwFile}: ${(e as Error).message}` });
      // No password yet: make one, readable only by the owner of the bundle.
      password = crypto.randomBytes(24).toString('base64url');
      writeOwnedFile(pwFile, password + '\n', { ...c.ownership, mode: c.keyMode });
    }
    if (!password) throw new MutualError('CONFIG_INVALID', { detail: `${pwFile} is empty; a PKCS#12 bundle needs a password` });
    return buildPkcs12({
      key: crypto.createPrivateKey(keyPem), certificate: readPemOrDer(certificatePem, ['CERTIFICATE']), chain: [readPemOrDer(chainPem, ['CERTIFICATE'])], password,
    });
  }

  /** Checks what the CA returned before anything is written: the key matches, the chain leads to the root. */
  #checkObtained(got: Obtained, keyPem: string, root: string): CertificateInfo {
    let info: CertificateInfo;
    let leaf: crypto.X509Certificate;
    let issuer: crypto.X509Certificate;
    try {
      info = parseCertificate(readPemOrDer(got.certificate, ['CERTIFICATE']));
      leaf = new crypto.X509Certificate(got.certificate);
      issuer = new crypto.X509Certificate(got.chain);
    } catch (e) {
      throw new MutualError('CA_UNTRUSTED', { detail: `the CA's answer does not hold a readable certificate and chain (${(e as Error).message}); nothing was written` });
    }
    const spki = crypto.createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
    if (!spki.equals(info.spki)) throw new MutualError('KEY_MISMATCH', { detail: `the CA returned ${info.serial} for another key; nothing was written` });
    if (!leaf.verify(issuer.publicKey) || !issuer.verify(new crypto.X509Certificate(root).publicKey)) {
      throw new MutualError('CA_UNTRUSTED', { detail: `the certificate ${info.serial} does not chain to the pinned root; nothing was written` });
    }
    return info;
  }

  async #enroll(c: CertificateSpec, cs: CertificateState, root: string, why: string): Promise<Obtained> {
    const token = this.#token(c);
    const where = c.tokenFile ?? `certificates (${c.name}).token`;
    if (!token) throw new MutualError('AGENT_TOKEN_NEEDED', { detail: `${c.name}: ${why}; no token in ${where}` });
    const h = sha256(token);
    if (cs.spentTokens.includes(h)) throw new MutualError('AGENT_TOKEN_NEEDED', { detail: `${c.name}: ${why}; the token in ${where} was already used` });
    try {
      if (readTokenClaims(token.trim()).rootFingerprint.toLowerCase() !== fingerprintOf(root)) {
        throw new MutualError('CA_UNTRUSTED', { detail: 'the token was made by a CA with another root than the one agent.yaml pins' });
      }
      const got = await enroll({ caUrl: this.#m.ca.url, root, token, names: c.names, keyType: c.keyType });
      cs.spentTokens = [...cs.spentTokens, h].slice(-MAX_SPENT_TOKENS);
      return got;
    } catch (e) {
      // A refused token is not sent again; an unreachable CA did not see it.
      if (isMutualError(e) && e.code.startsWith('TOKEN_')) cs.spentTokens = [...cs.spentTokens, h].slice(-MAX_SPENT_TOKENS);
      throw e;
    }
  }

  #inBackoff(cx: Cycle, c: CertificateSpec, cs: CertificateState): boolean {
    if (cx.ignoreBackoff || cx.force.has(c.name) || !cs.nextAttemptAt || cx.now.getTime() >= Date.parse(cs.nextAttemptAt)) return false;
    // A new token ends the wait of a certificate that needs one.
    const code = cs.lastResult?.code ?? '';
    if ((code === 'AGENT_TOKEN_NEEDED' || code === 'AGENT_REVOKED' || code.startsWith('TOKEN_')) && this.#freshToken(c, cs)) return false;
    return true;
  }

  /**
   * Decides what a certificate needs and prepares it: a staged generation (journal first) to
   * deploy, or nothing. Failures before the deployment are recorded here.
   */
  async #certificate(cx: Cycle, c: CertificateSpec, root: string | undefined, rootError: unknown): Promise<{ out: CertificateOutcome; change?: Change }> {
    const now = cx.now;
    const cs = certificateState(cx.state, c.name);
    const store = this.#store(c.name);
    const out: CertificateOutcome = { name: c.name, action: 'none', ok: true };
    let cur: Current | undefined;
    try {
      store.sweep();
      cur = this.#readCurrent(store);
      if (cur) Object.assign(out, { serial: cur.info.serial, notAfter: cur.info.notAfter.toISOString(), renewAt: this.#renewAt(cur, cs).toISOString() });
      if (this.#inBackoff(cx, c, cs)) {
        Object.assign(out, { action: 'waiting', ok: true, code: cs.lastResult?.code, message: `retrying at ${cs.nextAttemptAt}` });
        return { out };
      }
      // 1. A deployment that was interrupted (crash) or failed (check/reload/verify) is resumed.
      const journal = store.readJournal();
      const pending = journal && { to: journal.to, from: journal.from, journal };
      if (pending) {
        let usable = false;
        if (store.has(pending.to)) {
          try {
            const g = store.read(pending.to);
            const spki = crypto.createPublicKey(g.keyPem).export({ type: 'spki', format: 'der' });
            usable = spki.equals(g.info.spki) && now < g.info.notAfter && !this.#revoked(cx, c, g.info, cs);
          } catch {
            usable = false;
          }
        }
        if (usable) {
          const j = { ...pending.journal, from: pending.from ?? (cur && cur.gen !== pending.to ? cur.gen : null) };
          return { out, change: { kind: 'cert', c, cs, store, journal: j, serial: store.read(j.to).info.serial, action: 'resumed', cur, out, hooks: c.hooks } };
        }
        // Never completed, expired or revoked meanwhile: dropped; what is needed now is decided below.
        store.clearJournal();
        store.remove(pending.to);
      }
      // 2. What is needed now.
      let need: 'enroll' | 'renew' | 'redeploy' | undefined;
      let why = '';
      if (!cur) {
        need = 'enroll';
        why = 'no certificate yet';
      } else if (this.#revoked(cx, c, cur.info, cs)) {
        need = 'enroll';
        why = `${cur.info.serial} is revoked`;
        if (cs.revokedSerial !== cur.info.serial) {
          cs.revokedSerial = cur.info.serial;
          this.#log.warn({ name: c.name, serial: cur.info.serial }, 'the CA revoked this certificate');
        }
      } else if (cx.force.has(c.name) || now >= this.#renewAt(cur, cs)) {
        need = 'renew';
      } else {
        const drift = this.#drifted(store, cur.gen, c);
        if (drift) {
          need = 'redeploy';
          why = drift;
        }
      }
      if (!need) return { out };
      // 3. Nothing is asked of the CA for files that cannot be written (a token would be wasted).
      store.precheck(targetsOf(c.files));
      let material: GenerationMaterial;
      let action: CertificateOutcome['action'];
      let serial: string;
      if (need === 'redeploy') {
        this.#log.info({ name: c.name, why }, 'redeploying the current certificate');
        const chainPem = fs.readFileSync(path.join(store.dir, cur!.gen, GENERATION_FILES.chain), 'utf8');
        const fullchainPem = fs.readFileSync(path.join(store.dir, cur!.gen, GENERATION_FILES.fullchain), 'utf8');
        material = { certificatePem: cur!.certificatePem, chainPem, fullchainPem, keyPem: cur!.keyPem, pkcs12: this.#pkcs12(c, cur!.keyPem, cur!.certificatePem, chainPem) };
        action = 'redeployed';
        serial = cur!.info.serial;
      } else {
        if (!root) throw rootError;
        let got: Obtained | undefined;
        if (need === 'renew') {
          try {
            got = await renew({ caUrl: this.#m.ca.url, root, certificate: cur!.certificatePem, key: cur!.keyPem, newKey: c.newKey, keyType: c.keyType });
            action = 'renewed';
          } catch (e) {
            if (isMutualError(e, 'CERT_REVOKED')) {
              cs.revokedSerial = cur!.info.serial;
              if (!this.#freshToken(c, cs)) throw new MutualError('AGENT_REVOKED', { detail: `${c.name}: the CA refused to renew ${cur!.info.serial}: revoked; no unused token in ${c.tokenFile ?? 'agent.yaml'}` });
              why = `${cur!.info.serial} is revoked`;
            } else if (isMutualError(e, 'CERT_EXPIRED') || isMutualError(e, 'RENEW_NOT_ALLOWED')) {
              if (!this.#freshToken(c, cs)) throw new MutualError('AGENT_TOKEN_NEEDED', { detail: `${c.name}: the CA will not renew ${cur!.info.serial} (${e.fields.detail ?? e.message})` });
              why = `the CA will not renew ${cur!.info.serial}`;
            } else throw e;
          }
        } else if (cur && cs.revokedSerial === cur.info.serial && !this.#freshToken(c, cs)) {
          throw new MutualError('AGENT_REVOKED', { detail: `${c.name}: ${cur.info.serial} is on the CA's CRL; no unused token in ${c.tokenFile ?? 'agent.yaml'}` });
        }
        if (!got) {
          got = await this.#enroll(c, cs, root, why);
          action = 'enrolled';
        }
        const keyPem = got.key ? (got.key.export({ type: 'pkcs8', format: 'pem' }) as string) : cur!.keyPem;
        const info = this.#checkObtained(got, keyPem, root);
        serial = info.serial;
        material = { certificatePem: got.certificate, chainPem: got.chain, fullchainPem: got.fullchain, keyPem, pkcs12: this.#pkcs12(c, keyPem, got.certificate, got.chain) };
        this.#warnNames(cx, c, info);
      }
      // When it was obtained is saved before the deployment, so a crash does not lose it.
      cs.obtained = Object.fromEntries([...Object.entries(cs.obtained), [serial, cs.obtained[serial] ?? now.toISOString()]].slice(-MAX_OBTAINED_ENTRIES));
      writeState(this.#m.stateDir, cx.state);
      // The journal names the generation before it is written: a crash from here on is resumed.
      const gen = store.newName(serial, now);
      const j: Journal = { from: store.current() ?? null, to: gen, startedAt: now.toISOString(), attempts: 0 };
      store.writeJournal(j);
      this.#onStep(c.name, 'journal-written');
      store.stage(gen, material, c.ownership, c.keyMode);
      return { out, change: { kind: 'cert', c, cs, store, journal: j, serial, action: action!, cur, out, hooks: c.hooks } };
    } catch (e) {
      this.#failed(cx, c, cs, out, e, cur);
      return { out };
    }
  }

  #failed(cx: Cycle, c: CertificateSpec, cs: CertificateState, out: CertificateOutcome, e: unknown, cur: Current | undefined): void {
    const now = cx.now;
    cs.failures++;
    cs.nextAttemptAt = new Date(now.getTime() + retryDelay(cs.failures, this.#m.renewal.retryInitialMs, this.#m.renewal.retryMaxMs, this.#random)).toISOString();
    cs.lastResult = { ok: false, at: now.toISOString(), action: 'failed', code: codeOf(e), message: asError(e).message };
    cx.errors.push(e);
    Object.assign(out, { action: 'failed', ok: false, code: codeOf(e), message: asError(e).message });
    this.#log.error({ name: c.name, code: codeOf(e), err: asError(e).message, hint: isMutualError(e) ? e.hint : undefined, retryAt: cs.nextAttemptAt }, 'certificate not renewed; the files in place are kept');
    if (failedChannel.hasSubscribers) failedChannel.publish({ name: c.name, code: codeOf(e) });
    if (cur) this.#warnExpiry(cx, c, cur);
  }

  #succeeded(cx: Cycle, c: CertificateSpec, cs: CertificateState, out: CertificateOutcome, action: CertificateOutcome['action'], serial: string, previous: string | undefined): CertificateOutcome {
    const cur = this.#readCurrent(this.#store(c.name))!;
    cs.failures = 0;
    cs.nextAttemptAt = undefined;
    cs.lastSuccessAt = cx.now.toISOString();
    cs.lastResult = { ok: true, at: cx.now.toISOString(), action, serial } satisfies LastResult;
    if (cs.revokedSerial && cs.revokedSerial !== serial) cs.revokedSerial = undefined;
    this.#log.info({ name: c.name, action, serial, previous, notAfter: cur.info.notAfter.toISOString() }, `certificate ${action}`);
    if (deployedChannel.hasSubscribers) deployedChannel.publish({ name: c.name, action, serial, previous });
    return { ...out, action, ok: true, serial, previousSerial: previous, notAfter: cur.info.notAfter.toISOString(), renewAt: this.#renewAt(cur, cs).toISOString(), code: undefined, message: undefined };
  }

  #warnExpiry(cx: Cycle, c: CertificateSpec, cur: Current): void {
    const left = cur.info.notAfter.getTime() - cx.now.getTime();
    const life = cur.info.notAfter.getTime() - cur.info.notBefore.getTime();
    if (left > life * this.#m.renewal.warnFraction) return;
    const message = left <= 0 ? `${c.name}: ${cur.info.serial} expired at ${cur.info.notAfter.toISOString()}` : `${c.name}: ${cur.info.serial} expires in ${Math.round(left / 1000)} s and could not be renewed`;
    cx.warnings.push({ code: 'AGENT_CERT_EXPIRING', message });
    this.#log.warn({ code: 'AGENT_CERT_EXPIRING', name: c.name, serial: cur.info.serial, notAfter: cur.info.notAfter.toISOString() }, message);
  }

  #warnNames(cx: Cycle, c: CertificateSpec, info: CertificateInfo): void {
    const want = [...c.names.dns, ...c.names.ip, ...c.names.uri].sort().join(',');
    const got = [...info.names.dns, ...info.names.ip, ...info.names.uri].sort().join(',');
    if (want === got) return;
    const message = `${c.name}: the certificate names ${got}, agent.yaml asks for ${want}; renewals keep the certificate's names: enroll with a new token to change them`;
    cx.warnings.push({ code: 'CONFIG_INVALID', message });
    this.#log.warn({ name: c.name }, message);
  }

  // ---- deployment files in the watched folder

  /** Renders the watched folder's deployment files; those that changed become changes. */
  #templates(cx: Cycle, changes: Change[], planned: Map<string, Planned>): TemplateOutcome[] {
    const dir = this.#m.templatesDir;
    if (!dir) return [];
    const { templates, errors } = discoverTemplates(dir);
    const out: TemplateOutcome[] = [];
    for (const e of errors) {
      cx.errors.push(e);
      out.push({ file: String(e.fields.detail ?? '').split(':')[0], action: 'failed', ok: false, code: e.code, message: e.message });
      this.#log.error({ code: e.code, err: e.message }, 'invalid deployment file');
    }
    const claimed = new Set<string>([
      ...this.#m.certificates.flatMap((c) => targetsOf(c.files).map((t) => t.path)),
      ...this.#m.trust.bundles.map((b) => b.path), ...this.#m.trust.crls.map((c) => c.path),
    ]);
    const names = new Set(this.#m.certificates.map((c) => c.name));
    for (const t of templates) {
      const o: TemplateOutcome = { file: t.file, target: t.target, action: 'none', ok: true };
      out.push(o);
      try {
        const change = this.#template(cx, t, o, claimed, names, planned);
        if (change) changes.push(change);
        else cx.state.templates[t.file] = { ok: true, at: cx.now.toISOString(), action: o.action };
      } catch (e) {
        cx.errors.push(e);
        Object.assign(o, { action: 'failed', ok: false, code: codeOf(e), message: asError(e).message });
        cx.state.templates[t.file] = { ok: false, at: cx.now.toISOString(), action: 'failed', code: codeOf(e), message: asError(e).message };
        this.#log.error({ file: t.file, code: codeOf(e), err: asError(e).message }, 'could not deploy a file from the watched folder; the file in place was kept');
      }
    }
    return out;
  }

  #template(cx: Cycle, t: DeployTemplate, out: TemplateOutcome, claimed: Set<string>, names: Set<string>, planned: Map<string, Planned>): Change | undefined {
    if (claimed.has(t.target)) throw new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${t.file}: deploy-target ${t.target} is already managed by agent.yaml` });
    const stateDir = this.#m.stateDir;
    if (t.target === stateDir || t.target.startsWith(stateDir + path.sep)) throw new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${t.file}: deploy-target ${t.target} is inside the agent's state folder` });
    for (const p of t.placeholders) {
      if ('certificate' in p && !names.has(p.certificate)) throw new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${t.file}: {{${p.kind} ${p.certificate}}}: no certificate named ${p.certificate} in agent.yaml` });
    }
    const renders = new Set<string>();
    const render = (side: 'to' | 'from') => renderTemplate(t, {
      certificate: (name, kind) => {
        // A certificate deployed in this cycle is rendered from its new generation (and this file
        // is then deployed and rolled back with it).
        const p = planned.get(name);
        let dir = p?.[side];
        if (p) renders.add(name);
        else {
          const store = this.#store(name);
          const gen = store.current();
          if (!gen || !store.has(gen)) return undefined;
          dir = path.join(store.dir, gen);
        }
        if (!dir) return undefined;
        try {
          return fs.readFileSync(path.join(dir, GENERATION_FILES[kind]), 'utf8');
        } catch {
          return undefined;
        }
      },
      bundle: (parts) => cx.cache.bundle(parts, cx.now),
      crls: (issuers) => cx.cache.crls(issuers, 'pem', cx.now)?.toString('utf8'),
    });
    const text = render('to');
    if (text === undefined) {
      Object.assign(out, { action: 'waiting', message: 'waiting for the material it names (first enrollment or trust refresh)' });
      return undefined;
    }
    const data = Buffer.from(text);
    const ownership = templateOwnership(t);
    const hooks = { check: t.check, reload: t.reload, timeoutMs: t.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS };
    let prev = readPrevious(t.target);
    if (isSame(prev, data, ownership)) {
      // Already what this cycle deploys: a run stopped after writing it (crash) is being resumed.
      // It still goes with its certificates, so a rollback puts back what the generation they
      // return to renders.
      const back = renders.size ? render('from') : undefined;
      if (back === undefined || back === text) return undefined;
      prev = { path: t.target, data: Buffer.from(back), ownership: prev.ownership };
    }
    return { kind: 'file', path: t.target, data, ownership, prev, hooks, owner: out, renders: [...renders] };
  }

  // ---- scheduling

  #nextWake(cx: Cycle): Date {
    const now = cx.now.getTime();
    let next = now + MAX_IDLE_MS;
    for (const c of this.#m.certificates) {
      const cs = cx.state.certificates[c.name];
      const cur = this.#readCurrent(this.#store(c.name));
      if (cs?.nextAttemptAt) next = Math.min(next, Date.parse(cs.nextAttemptAt));
      else if (cur && cs) next = Math.min(next, this.#renewAt(cur, cs).getTime());
      else if (!cur) next = Math.min(next, now + this.#m.renewal.retryInitialMs);
    }
    next = Math.min(next, this.#trustDueAt(cx));
    return new Date(Math.max(next, now + MIN_CYCLE_GAP_MS));
  }
}
