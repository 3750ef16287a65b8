/**
 * Quoting what a challenged host answered, for an error's detail: short, on one line, with
 * control characters escaped, so that a log or a client's error output shows it safely.
 */
import { DETAIL_QUOTE_CHARS } from './validation-options.ts';

/** `seen` as a quoted string of at most `max` characters (default {@link DETAIL_QUOTE_CHARS}), with how much was cut. */
export function printable(seen: string | Uint8Array, max: number = DETAIL_QUOTE_CHARS): string {
  const text = typeof seen === 'string' ? seen : Buffer.from(seen).toString('utf8');
  const shown = JSON.stringify(text.length > max ? text.slice(0, max) : text);
  return text.length > max ? `${shown}... (${text.length} characters)` : shown;
}
