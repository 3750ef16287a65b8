/**
 * Watches the files a gateway config names and asks for a reload when one of them changes:
 * fs.watch on their directories plus a poll every {@link WATCH_POLL_MS} (fs.watch misses events on
 * some file systems); a change is acted on {@link RELOAD_SETTLE_MS} after the last event, and only
 * if a file's identity, size or mtime differs from when it was last applied.
 */
import fs from 'node:fs';
import path from 'node:path';
import { WATCH_POLL_MS } from './tls-material.ts';
import { statStamp } from '../sdk/index.ts';

/** Changes are applied this long after the last file event, so files written together land together. */
export const RELOAD_SETTLE_MS = 100;

/** A file's identity, size and mtime, or 'missing'. */

/** See the module doc. Disabled (`enabled` false), it watches nothing and never calls `onChange`. */
export class ReloadWatcher {
  readonly #enabled: boolean;
  readonly #onChange: () => void;
  readonly #watched = new Map<string, string>();
  readonly #watchers: fs.FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  readonly #poll: NodeJS.Timeout | undefined;

  constructor(enabled: boolean, onChange: () => void) {
    this.#enabled = enabled;
    this.#onChange = onChange;
    this.#poll = enabled ? setInterval(() => this.#schedule(), WATCH_POLL_MS) : undefined;
    this.#poll?.unref();
  }

  /** Watches `files` (instead of those watched before), as they are now. */
  watch(files: string[]): void {
    for (const w of this.#watchers.splice(0)) w.close();
    this.#watched.clear();
    if (!this.#enabled) return;
    for (const f of files) this.#watched.set(f, statStamp(f));
    for (const dir of new Set(files.map((f) => path.dirname(f)))) {
      try {
        const w = fs.watch(dir, { persistent: false }, (_e, name) => {
          if (!name || files.some((f) => path.dirname(f) === dir && path.basename(f) === name.toString())) this.#schedule();
        });
        w.on('error', () => w.close());
        this.#watchers.push(w);
      } catch {
        // The poll still sees changes.
      }
    }
  }

  /** Takes the files as they are now as applied (after a failed reload, so the next change of any file tries again). */
  restamp(): void {
    for (const f of this.#watched.keys()) this.#watched.set(f, statStamp(f));
  }

  /** Stops watching and polling. */
  close(): void {
    if (this.#poll) clearInterval(this.#poll);
    if (this.#timer) clearTimeout(this.#timer);
    for (const w of this.#watchers.splice(0)) w.close();
  }

  #schedule(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if ([...this.#watched].some(([f, st]) => statStamp(f) !== st)) this.#onChange();
    }, RELOAD_SETTLE_MS);
    this.#timer.unref();
  }
}
