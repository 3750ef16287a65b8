/**
 * The one parser of durations people type: `--ttl 8h`, `--expiring 30d`, `15m` in config.yaml,
 * `retryInitial: 500ms` in agent.yaml, `every: 1h` in the monitor's config. One grammar for all:
 * a whole number of 1 to 9 digits and a unit, `ms`, `s`, `m`, `h` or `d`, surrounding spaces
 * ignored (`500ms`, `90s`, `15m`, `12h`, `30d`). A YAML number is a number of seconds (agent.yaml
 * has always accepted `refresh: 300`). Pure; the callers decide the bounds.
 */
import { MutualError } from './errors.ts';

/** Units and their length in milliseconds. */
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * 1 to 9 digits: the agent's manifest accepted 9 (`100000000ms`), the CLI and the CA's config 6.
 * No sign, no fraction, no combination (`1h30m`): none of the three parsers accepted them.
 */
const DURATION_RE = /^(\d{1,9})(ms|s|m|h|d)$/;

/**
 * Longest duration: 999,999 days (2,700 years), the CLI's bound since its first version. It keeps
 * every value a safe integer of milliseconds and refuses nonsense such as a pasted timestamp
 * (`1733212800d`).
 */
export const MAX_DURATION_MS = 999_999 * 86_400_000;

/**
 * Parses `500ms`, `45s`, `15m`, `8h`, `90d` (or a number of seconds) into milliseconds. Throws
 * CONFIG_INVALID whose detail is `<what>: "<text>" is not a duration: ...` (`what` says where the
 * text came from, e.g. `--ttl`; without it the detail starts at the quoted text).
 */
export function parseDuration(value: string | number, what?: string): number {
  const prefix = what === undefined ? '' : `${what}: `;
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0 || value * 1000 > MAX_DURATION_MS) {
      throw new MutualError('CONFIG_INVALID', { detail: `${prefix}${value} is not a duration: a number is seconds, 0 to ${MAX_DURATION_MS / 1000}` });
    }
    return value * 1000;
  }
  const m = typeof value === 'string' ? DURATION_RE.exec(value.trim()) : null;
  const ms = m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : NaN;
  if (!(ms <= MAX_DURATION_MS)) {
    const shown = JSON.stringify(String(value).slice(0, 40));
    throw new MutualError('CONFIG_INVALID', { detail: `${prefix}${shown} is not a duration: use a whole number and ms, s, m, h or d (e.g. 90s, 15m, 12h, 30d), at most ${MAX_DURATION_MS / 86_400_000}d` });
  }
  return ms;
}

/** Writes a number of seconds the way {@link parseDuration} reads it, in the largest exact unit (`28800` -> `8h`). */
export function formatDuration(seconds: number): string {
  for (const [unit, ms] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000]] as const) {
    if (seconds > 0 && (seconds * 1000) % ms === 0) return `${(seconds * 1000) / ms}${unit}`;
  }
  return `${seconds}s`;
}
