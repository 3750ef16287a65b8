/**
 * The one parser of durations people type (`--ttl 8h`, `--expiring 30d`, `15m` in config.yaml):
 * a whole number and a unit. Pure; the callers decide the bounds and the error code context.
 */
import { MutualError } from './errors.ts';

/** Units and their length in milliseconds. */
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * Digits accepted: 6 (999999d is 2,700 years) keeps every value a safe integer of milliseconds
 * and refuses nonsense such as a pasted timestamp.
 */
const DURATION_RE = /^(\d{1,6})([smhd])$/;

/**
 * Parses `45s`, `15m`, `8h`, `90d` into milliseconds. Throws CONFIG_INVALID naming the text
 * (`what` says where it came from, e.g. `--ttl`).
 */
export function parseDuration(text: string, what = 'duration'): number {
  const m = typeof text === 'string' ? DURATION_RE.exec(text.trim()) : null;
  if (!m) throw new MutualError('CONFIG_INVALID', { detail: `${what} ${JSON.stringify(String(text).slice(0, 40))}: use a whole number and s, m, h or d (e.g. 15m, 8h, 90d)` });
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

/** Writes a number of seconds the way {@link parseDuration} reads it, in the largest exact unit (`28800` -> `8h`). */
export function formatDuration(seconds: number): string {
  for (const [unit, ms] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000]] as const) {
    if (seconds > 0 && (seconds * 1000) % ms === 0) return `${(seconds * 1000) / ms}${unit}`;
  }
  return `${seconds}s`;
}
