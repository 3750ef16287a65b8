/**
 * One PKCS#11 module (the vendor's library) in this process: loaded once per path, because
 * C_Initialize and C_Finalize act on the whole process, and every token and key of that library
 * shares its fate. This is the one process-wide registry of the keys folder, and why it is one:
 * two owners of one library would finalize it under each other.
 *
 * Availability (issue 18): a device error marks the module down; its sessions are forgotten and it
 * is finalized once no signature is in flight on libuv's pool (finalizing under a running C_Sign
 * is how a module crashes). While down, each caller gets `HSM_UNAVAILABLE` at once, except when a
 * reconnect is due (at most one per {@link RECONNECT_INTERVAL_MS} by the caller's clock): then that
 * caller re-initializes synchronously, so callers that come together share the one attempt.
 */
import fs from 'node:fs';
import { isAbsolute } from 'node:path';
import { MutualError } from '../../core/errors.ts';
import { CKF_OS_LOCKING_OK, CKR, DEVICE_ERRORS, ckrName, ckrOf, loadBinding, type Binding, type BindingLoader, type Cryptoki } from './binding.ts';

/** Least time between two reconnect attempts of a module that is down. */
export const RECONNECT_INTERVAL_MS = 1000;

/** What the module's owners (its tokens' session pools) must do when it goes down. */
export interface ModuleListener {
  /** Forget sessions, login and waiters: the handles die with C_Finalize. */
  moduleDown(error: MutualError): void;
  /** Close sessions (closeKeyStores). */
  close(): void;
}

/** A loaded PKCS#11 module; see the file's top comment. */
export class Pkcs11Module {
  readonly path: string;
  readonly binding: Binding;
  #ck: Cryptoki | undefined;
  #up = false;
  #closed = false;
  #down: MutualError | undefined;
  /** Why the library did not load, repeated until the next attempt is due. */
  #loadError: MutualError | undefined;
  #lastAttempt = -Infinity;
  #inflight = 0;
  #finalizePending = false;
  #generation = 0;
  readonly #listeners = new Set<ModuleListener>();

  constructor(path: string, binding: Binding) {
    this.path = path;
    this.binding = binding;
  }

  /** Counts initializations: a session, login or object handle from an older one is dead. */
  get generation(): number {
    return this.#generation;
  }

