/**
 * Crash-safe deployment of a certificate and its key: generations and one symlink flip.
 *
 * Each certificate has a folder `<stateDir>/live/<name>/` holding complete generations
 * (`g-<time>-<serial>/` with key.pem, cert.pem, chain.pem, fullchain.pem and, when asked,
 * bundle.p12) and a symlink `current -> g-...`. Every target path in agent.yaml is a symlink to
 * `<stateDir>/live/<name>/current/<file>`. A generation is written under a temporary name, each
 * file fsynced, the folder fsynced, and then renamed into place; deploying it is one `rename()` of
 * a new `current` link over the old one. So at every instant, and after a crash at any step,
 * every target resolves into one complete generation: key and certificate always match.
 *
 * A journal (`journal.json`: from, to) is written before the new generation, and removed after
 * the check, reload and verify succeeded; a run that finds it resumes that deployment (or drops
 * it when the generation was never completed).
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { MutualError, isMutualError } from '../core/errors.ts';
import { readPemOrDer } from '../core/pem.ts';
import { syncDir, writeFileAtomic } from '../io/index.ts';
import type { CertificateFiles, Ownership } from './manifest.ts';
import { makeDirs, writeNewFile } from './owned-file.ts';

/** File names inside a generation. */
export const GENERATION_FILES = { key: 'key.pem', cert: 'cert.pem', chain: 'chain.pem', fullchain: 'fullchain.pem', pkcs12: 'bundle.p12' } as const;
/** What a generation's name looks like (also what a journal may name: never a path). */
export const GENERATION_NAME = /^g-[A-Za-z0-9-]{1,120}$/;
/** Mode of the agent's folders: traversable, not listable, so file modes alone decide who reads what. */
export const LIVE_DIR_MODE = 0o711;
/** Largest journal read. */
export const MAX_JOURNAL_BYTES = 16 * 1024;
/** Largest file adopted from a target on the first deployment. */
export const MAX_ADOPTED_FILE_BYTES = 1024 * 1024;

/** Where a deployment is; crash tests stop the agent at each of these. */
export const DEPLOY_STEPS = [
  'journal-written', 'staged', 'generation-ready', 'adopted', 'links-ready', 'flipped', 'checked', 'reloaded', 'verified', 'committed',
] as const;
export type DeployStep = (typeof DEPLOY_STEPS)[number] | 'rolled-back';

/** The material of one generation. */
export interface GenerationMaterial {
  certificatePem: string;
  chainPem: string;
  fullchainPem: string;
  keyPem: string;
  pkcs12?: Buffer;
}

/** A deployment in progress or interrupted. */
export interface Journal {
  from: string | null;
  to: string;
  startedAt: string;
  /** Links created by the first deployment (rolled back by removing them). */
  created?: string[];
  attempts: number;
  lastError?: string;
}

const fileFor = (role: keyof typeof GENERATION_FILES) => GENERATION_FILES[role];

/** The target paths of a certificate and the generation file each points at. */
export function targetsOf(files: CertificateFiles): { path: string; file: string }[] {
  const out: { path: string; file: string }[] = [];
  if (files.key) out.push({ path: files.key, file: fileFor('key') });
  if (files.cert) out.push({ path: files.cert, file: fileFor('cert') });
  if (files.chain) out.push({ path: files.chain, file: fileFor('chain') });
  if (files.fullchain) out.push({ path: files.fullchain, file: fileFor('fullchain') });
  if (files.pkcs12) out.push({ path: files.pkcs12.path, file: fileFor('pkcs12') });
  return out;
}

