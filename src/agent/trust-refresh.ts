/**
 * The agent's trust material: the pinned root, the CA certificates and the CRLs, fetched on their
 * own schedule (every `trust.refresh`, and well before a CRL's nextUpdate), checked, kept in the
 * {@link TrustCache}, and rendered into agent.yaml's trust bundles and CRL files. A fetch that
 * fails keeps the files in place and retries with backoff.
 */
import fs from 'node:fs';
import { MutualError, isMutualError } from '../core/errors.ts';
import { fetchCaCertificates, fetchCrl, fetchPinnedRoot, fetchRoots, fingerprintOf, readTokenClaims } from '../sdk/index.ts';
import { checkCrl, isNotOlder } from './crl-check.ts';
import { asError, codeOf, type AgentContext, type Cycle, type TrustOutcome } from './cycle-report.ts';
import type { FileChange } from './deploy.ts';
import type { AgentManifest, BundlePart, CrlIssuer, HookSpec, Ownership } from './manifest.ts';
import { readToken } from './obtain-certificate.ts';
import { isSame, readPrevious, type PreviousFile } from './owned-file.ts';
import { retryDelay } from './schedule.ts';
import { CRL_SIGNER, retiredSlot, rootSlot, type CrlSlot } from './trust-cache.ts';
import { anchorOnly, saveRoots, trustedRoots } from './root-set.ts';

/** A CRL is refetched once this fraction of its validity (thisUpdate..nextUpdate) has passed. */
export const CRL_REFRESH_FRACTION = 0.5;
/** A CRL with less than this fraction of its validity left is reported (AGENT_CRL_STALE). */
export const CRL_WARN_FRACTION = 0.25;

/**
 * The pinned root (PEM): agent.yaml's `ca.root` file, or the CA's root checked against
 * `ca.rootFingerprint` (or, when none is set, the fingerprint the first configured token carries),
 * cached after the first fetch.
 */
