/**
 * What one agent cycle reports, and the context its parts share while it runs: the clock reading,
 * the state file being updated, the errors and warnings gathered, the trust cache.
 *
 * The report types are public (re-exported by `agent.ts` and `index.ts`); {@link Cycle} and the
 * helpers are internal to the agent.
 */
import { isMutualError } from '../core/errors.ts';
import type { AgentState } from './agent-state.ts';
import type { DeployStep, GenerationStore } from './generation-store.ts';
import type { AgentManifest } from './manifest.ts';
import type { TrustCache } from './trust-cache.ts';

/** The logger the agent writes to (pino's shape). */
export interface AgentLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
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

/** What a running cycle carries from part to part. */
export interface Cycle {
  now: Date;
  state: AgentState;
  errors: unknown[];
  warnings: { code: string; message: string }[];
  force: Set<string>;
  ignoreBackoff: boolean;
  cache: TrustCache;
  trustOut?: TrustOutcome;
}

/** What the agent's parts are given by the `Agent`: its manifest and its injected dependencies. */
export interface AgentContext {
  manifest: AgentManifest;
  log: AgentLogger;
  /** Randomness of the retry jitter. */
  random: () => number;
  /** Called at each step of a certificate deployment. */
  onStep: (certificate: string, step: DeployStep) => void;
  /** The generation store of a managed certificate. */
  store: (name: string) => GenerationStore;
}

/** The message of a failure; a thrown non-Error (none of ours) still gets one. */
export const asError = (e: unknown): { message: string } => (e instanceof Error ? e : { message: String(e) });

/** The code reported for a failure: a MutualError's, an errno's, else `FAILURE`. */
export const codeOf = (e: unknown): string => (isMutualError(e) ? e.code : (e as NodeJS.ErrnoException)?.code ?? 'FAILURE');
