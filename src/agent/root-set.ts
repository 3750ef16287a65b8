/**
 * The roots the agent trusts during a root rollover (issue 17). The pinned root (agent.yaml's
 * `ca.root` / `ca.rootFingerprint`) stays the anchor; a root the CA lists in /roots.json is added
 * only through a cross-certificate issued by a root already trusted (sdk `fetchRoots`), and a root
 * that leaves the list leaves the set. The set is kept in `<stateDir>/trust/roots.pem` and, per
 * root, its status in the state file; `include: [root]` bundles render all of it. A certificate
 * whose chain ends at a root marked retiring is renewed at once, so leaves move to the new root
 * during the overlap.
 */
import crypto from 'node:crypto';
import { parseCertificate } from '../core/certificate.ts';
import { readCertificateDers, toPem } from '../core/pem.ts';
import type { ListedRoot } from '../sdk/index.ts';
import type { Cycle } from './cycle-report.ts';

/** Most roots kept (a rollover has two). */
export const MAX_TRUSTED_ROOTS = 8;

/** A trusted root as the state file remembers it. */
export interface RootState {
  fingerprint: string;
  status: 'active' | 'retiring';
  retireAt?: string;
  /** When this agent first saw the root marked retiring: certificates obtained before are renewed. */
  retiringSince?: string;
}

/** The trusted roots in the state file, and the anchor they were accepted from. */
export interface RootsState {
  /** SHA-256 of the pinned root they grew from: another pin starts over. */
  anchor: string;
  roots: RootState[];
}

const fingerprint = (x: crypto.X509Certificate): string => crypto.createHash('sha256').update(x.raw).digest('hex');

/** The certificates of a PEM bundle (none when it does not read). */
function certificates(pem: string | undefined): crypto.X509Certificate[] {
  if (!pem) return [];
  try {
    return readCertificateDers(pem, { maxBlocks: MAX_TRUSTED_ROOTS }).map((d) => new crypto.X509Certificate(d));
  } catch {
    return [];
  }
}

/**
 * Every root trusted now, PEM: the set accepted from `anchor` (the pinned root) when the cache
 * holds one made from it, else the anchor alone.
 */
export function trustedRoots(cx: Cycle, anchor: string): string {
  const a = certificates(anchor)[0];
  const kept = cx.state.trust.roots;
  const cached = cx.cache.roots();
  if (!a || !kept || kept.anchor !== fingerprint(a) || !cached) return anchor;
  return certificates(cached).length ? cached : anchor;
}

/**
 * Records the roots accepted this cycle: the cache's roots.pem and each root's status; a root newly
 * marked retiring gets `retiringSince` (now).
 */
export function saveRoots(cx: Cycle, anchor: string, listed: readonly ListedRoot[]): void {
  const pem = listed.map((r) => r.pem).join('');
  if (cx.cache.roots() !== pem) cx.cache.saveRoots(pem);
  const before = new Map((cx.state.trust.roots?.roots ?? []).map((r) => [r.fingerprint, r]));
  const now = cx.now.toISOString();
  cx.state.trust.roots = {
    anchor: fingerprint(certificates(anchor)[0]),
    roots: listed.map((r) => {
      const prev = before.get(r.fingerprint);
      const retiringSince = r.status === 'retiring' ? (prev?.retiringSince ?? now) : undefined;
      return { fingerprint: r.fingerprint, status: r.status, ...(r.retireAt ? { retireAt: r.retireAt } : {}), ...(retiringSince ? { retiringSince } : {}) };
    }),
  };
}

/** The anchor alone as a listed root (a CA without /roots.json). */
export function anchorOnly(anchor: string): ListedRoot[] {
  const a = certificates(anchor)[0];
  return [{ pem: toPem(a.raw, 'CERTIFICATE'), fingerprint: fingerprint(a), status: 'active' }];
}

/**
 * Why a certificate must move to another root now, or undefined: its chain (`chainPem`, the
 * intermediate first) ends at a root marked retiring and it was obtained before that was seen
 * (`obtainedAt`), or its intermediate is on the cached root CRL.
 */
export function rootRotationReason(cx: Cycle, chainPem: string, obtainedAt: string | undefined): string | undefined {
  const issuer = certificates(chainPem)[0];
  if (!issuer) return undefined;
  const rootCrl = cx.cache.crlInfo('root');
  const serial = parseCertificate(issuer.raw).serial;
  // Once per CRL: a certificate obtained after the CRL was made came from what the CA issues now.
  if (rootCrl?.revoked.has(serial) && (!obtainedAt || Date.parse(obtainedAt) < rootCrl.thisUpdate.getTime())) return `its intermediate ${serial} is on the root CRL`;
  const state = cx.state.trust.roots;
  if (!state) return undefined;
  const pems = new Map(certificates(cx.cache.roots()).map((x) => [fingerprint(x), x]));
  for (const r of state.roots) {
    if (r.status !== 'retiring' || !r.retiringSince) continue;
    const root = pems.get(r.fingerprint);
    if (!root || !issuer.checkIssued(root) || !issuer.verify(root.publicKey)) continue;
    if (obtainedAt && Date.parse(obtainedAt) >= Date.parse(r.retiringSince)) continue;
    return `its chain ends at the root ${r.fingerprint.slice(0, 16)}.., which the CA is retiring${r.retireAt ? ` at ${r.retireAt}` : ''}`;
  }
  return undefined;
}

/**
 * True when `chainPem` (the CA's chain: an intermediate, maybe followed by a cross-certificate)
 * leads from `leaf` to one of the roots in `rootsPem`: the leaf's issuer signed by a root, or by
 * the key of a certificate later in the chain that a root signed.
 */
export function chainsToRoots(leaf: crypto.X509Certificate, chainPem: string, rootsPem: string): boolean {
  const chain = certificates(chainPem);
  const roots = certificates(rootsPem);
  const issuer = chain[0];
  if (!issuer || !leaf.verify(issuer.publicKey)) return false;
  const anchored = (c: crypto.X509Certificate) => roots.some((r) => c.checkIssued(r) && c.verify(r.publicKey));
  if (anchored(issuer)) return true;
  // leaf -> intermediate (new root) -> new-by-old (the old root): the cross-certificate carries the new root's key.
  return chain.slice(1).some((x) => x.ca && issuer.checkIssued(x) && issuer.verify(x.publicKey) && anchored(x));
}
