/**
 * Waiting in tests that mock setTimeout (`mock.timers.enable({ apis: ['setTimeout'] })`) for work
 * that still does real I/O (a store write): turns of the event loop, bounded by the real clock
 * (Date is not mocked), never a sleep.
 */
import assert from 'node:assert/strict';

/** One turn of the event loop (setImmediate is not mocked). */
export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * Turns the event loop until `cond` holds, for at most 30 s of real time, then asserts it.
 * Bounded by time, not by a count of turns: 500 turns ran out on a loaded machine.
 */
export async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!cond() && Date.now() < deadline) await tick();
  assert.ok(cond(), what);
}