export async function pinnedRoot(m: AgentManifest, cx: Cycle): Promise<string> {
  const ca = m.ca;
  if (!ca) throw new MutualError('CONFIG_INVALID', { detail: `${m.file} has no ca: section (every certificate is obtained over ACME)` });
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
    for (const c of m.certificates) {
      const t = readToken(c);
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

function crlIssuersNeeded(m: AgentManifest): Set<CrlIssuer> {
  const s = new Set<CrlIssuer>();
  for (const c of m.trust.crls) for (const i of c.issuers) s.add(i);
  // The CRL of each managed certificate's issuer tells the agent when its own certificate is revoked.
  // ACME certificates come from another issuer, whose revocations ARI reports.
  for (const c of m.certificates) if (!c.acme) s.add(c.profile === 'server' ? 'server' : 'client');
  return s;
}

/**
 * The CRLs kept fresh: each needed issuer's, and for a server or client issuer those of its
 * intermediates retired by a key rotation that are still valid (what the old key issued is
 * revoked on those).
 */
function crlSlots(m: AgentManifest, cx: Cycle): CrlSlot[] {
  const slots: CrlSlot[] = [];
  for (const issuer of crlIssuersNeeded(m)) {
    slots.push(issuer);
    if (issuer !== 'root') for (const r of cx.cache.retired(issuer, cx.now)) slots.push(r.slot);
  }
  return slots;
}

/** When the trust material is next due (ms since the epoch; 0 when something is missing, Infinity when nothing is managed). */
export function trustDueAt(m: AgentManifest, cx: Cycle): number {
  const t = cx.state.trust;
  if (!m.ca || m.trust.bundles.length + m.trust.crls.length + m.certificates.filter((c) => !c.acme).length === 0) return Infinity;
  let due = t.lastFetchAt ? Date.parse(t.lastFetchAt) + m.trust.refreshMs : 0;
  for (const issuer of crlSlots(m, cx)) {
    const c = t.crls[issuer];
    if (!c || !cx.cache.crl(issuer)) return 0;
    if (c.nextUpdate) {
      const a = Date.parse(c.thisUpdate);
      due = Math.min(due, a + (Date.parse(c.nextUpdate) - a) * CRL_REFRESH_FRACTION);
    }
  }
  const parts = new Set<BundlePart>(m.trust.bundles.flatMap((b) => b.include));
  for (const p of parts) if (!cx.cache.caCertificate(p)) return 0;
  if (t.nextAttemptAt && !cx.ignoreBackoff) due = Math.max(due, Date.parse(t.nextAttemptAt));
  return due;
}

/**
 * Refreshes the trust material when due (a failure is recorded, with its retry time, and the cache
 * kept), then reports every CRL close to its nextUpdate (AGENT_CRL_STALE), fetched or not.
 */
export async function refreshTrust(ctx: AgentContext, cx: Cycle, root: string | undefined, rootError: unknown): Promise<TrustOutcome> {
  const m = ctx.manifest;
  const out: TrustOutcome = { fetched: false, ok: true, changed: [] };
  cx.trustOut = out;
  const ts = cx.state.trust;
  const now = cx.now;
  if (trustDueAt(m, cx) <= now.getTime()) {
    try {
      if (!root) throw rootError;
      await fetchTrust(ctx, cx, root);
      out.fetched = true;
      ts.lastFetchAt = now.toISOString();
      ts.failures = 0;
      ts.nextAttemptAt = undefined;
      ts.lastResult = { ok: true, at: now.toISOString(), action: 'refreshed' };
    } catch (e) {
      ts.failures++;
      ts.nextAttemptAt = new Date(now.getTime() + retryDelay(ts.failures, m.renewal.retryInitialMs, m.renewal.retryMaxMs, ctx.random)).toISOString();
      ts.lastResult = { ok: false, at: now.toISOString(), action: 'refresh', code: codeOf(e), message: asError(e).message };
      Object.assign(out, { ok: false, code: codeOf(e), message: asError(e).message });
      cx.errors.push(e);
      ctx.log.warn({ code: codeOf(e), err: asError(e).message, retryAt: ts.nextAttemptAt }, 'could not refresh the CA certificates and CRLs; the files in place are kept');
    }
  }
  // A CRL close to its nextUpdate is reported whether or not this cycle fetched.
  for (const issuer of crlSlots(m, cx)) {
    const c = ts.crls[issuer];
    if (!c?.nextUpdate) continue;
    const a = Date.parse(c.thisUpdate);
    const b = Date.parse(c.nextUpdate);
    if (b - now.getTime() < (b - a) * CRL_WARN_FRACTION) {
      const message = b <= now.getTime() ? `the ${issuer} CRL expired at ${c.nextUpdate}` : `the ${issuer} CRL expires at ${c.nextUpdate}`;
      cx.warnings.push({ code: 'AGENT_CRL_STALE', message });
      ctx.log.warn({ code: 'AGENT_CRL_STALE', issuer, nextUpdate: c.nextUpdate }, message);
    }
  }
  return out;
}

/** Fetches and checks every CA certificate and CRL, then updates the cache; nothing changes unless all check out. */
async function fetchTrust(ctx: AgentContext, cx: Cycle, root: string): Promise<void> {
  const m = ctx.manifest;
  const url = m.ca!.url;
  // The roots: those trusted so far, plus a new one the CA lists with a cross-certificate from one
  // of them, minus one it no longer lists (a root rollover; a CA without /roots.json has the pinned root).
  const before = trustedRoots(cx, root);
  const listed = (await fetchRoots(url, before, cx.now))?.roots ?? anchorOnly(root);
  const after = listed.map((r) => r.pem).join('');
  // The TLS connection, and what a retired intermediate may be signed by to be dropped rather than
  // refused: every root trusted before this step too, and the pinned root (a retired root's
  // intermediates stay listed by the CA until they expire).
  const cas = await fetchCaCertificates(url, after, cx.now, before + after + root);
  const wanted: { slot: CrlSlot; signer: string }[] = [];
  for (const issuer of crlIssuersNeeded(m)) {
    // The root CRL is signed by the current root, whichever that is: it is checked against each (checkRootCrl).
    const signer = issuer === 'root' ? listed[0].pem : cas[CRL_SIGNER[issuer]];
    wanted.push({ slot: issuer, signer });
    for (const r of cas.retired) if (r.role === issuer) wanted.push({ slot: retiredSlot(r.role, r.keyId), signer: r.pem });
  }
  const fresh = new Map<CrlSlot, { der: Buffer; info: ReturnType<typeof checkCrl> }>();
  const otherRoots: CrlSlot[] = [];
  for (const { slot, signer } of wanted) {
    const der = await fetchCrl(url, before + after, slot);
    if (slot !== 'root') {
      fresh.set(slot, { der, info: checkCrl(der, signer, cx.now, `the ${slot} CRL`) });
      continue;
    }
    const { info, by } = checkRootCrl(der, listed.map((r) => r.pem), cx.now);
    fresh.set(slot, { der, info });
    // During a rollover each root signs its own CRL: the others' too, for relying parties that
    // check every level of a chain ending at any trusted root.
    for (const [i, r] of listed.entries()) {
      if (i === by) continue;
      const other = rootSlot(r.fingerprint);
      const d = await fetchCrl(url, before + after, other);
      fresh.set(other, { der: d, info: checkCrl(d, r.pem, cx.now, `the CRL of the root ${r.fingerprint.slice(0, 16)}`) });
      otherRoots.push(other);
    }
  }
  // Everything checked: now the cache changes (roots and CA certificates first, the CRLs they sign after).
  saveRoots(cx, root, listed);
  // The `root` part stays the pinned root (the anchor the cycle starts from, even once a rollover
  // retired it); the roots trusted now are roots.pem.
  const parts = { ...cas, root };
  for (const part of ['root', 'server-ca', 'client-ca'] as const) {
    if (cx.cache.caCertificate(part) !== parts[part]) cx.cache.saveCaCertificate(part, parts[part]);
  }
  for (const role of ['server', 'client'] as const) {
    cx.cache.saveRetired(role, cas.retired.filter((r) => r.role === role).map((r) => r.pem));
  }
  for (const slot of Object.keys(cx.state.trust.crls)) {
    if ((slot.includes('.') || slot.startsWith('root-')) && !fresh.has(slot as CrlSlot)) delete cx.state.trust.crls[slot];
  }
  cx.cache.keepRootCrls(otherRoots);
  for (const [slot, { der, info }] of fresh) {
    const cached = cx.cache.crlInfo(slot);
    // Older means older from the same key: after a root retirement /crl/root.crl is the new root's,
    // numbered from 1, and must replace the old root's (kept, its CRL would block every new chain).
    const sameSigner = cached?.authorityKeyId && info.authorityKeyId ? cached.authorityKeyId.equals(info.authorityKeyId) : true;
    if (cached && sameSigner && !isNotOlder(info, cached)) {
      // An older CRL than the one in use (a replay, or a lagging replica) would un-revoke certificates.
      ctx.log.warn({ issuer: slot, cached: cached.thisUpdate, fetched: info.thisUpdate }, 'the CA served an older CRL than the one in use; kept the newer one');
      continue;
    }
    if (!cached || !cached.der.equals(der)) cx.cache.saveCrl(slot, der);
    cx.state.trust.crls[slot] = { thisUpdate: info.thisUpdate.toISOString(), nextUpdate: info.nextUpdate?.toISOString(), entries: info.revoked.size };
  }
}

/**
 * Checks the root CRL against each trusted root (during a rollover `/crl/root.crl` is the old
 * root's until it is retired); returns it with the index of the root that signed it; the first
 * error when none did.
 */
function checkRootCrl(der: Buffer, roots: string[], now: Date): { info: ReturnType<typeof checkCrl>; by: number } {
  let first: unknown;
  for (const [by, r] of roots.entries()) {
    try {
      return { info: checkCrl(der, r, now, 'the root CRL'), by };
    } catch (e) {
      first ??= e;
    }
  }
  throw first;
}

/** The trust files whose content (from the cache) or ownership differs from what is on disk. */
export function trustChanges(m: AgentManifest, cx: Cycle): FileChange[] {
  const changes: FileChange[] = [];
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
  for (const b of m.trust.bundles) add(b.path, ((pem) => pem === undefined ? undefined : Buffer.from(pem))(cx.cache.bundle(b.include, cx.now)), b.ownership, b.hooks);
  for (const c of m.trust.crls) add(c.path, cx.cache.crls(c.issuers, c.format, cx.now), c.ownership, c.hooks);
  return changes;
}

/** Records that a unit holding trust files failed to deploy (once per distinct failure). */
export function recordTrustFailure(ctx: AgentContext, cx: Cycle, out: TrustOutcome, e: unknown): void {
  if (!out.ok && out.code === codeOf(e)) return;
  Object.assign(out, { ok: false, code: codeOf(e), message: asError(e).message });
  cx.errors.push(e);
  ctx.log.error({ code: codeOf(e), err: asError(e).message }, 'could not deploy the trust files; the previous files were kept');
}