  /** The initialized library. Call {@link ensureUp} first. */
  get ck(): Cryptoki {
    if (!this.#ck || !this.#up) throw this.#unavailable();
    return this.#ck;
  }

  listen(l: ModuleListener): void {
    this.#listeners.add(l);
  }

  /**
   * Makes sure the library is initialized: at once when up; when down, re-initializes if a reconnect
   * is due at `now` (ms), else throws.
   * @throws MutualError `HSM_UNAVAILABLE`; `HSM_MODULE_INVALID` when the library cannot be loaded.
   */
  ensureUp(now: number): void {
    if (this.#up) return;
    // Not while a signature started before the fall is still running: its C_Finalize is pending.
    if (this.#inflight > 0) throw this.#unavailable();
    if (!this.#closed && now - this.#lastAttempt < RECONNECT_INTERVAL_MS) throw this.#loadError ?? this.#unavailable();
    this.#lastAttempt = now;
    this.#closed = false;
    if (!this.#ck) {
      const ck = new this.binding.PKCS11();
      try {
        ck.load(this.path);
      } catch (cause) {
        this.#loadError = new MutualError('HSM_MODULE_INVALID', { detail: `${this.path} could not be loaded as a PKCS#11 module: ${ckrName(cause)}`, path: this.path }, { cause });
        throw this.#loadError;
      }
      this.#ck = ck;
      this.#loadError = undefined;
    }
    try {
      // Without CKF_OS_LOCKING_OK, SoftHSM2 2.6.1 crashed under two sessions signing at once on
      // libuv's threads (measured): the flag tells the library that it is called from threads.
      this.#ck.C_Initialize({ flags: CKF_OS_LOCKING_OK });
    } catch (e) {
      if (ckrOf(e) !== CKR.CRYPTOKI_ALREADY_INITIALIZED) {
        this.#down = new MutualError('HSM_UNAVAILABLE', { detail: `C_Initialize of ${this.path}: ${ckrName(e)}`, ckr: ckrName(e) }, { cause: e });
        throw this.#down;
      }
    }
    this.#up = true;
    this.#down = undefined;
    this.#generation++;
  }

  /**
   * Turns an error of a call into the MutualError to throw: a device error marks the module down
   * (see the file's top comment) and becomes `HSM_UNAVAILABLE`; a MutualError passes as it is.
   */
  failure(e: unknown, what: string, now: number): MutualError {
    if (e instanceof MutualError) return e;
    const ckr = ckrOf(e);
    const detail = `${what}: ${ckrName(e)}`;
    if (ckr === CKR.MECHANISM_INVALID) return new MutualError('HSM_MECHANISM_UNSUPPORTED', { detail }, { cause: e });
    if (ckr === undefined || DEVICE_ERRORS.has(ckr)) {
      this.markDown(new MutualError('HSM_UNAVAILABLE', { detail, ckr: ckrName(e) }, { cause: e }), now);
      return this.#unavailable();
    }
    return new MutualError('HSM_UNAVAILABLE', { detail, ckr: ckrName(e) }, { cause: e });
  }

  /** Marks the module down (idempotent); a reconnect is due {@link RECONNECT_INTERVAL_MS} after `now`. */
  markDown(why: MutualError, now: number): void {
    if (!this.#up) return;
    this.#up = false;
    this.#down = why;
    this.#lastAttempt = now;
    for (const l of this.#listeners) l.moduleDown(why);
    this.#finalizeWhenIdle();
  }

  /** Brackets a call running on libuv's pool, so that C_Finalize waits for it. */
  begin(): void {
    this.#inflight++;
  }
  end(): void {
    this.#inflight--;
    if (this.#inflight === 0) {
      if (this.#finalizePending) this.#finalizeWhenIdle();
      else for (const resolve of this.#idle.splice(0)) resolve();
    }
  }

  /** Why the module is down, for health(); undefined when up. */
  get downReason(): MutualError | undefined {
    return this.#up ? undefined : this.#down;
  }

  /**
   * Closes every session and finalizes, once the signatures in flight have returned; the next use
   * re-initializes at once.
   */
  close(): Promise<void> {
    for (const l of this.#listeners) l.close();
    if (this.#up) {
      this.#up = false;
      this.#finalizeWhenIdle();
    }
    this.#closed = true;
    this.#down = undefined;
    return this.#inflight === 0 ? Promise.resolve() : new Promise((resolve) => this.#idle.push(resolve));
  }

  #idle: (() => void)[] = [];

  #finalizeWhenIdle(): void {
    if (this.#inflight > 0) {
      this.#finalizePending = true;
      return;
    }
    this.#finalizePending = false;
    try {
      this.#ck?.C_Finalize();
    } catch {
      // A module that lost its device may refuse to finalize; it is re-initialized all the same.
    }
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  #unavailable(): MutualError {
    const d = this.#down;
    return new MutualError('HSM_UNAVAILABLE', { detail: d?.fields.detail ?? `${this.path} is not initialized`, ckr: d?.fields.ckr }, d ? { cause: d } : undefined);
  }
}

const modules = new Map<string, Pkcs11Module>();

/** Permission bits a module file must not have: writable by group or others (they could swap the code we run). */
const GROUP_OTHER_WRITE = 0o022;

/**
 * The process's module for `path`, checked and registered on first use (the library is loaded at
 * the first {@link Pkcs11Module.ensureUp}).
 * @throws MutualError `HSM_MODULE_INVALID` (not absolute, not a regular file, writable by group or
 *   others); `HSM_BINDING_MISSING` when pkcs11js cannot be loaded.
 */
export function moduleFor(path: string, loader?: BindingLoader): Pkcs11Module {
  const known = modules.get(path);
  if (known) return known;
  const bad = (why: string): never => {
    throw new MutualError('HSM_MODULE_INVALID', { detail: `module ${path} ${why}`, path });
  };
  if (!isAbsolute(path)) bad('is not an absolute path');
  let real: string;
  try {
    real = fs.realpathSync(path);
  } catch {
    return bad('does not exist');
  }
  for (const f of new Set([path, real])) {
    const st = fs.statSync(f);
    if (!st.isFile()) bad('is not a regular file');
    if (st.mode & GROUP_OTHER_WRITE) bad(`is writable by group or others (mode 0${(st.mode & 0o777).toString(8)})`);
  }
  const m = new Pkcs11Module(path, loadBinding(loader));
  modules.set(path, m);
  return m;
}

/** Closes every module of the process (see closeKeyStores). */
export async function closeModules(): Promise<void> {
  await Promise.all([...modules.values()].map((m) => m.close()));
}
