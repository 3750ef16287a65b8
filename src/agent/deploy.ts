/**
 * Deployment of a cycle's changes, in units: the changes that share a check and a reload command
 * (e.g. nginx's certificate, client-CA bundle and CRL) go together, and so does every deployment
 * file rendered from a certificate deployed in the same cycle, whatever its own hooks. A unit is put
 * in place together, each of its checks run once, each reload once, verified, and rolled back
 * together: a generation is never half deployed (the certificate's files on one certificate, a
 * deployment file on another). A certificate goes in place through {@link GenerationStore} (one
 * symlink flip, journal); a single file through an atomic rename with the previous bytes kept for
 * the rollback.
 */
import { MutualError, isMutualError } from '../core/errors.ts';
import type { CertificateState } from './agent-state.ts';
import { asError, type CertificateOutcome, type TemplateOutcome } from './cycle-report.ts';
import { targetsOf, type DeployStep, type GenerationStore, type Journal } from './generation-store.ts';
import { reloadService, runCommand, verifyServed, describeCommand } from './hooks.ts';
import type { CertificateSpec, HookSpec, Ownership } from './manifest.ts';
import { restorePrevious, writeOwnedFile, type PreviousFile } from './owned-file.ts';
import type { Current } from './plan-certificate.ts';

/** A file a cycle deploys: a trust file or a deployment file of the watched folder (`owner`). */
export interface FileChange {
  kind: 'file';
  path: string;
  data: Buffer;
  ownership: Ownership;
  /** What goes back on a rollback. */
  prev: PreviousFile;
  hooks: HookSpec;
  owner: 'trust' | TemplateOutcome;
  /** The certificates deployed in this cycle that this file is rendered from. */
  renders?: string[];
}

/** A certificate generation a cycle deploys (staged, its journal written). */
export interface CertChange {
  kind: 'cert';
  c: CertificateSpec;
  cs: CertificateState;
  store: GenerationStore;
  journal: Journal;
  serial: string;
  action: CertificateOutcome['action'];
  cur?: Current;
  out: CertificateOutcome;
  hooks: HookSpec;
}

/** A change a cycle deploys. */
export type Change = FileChange | CertChange;

const hooksKey = (h: HookSpec): string => JSON.stringify([h.check ? describeCommand(h.check) : '', h.reload ? describeCommand(h.reload) : '']);

/**
 * Splits a cycle's changes into deployment units, each in the order planned: changes that share a
 * check and a reload, and a deployment file with the certificates of this cycle it renders (its
 * {@link FileChange} `renders`), transitively. A change tied to nothing goes alone.
 */
export function deploymentUnits<T extends { hooks: HookSpec; name?: string; renders?: string[] }>(changes: T[]): T[][] {
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

/** {@link deploymentUnits} of a cycle's {@link Change}s: a certificate is named by its spec, a file by what it renders. */
export function unitsOf(changes: Change[]): Change[][] {
  const units = deploymentUnits(changes.map((ch) => ({ ch, hooks: ch.hooks, name: ch.kind === 'cert' ? ch.c.name : undefined, renders: ch.kind === 'file' ? ch.renders : undefined })));
  return units.map((unit) => unit.map((u) => u.ch));
}

/**
 * Deploys one unit (see {@link deploymentUnits}): every file and certificate in place, each
 * distinct check once, each distinct reload once, the verify steps; on a failure everything goes
 * back and every service already reloaded is reloaded again, and the certificates' journals stay
 * (with the error) so the next attempt deploys the same generations. Resolves to the failure, or
 * undefined when the unit is deployed; the caller commits or records it.
 */
export async function deployUnit(group: Change[], now: Date, onStep: (certificate: string, step: DeployStep) => void): Promise<unknown> {
  // The distinct check/reload pairs of the unit, in order; each runs once with the longest limit of its changes.
  const hookSets = new Map<string, { hooks: HookSpec; timeoutMs: number }>();
  for (const ch of group) {
    if (!ch.hooks.check && !ch.hooks.reload) continue;
    const k = hooksKey(ch.hooks);
    const h = hookSets.get(k);
    hookSets.set(k, { hooks: ch.hooks, timeoutMs: Math.max(h?.timeoutMs ?? 0, ch.hooks.timeoutMs) });
  }
  const certs = group.filter((ch): ch is CertChange => ch.kind === 'cert');
  const steps = (s: DeployStep) => certs.forEach((ch) => onStep(ch.c.name, s));
  const undo: (() => void)[] = [];
  const reloaded: { hooks: HookSpec; timeoutMs: number }[] = [];
  try {
    for (const ch of group) {
      if (ch.kind === 'file') {
        writeOwnedFile(ch.path, ch.data, ch.ownership);
        undo.push(() => restorePrevious(ch.prev));
      } else {
        undo.push(() => unflip(ch));
        flip(ch, now, onStep);
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
      onStep(ch.c.name, 'verified');
    }
    return undefined;
  } catch (e) {
    const error = await rollBack(e, undo, reloaded);
    // The journals stay: the next attempt deploys the same generations (no new certificate, no token).
    for (const ch of certs) {
      ch.store.writeJournal({ ...ch.journal, lastError: asError(error).message });
      if (!isMutualError(error, 'AGENT_ROLLBACK_FAILED')) onStep(ch.c.name, 'rolled-back');
    }
    return error;
  }
}

/**
 * Puts every file back and reloads every reloaded service again, even when one of them fails: the
 * deployment's failure `e` is returned, or AGENT_ROLLBACK_FAILED naming both when the rollback failed.
 */
async function rollBack(e: unknown, undo: (() => void)[], reloaded: { hooks: HookSpec; timeoutMs: number }[]): Promise<unknown> {
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
  if (failed === undefined) return e;
  return new MutualError('AGENT_ROLLBACK_FAILED', { detail: `${asError(e).message}; then the rollback failed: ${asError(failed).message}` }, { cause: failed });
}

/** Puts a certificate's staged generation in place (links, one flip), adopting existing files on a first deployment. */
function flip(ch: CertChange, now: Date, onStep: (certificate: string, step: DeployStep) => void): void {
  const { store, c } = ch;
  const j = ch.journal;
  const step = (s: DeployStep) => onStep(c.name, s);
  const targets = targetsOf(c.files);
  j.attempts++;
  store.writeJournal(j);
  if (store.current() === undefined) {
    if (j.from === null) {
      // First deployment onto files that are already there: they become generation "adopted",
      // so the rollback has something to go back to and turning them into links changes no byte.
      const adopted = store.adopt(targets, now);
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
function unflip(ch: CertChange): void {
  const j = ch.journal;
  if (j.from && ch.store.has(j.from)) ch.store.flip(j.from);
  else {
    ch.store.unlink(j.created ?? []);
    ch.store.removeCurrent();
  }
}
