/**
 * Parsers of option values. A value that does not parse is a usage error whichever command takes
 * it: commander's InvalidArgumentError, exit 2 (USAGE_INVALID with --json), never a CA-side code.
 * Bounds that are policy (a profile's maximum lifetime) stay with the CA and its codes.
 */
import { InvalidArgumentError } from 'commander';
import { parseDuration } from '../core/duration.ts';
import { MAX_RENEWAL_GRACE_SECONDS, MAX_TOKEN_TTL_SECONDS } from '../ca/limits.ts';

/** Parses a positive whole number. */
export function positiveInt(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive whole number');
  return n;
}

/** Parses a duration such as 30d with the one duration parser; returns the text. */
export function durationOption(v: string): string {
  try {
    parseDuration(v);
  } catch {
    throw new InvalidArgumentError('expected a duration such as 30d, 12h or 90m');
  }
  return v;
}

/**
 * `--expiring` of `list` and `ca list`: a duration (`30d`, `12h`), or a bare number of days, the
 * grammar `ca list` had before (`--expiring 30`). Returns the duration text (`30d`).
 */
export function expiringOption(v: string): string {
  return durationOption(/^\d{1,6}$/.test(v.trim()) ? `${v.trim()}d` : v);
}

/** `token --ttl`: a duration from 1 second to {@link MAX_TOKEN_TTL_SECONDS}. */
export function tokenTtlOption(v: string): string {
  const ms = parseDuration(durationOption(v));
  if (ms < 1000 || ms > MAX_TOKEN_TTL_SECONDS * 1000) throw new InvalidArgumentError(`a token lives 1s to ${MAX_TOKEN_TTL_SECONDS / 86_400}d`);
  return v;
}

/** `serve --grace-seconds`: 0 (off) to {@link MAX_RENEWAL_GRACE_SECONDS}. */
export function graceSecondsOption(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n > MAX_RENEWAL_GRACE_SECONDS) throw new InvalidArgumentError(`expected a whole number of seconds, 0 (off) to ${MAX_RENEWAL_GRACE_SECONDS}`);
  return n;
}

/** `serve --rate-limit`: requests per second (a positive whole number) or `off`. */
export function rateLimitOption(v: string): string {
  if (v === 'off') return v;
  return String(positiveInt(v));
}

/** `serve --listen`: host:port or [v6]:port, port 0 to 65535. */
export function hostPortOption(v: string): string {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(v);
  if (!m || Number(m[3]) > 65_535) throw new InvalidArgumentError('expected host:port, e.g. 127.0.0.1:8443 or [::1]:8443');
  return v;
}
