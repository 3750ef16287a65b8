/**
 * What the agent remembers between runs (`<stateDir>/state.json`): per certificate when it was
 * obtained, failures and the next retry, the last result, and the hashes of tokens already spent;
 * for trust files the last refresh. The certificates themselves are read from the generation
 * folders, never from here. Also the lock that keeps two agents off one state folder.
 */
import type { RootsState } from './root-set.ts';
import fs from 'node:fs';
import path from 'node:path';
import { MutualError } from '../core/errors.ts';
import { writeFileAtomic } from '../io/index.ts';
import { makeDirs } from './owned-file.ts';

/** Largest state file read. */
export const MAX_STATE_BYTES = 4 * 1024 * 1024;
/** Spent-token hashes remembered per certificate. */
export const MAX_SPENT_TOKENS = 16;
/** How long `once`, `rotate` and each daemon cycle wait for the lock by default. */
export const DEFAULT_LOCK_WAIT_MS = 30_000;
/** Pause between lock attempts. */
export const LOCK_POLL_MS = 100;

/** The outcome of the last attempt at something. */
export interface LastResult {
  ok: boolean;
  at: string;
  /** What was done: enrolled, renewed, redeployed, resumed, refreshed, rendered, none. */
  action: string;
  code?: string;
  message?: string;
  serial?: string;
}

/** Remembered per certificate. */
export interface CertificateState {
  /** Serial -> when it was obtained (see schedule.ts lifetimeStart). */
  obtained: Record<string, string>;
  failures: number;
  nextAttemptAt?: string;
  lastResult?: LastResult;
  lastSuccessAt?: string;
  /** SHA-256 of tokens already spent (a one-time token is never sent twice). */
  spentTokens: string[];
  /** Serial found on the CA's CRL. */
  revokedSerial?: string;
  /** Set once an expiry warning for this serial was logged. */
  warnedSerial?: string;
  /** An ACME certificate's renewal information (RFC 9773) and the time chosen in its window. */
  ari?: AriState;
}

/** What the ACME server last suggested for a certificate's renewal, and when to ask again. */
export interface AriState {
  serial: string;
  /** The RFC 9773 certificate id (sent as `replaces` when renewing). */
  id: string;
  start: string;
  end: string;
  /** The time chosen inside the window (now when the window had begun). */
  renewAt: string;
  /** When to fetch it again (the server's Retry-After). */
  checkAfter: string;
}

/** Remembered for the trust files. */
export interface TrustState {
  lastFetchAt?: string;
  failures: number;
  nextAttemptAt?: string;
  lastResult?: LastResult;
  /** Issuer -> thisUpdate / nextUpdate of the CRL in use. */
  crls: Record<string, { thisUpdate: string; nextUpdate?: string; entries: number }>;
  /** The roots trusted during a root rollover (agent/root-set.ts); absent until the CA lists some. */
  roots?: RootsState;
}

/** The whole state file. */
export interface AgentState {
  version: 1;
  certificates: Record<string, CertificateState>;
  trust: TrustState;
  templates: Record<string, LastResult>;
  lastCycle?: { at: string; exitCode: number; summary: string };
}

/** An empty state. */
export function emptyState(): AgentState {
  return { version: 1, certificates: {}, trust: { failures: 0, crls: {} }, templates: {} };
}

/** The state of one certificate, made when missing. */
export function certificateState(s: AgentState, name: string): CertificateState {
  return (s.certificates[name] ??= { obtained: {}, failures: 0, spentTokens: [] });
}

/** Reads state.json; a missing or unreadable file gives an empty state (it holds nothing that cannot be rebuilt). */
export function readState(stateDir: string): AgentState {
  const f = path.join(stateDir, 'state.json');
  try {
    const st = fs.statSync(f);
    if (st.size > MAX_STATE_BYTES) return emptyState();
    const s = JSON.parse(fs.readFileSync(f, 'utf8')) as AgentState;
    if (s?.version !== 1 || typeof s.certificates !== 'object' || typeof s.trust !== 'object') return emptyState();
    s.templates ??= {};
    s.trust.crls ??= {};
    return s;
  } catch {
    return emptyState();
  }
}

/** Writes state.json atomically. */
export function writeState(stateDir: string, s: AgentState): void {
  writeFileAtomic(path.join(stateDir, 'state.json'), JSON.stringify(s, null, 2) + '\n', { mode: 0o644, dirMode: 0o711 });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `<stateDir>/agent.lock` (O_EXCL, holding the pid). A lock whose process is gone is taken
 * over. Waits up to `waitMs`; then AGENT_LOCKED. Returns the release function.
 */
export async function acquireLock(stateDir: string, waitMs = DEFAULT_LOCK_WAIT_MS): Promise<() => void> {
  makeDirs(stateDir, 0o711);
  const f = path.join(stateDir, 'agent.lock');
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const fd = fs.openSync(f, 'wx', 0o644);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        fs.rmSync(f, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new MutualError('AGENT_WRITE_FAILED', { detail: `${f}: ${(e as Error).message}` });
    }
    let holder = NaN;
    try {
      holder = Number(fs.readFileSync(f, 'utf8').trim());
    } catch {
      continue;
    }
    if (!Number.isInteger(holder) || holder <= 0 || (holder !== process.pid && !alive(holder))) {
      // The holder died (SIGKILL, power loss): take the lock over. A rename keeps two takers from both winning.
      const stale = `${f}.stale-${process.pid}`;
      try {
        fs.renameSync(f, stale);
        const moved = Number(fs.readFileSync(stale, 'utf8').trim());
        // Another taker may have replaced the stale lock with a live one in between: put it back.
        if (moved !== holder && Number.isInteger(moved) && alive(moved)) fs.linkSync(stale, f);
        fs.rmSync(stale, { force: true });
      } catch {
        // Someone else took it over first.
      }
      continue;
    }
    if (Date.now() >= deadline) throw new MutualError('AGENT_LOCKED', { detail: `${f} is held by pid ${holder}` });
    await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
  }
}
