/**
 * Exit codes of `mutual agent once` and `mutual agent rotate` (documented in docs/agent.md). When
 * several things failed in one run, the most severe code wins, in this order: 14, 13, 12, 11,
 * 10, 15, 1.
 */
import { isMutualError, type ErrorCode } from '../core/errors.ts';

/** The codes. 0-2 mean what they mean for every `mutual` command. */
export const AGENT_EXIT = {
  /** Everything is in place (whether or not something was renewed). */
  OK: 0,
  /** Unexpected failure (a bug, or the system). */
  FAILURE: 1,
  /** The command line is wrong. */
  USAGE: 2,
  /** agent.yaml or a deployment file in the watched folder is invalid. */
  CONFIG: 10,
  /** The CA could not be reached or gave nothing usable (CRL, root); the files in place were kept. Retry later. */
  CA_UNAVAILABLE: 11,
  /** The CA refused, or an operator must act: revoked, expired beyond the grace window, a token needed or refused. */
  NEEDS_OPERATOR: 12,
  /** New files could not be written, or check/reload/verify failed and the previous files were restored. */
  DEPLOY_FAILED: 13,
  /** A failed deployment could not be rolled back: look at the service now. */
  ROLLBACK_FAILED: 14,
  /** Another agent holds the state folder's lock. */
  LOCKED: 15,
} as const;

const DEPLOY: readonly ErrorCode[] = ['AGENT_WRITE_FAILED', 'AGENT_CHECK_FAILED', 'AGENT_RELOAD_FAILED', 'AGENT_VERIFY_FAILED'];
const CONFIG: readonly ErrorCode[] = ['CONFIG_INVALID', 'AGENT_TEMPLATE_INVALID'];
const UNAVAILABLE: readonly ErrorCode[] = ['CA_UNAVAILABLE', 'RATE_LIMITED', 'CRL_MALFORMED', 'CRL_BAD_SIGNATURE', 'CRL_TOO_LARGE', 'AGENT_CRL_STALE', 'AGENT_CERT_EXPIRING', 'INPUT_TOO_LARGE'];

/** The exit code for one failure. */
export function exitCodeOf(e: unknown): number {
  if (!isMutualError(e)) return AGENT_EXIT.FAILURE;
  if (e.code === 'AGENT_ROLLBACK_FAILED') return AGENT_EXIT.ROLLBACK_FAILED;
  if (e.code === 'AGENT_LOCKED') return AGENT_EXIT.LOCKED;
  if (DEPLOY.includes(e.code)) return AGENT_EXIT.DEPLOY_FAILED;
  if (CONFIG.includes(e.code)) return AGENT_EXIT.CONFIG;
  if (e.code === 'ACME_CLIENT_FAILED') return acmeRefused(e.fields) ? AGENT_EXIT.NEEDS_OPERATOR : AGENT_EXIT.CA_UNAVAILABLE;
  if (UNAVAILABLE.includes(e.code) || e.status >= 500) return AGENT_EXIT.CA_UNAVAILABLE;
  // Every other coded refusal (4xx, 495): revoked, expired, token, policy, authentication, pinning.
  return AGENT_EXIT.NEEDS_OPERATOR;
}

/** Problems of an ACME server that a retry may cure (RFC 8555 6.7); any other problem is a refusal an operator must look at. */
const ACME_TRANSIENT = new Set(['serverInternal', 'rateLimited', 'badNonce'].map((t) => `urn:ietf:params:acme:error:${t}`));

/** True when an ACME failure is the server's refusal (a problem document, not a 5xx or a transient one). */
function acmeRefused(f: Record<string, unknown>): boolean {
  return typeof f.problem === 'string' && !ACME_TRANSIENT.has(f.problem) && !(typeof f.status === 'number' && f.status >= 500);
}

const SEVERITY: readonly number[] = [AGENT_EXIT.ROLLBACK_FAILED, AGENT_EXIT.DEPLOY_FAILED, AGENT_EXIT.NEEDS_OPERATOR, AGENT_EXIT.CA_UNAVAILABLE, AGENT_EXIT.CONFIG, AGENT_EXIT.LOCKED, AGENT_EXIT.FAILURE];

/** The exit code for a run with these failures: 0 for none, else the most severe. */
export function exitCodeFor(errors: unknown[]): number {
  if (errors.length === 0) return AGENT_EXIT.OK;
  const codes = new Set(errors.map(exitCodeOf));
  return SEVERITY.find((c) => codes.has(c)) ?? AGENT_EXIT.FAILURE;
}