/** Replaces `p` with a symlink to `target` in one rename; the folder is fsynced. */
export function atomicSymlink(target: string, p: string): void {
  const dir = path.dirname(p);
  const tmp = path.join(dir, `.${path.basename(p)}.mutual-${crypto.randomBytes(6).toString('hex')}`);
  fs.symlinkSync(target, tmp);
  try {
    fs.renameSync(tmp, p);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  syncDir(dir);
}

const writeError = (p: string, e: unknown): MutualError =>
  isMutualError(e, 'AGENT_WRITE_FAILED') ? e : new MutualError('AGENT_WRITE_FAILED', { detail: `${p}: ${(e as NodeJS.ErrnoException).code ?? ''} ${(e as Error).message}`.trim() }, { cause: e });

/** One certificate's generations, `current` link and journal. */
export class GenerationStore {
  readonly dir: string;
  readonly #step: (s: DeployStep) => void;

  constructor(liveRoot: string, name: string, onStep: (s: DeployStep) => void = () => {}) {
    this.dir = path.join(liveRoot, name);
    this.#step = onStep;
  }

  /** The link value every target of `file` gets. */
  linkTarget(file: string): string {
    return path.join(this.dir, 'current', file);
  }

  /** The generation `current` points at, if any. */
  current(): string | undefined {
    try {
      return path.basename(fs.readlinkSync(path.join(this.dir, 'current')));
    } catch {
      return undefined;
    }
  }

  /** True when a complete generation of that name exists. */
  has(gen: string): boolean {
    return GENERATION_NAME.test(gen) && fs.existsSync(path.join(this.dir, gen, GENERATION_FILES.cert)) && fs.existsSync(path.join(this.dir, gen, GENERATION_FILES.key));
  }

  /** Reads a generation's certificate and key. */
  read(gen: string): { certificatePem: string; keyPem: string; info: CertificateInfo; dir: string } {
    const dir = path.join(this.dir, gen);
    const certificatePem = fs.readFileSync(path.join(dir, GENERATION_FILES.cert), 'utf8');
    const keyPem = fs.readFileSync(path.join(dir, GENERATION_FILES.key), 'utf8');
    return { certificatePem, keyPem, info: parseCertificate(readPemOrDer(certificatePem, ['CERTIFICATE'])), dir };
  }

  /** Files of a generation, for drift checks. */
  stat(gen: string, file: string): fs.Stats | undefined {
    try {
      return fs.statSync(path.join(this.dir, gen, file));
    } catch {
      return undefined;
    }
  }

  /** A new generation name (the journal names it before it is written). */
  newName(serial: string, now: Date): string {
    const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
    return `g-${stamp}-${serial.slice(0, 16)}-${crypto.randomBytes(3).toString('hex')}`;
  }

  /**
   * Writes a complete generation under a temporary name and renames it to `name`. Nothing a
   * reader can see changes.
   */
  stage(name: string, m: GenerationMaterial, certOwner: Ownership, keyMode: number): void {
    makeDirs(this.dir, LIVE_DIR_MODE);
    const tmp = path.join(this.dir, `.staging-${name}`);
    fs.mkdirSync(tmp, { mode: LIVE_DIR_MODE });
    try {
      fs.chmodSync(tmp, LIVE_DIR_MODE);
      const keyOwner = { ...certOwner, mode: keyMode };
      // The key first: a certificate without its key is useless, a key without a certificate harmless.
      writeNewFile(path.join(tmp, GENERATION_FILES.key), m.keyPem, keyOwner);
      writeNewFile(path.join(tmp, GENERATION_FILES.cert), m.certificatePem, certOwner);
      writeNewFile(path.join(tmp, GENERATION_FILES.chain), m.chainPem, certOwner);
      writeNewFile(path.join(tmp, GENERATION_FILES.fullchain), m.fullchainPem, certOwner);
      if (m.pkcs12) writeNewFile(path.join(tmp, GENERATION_FILES.pkcs12), m.pkcs12, keyOwner);
      syncDir(tmp);
      this.#step('staged');
      fs.renameSync(tmp, path.join(this.dir, name));
      syncDir(this.dir);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw writeError(tmp, e);
    }
    this.#step('generation-ready');
  }

  /**
   * Copies the files found at the targets (first deployment onto a host that already has files)
   * into a generation, so that turning the targets into links changes no byte a reader sees.
   * Returns undefined when no target exists.
   */
  adopt(targets: { path: string; file: string }[], now: Date): string | undefined {
    const found = targets.filter((t) => fs.existsSync(t.path));
    if (found.length === 0) return undefined;
    makeDirs(this.dir, LIVE_DIR_MODE);
    const name = `g-${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-adopted-${crypto.randomBytes(3).toString('hex')}`;
    const tmp = path.join(this.dir, `.staging-${name}`);
    fs.mkdirSync(tmp, { mode: LIVE_DIR_MODE });
    try {
      fs.chmodSync(tmp, LIVE_DIR_MODE);
      for (const t of found) {
        const st = fs.statSync(t.path);
        if (!st.isFile()) throw new MutualError('AGENT_WRITE_FAILED', { detail: `${t.path}: not a regular file` });
        if (st.size > MAX_ADOPTED_FILE_BYTES) throw new MutualError('AGENT_WRITE_FAILED', { detail: `${t.path}: larger than ${MAX_ADOPTED_FILE_BYTES} bytes` });
        writeNewFile(path.join(tmp, t.file), fs.readFileSync(t.path), { uid: st.uid, gid: st.gid, mode: st.mode & 0o777 });
      }
      syncDir(tmp);
      fs.renameSync(tmp, path.join(this.dir, name));
      syncDir(this.dir);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw writeError(found.map((t) => t.path).join(', '), e);
    }
    return name;
  }

  /** Points `current` at a generation: one rename. */
  flip(gen: string): void {
    atomicSymlink(gen, path.join(this.dir, 'current'));
  }

  /** Removes `current` (rolling back a first deployment). */
  removeCurrent(): void {
    fs.rmSync(path.join(this.dir, 'current'), { force: true });
    syncDir(this.dir);
  }

  /**
   * Checks that no target is a folder and that every target folder can be created and written,
   * before anything is changed. Throws AGENT_WRITE_FAILED naming the path.
   */
  precheck(targets: { path: string; file: string }[]): void {
    for (const t of targets) {
      try {
        const st = fs.lstatSync(t.path, { throwIfNoEntry: false });
        if (st?.isDirectory()) throw new MutualError('AGENT_WRITE_FAILED', { detail: `${t.path}: is a folder` });
        let dir = path.dirname(t.path);
        while (!fs.existsSync(dir)) dir = path.dirname(dir);
        if (!fs.statSync(dir).isDirectory()) throw new MutualError('AGENT_WRITE_FAILED', { detail: `${t.path}: ${dir} is not a folder` });
        fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
        // A probe write catches read-only file systems, which access() as root does not.
        const probe = path.join(dir, `.mutual-probe-${crypto.randomBytes(4).toString('hex')}`);
        fs.writeFileSync(probe, '', { flag: 'wx' });
        fs.rmSync(probe);
      } catch (e) {
        throw writeError(t.path, e);
      }
    }
  }

  /**
   * Makes every target a link into `current`. Returns the targets that did not exist before (a
   * rollback of a first deployment removes them).
   */
  link(targets: { path: string; file: string }[]): string[] {
    const created: string[] = [];
    for (const t of targets) {
      const want = this.linkTarget(t.file);
      try {
        const st = fs.lstatSync(t.path, { throwIfNoEntry: false });
        if (st?.isSymbolicLink() && fs.readlinkSync(t.path) === want) continue;
        makeDirs(path.dirname(t.path), 0o755);
        atomicSymlink(want, t.path);
        if (!st) created.push(t.path);
      } catch (e) {
        throw writeError(t.path, e);
      }
    }
    return created;
  }

  /** True when every target is our link. */
  linked(targets: { path: string; file: string }[]): boolean {
    return targets.every((t) => {
      try {
        return fs.readlinkSync(t.path) === this.linkTarget(t.file);
      } catch {
        return false;
      }
    });
  }

  /** Removes links made by a first deployment that is rolled back. */
  unlink(paths: string[]): void {
    for (const p of paths) {
      const st = fs.lstatSync(p, { throwIfNoEntry: false });
      if (st?.isSymbolicLink() && fs.readlinkSync(p).startsWith(this.dir + path.sep)) fs.rmSync(p);
    }
  }

  /** The journal of an interrupted or failed deployment, if any (an unreadable one is dropped). */
  readJournal(): Journal | undefined {
    const f = path.join(this.dir, 'journal.json');
    try {
      const text = fs.readFileSync(f, 'utf8');
      const j = (text.length > MAX_JOURNAL_BYTES ? null : JSON.parse(text)) as Journal | null;
      if (j && typeof j.to === 'string' && (j.from === null || typeof j.from === 'string')) return { ...j, attempts: typeof j.attempts === 'number' ? j.attempts : 0 };
      fs.rmSync(f, { force: true });
      return undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      // An unreadable journal cannot be resumed; `current` is complete whatever it points at.
      fs.rmSync(f, { force: true });
      return undefined;
    }
  }

  /** Writes the journal atomically. */
  writeJournal(j: Journal): void {
    makeDirs(this.dir, LIVE_DIR_MODE);
    writeFileAtomic(path.join(this.dir, 'journal.json'), JSON.stringify(j) + '\n', { mode: 0o600, dirMode: LIVE_DIR_MODE });
  }

  /** Removes the journal (the deployment is complete, or abandoned). */
  clearJournal(): void {
    fs.rmSync(path.join(this.dir, 'journal.json'), { force: true });
    syncDir(this.dir);
  }

  /** Removes interrupted staging folders and temporary links. */
  sweep(): void {
    if (!fs.existsSync(this.dir)) return;
    for (const e of fs.readdirSync(this.dir)) {
      if (e.startsWith('.staging-') || e.startsWith('.current.mutual-')) fs.rmSync(path.join(this.dir, e), { recursive: true, force: true });
    }
  }

  /** Removes generations other than `keep` (the current and the previous one stay for rollback). */
  prune(keep: (string | null | undefined)[]): void {
    const k = new Set(keep.filter(Boolean));
    for (const e of fs.readdirSync(this.dir)) {
      if (GENERATION_NAME.test(e) && !k.has(e)) this.remove(e);
    }
  }

  /** Removes one generation (never the current one). */
  remove(gen: string): void {
    if (GENERATION_NAME.test(gen) && gen !== this.current()) fs.rmSync(path.join(this.dir, gen), { recursive: true, force: true });
  }

  /** All generation names, oldest first. */
  generations(): string[] {
    if (!fs.existsSync(this.dir)) return [];
    return fs.readdirSync(this.dir).filter((e) => e.startsWith('g-')).sort();
  }
}
