/**
 * The daemon's schedule, on mocked timers: it sleeps until the report's nextWakeAt measured on the
 * agent's clock (not the wall clock), never less than the minimum gap, and a wake() runs a cycle at once.
 */
import { describe, it, mock, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import type { Agent, CycleReport } from '../../src/agent/agent.ts';
import { MIN_CYCLE_GAP_MS } from '../../src/agent/agent.ts';
import { runDaemon } from '../../src/agent/run-daemon.ts';
import { testClock } from './harness.ts';

/** An agent that only reports: each cycle asks to be woken `nextInMs` later on `now`. */
function fakeAgent(now: () => Date, nextInMs: number): { agent: Agent; cycles: () => number } {
  let n = 0;
  const agent = {
    manifest: { file: 'agent.yaml', certificates: [], templatesDir: undefined },
    async cycle(): Promise<CycleReport> {
      n++;
      const at = now();
      return { at: at.toISOString(), exitCode: 0, certificates: [], trust: { fetched: false, ok: true, changed: [] }, templates: [], warnings: [], nextWakeAt: new Date(at.getTime() + nextInMs).toISOString() };
    },
  } as unknown as Agent;
  return { agent, cycles: () => n };
}

/** Lets the daemon's promises (cycle, then the sleep it schedules) settle. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
};

const CASES = [
  { name: 'ok/an agent clock a day behind the wall clock: sleeps until nextWakeAt on that clock', behindMs: 86_400_000, nextInMs: 60_000 },
  { name: 'ok/an agent clock standing at the wall clock\'s time: sleeps until nextWakeAt on it', behindMs: 0, nextInMs: 30_000 },
  { name: 'ok/a nextWakeAt closer than the minimum gap waits the minimum gap', behindMs: 0, nextInMs: 1 },
];

describe('agent daemon schedule', () => {
  afterEach(() => mock.timers.reset());

  for (const c of CASES) {
    it(c.name, async () => {
      mock.timers.enable({ apis: ['setTimeout'] });
      const clock = testClock(Math.floor((Date.now() - c.behindMs) / 1000) * 1000);
      const { agent, cycles } = fakeAgent(clock.now, c.nextInMs);
      const abort = new AbortController();
      const daemon = runDaemon({ agent, signal: abort.signal, now: clock.now });
      try {
        await settle();
        assert.equal(cycles(), 1, 'a first cycle at start');
        const wait = Math.max(MIN_CYCLE_GAP_MS, c.nextInMs);
        mock.timers.tick(wait - 1);
        await settle();
        assert.equal(cycles(), 1, `no cycle before ${wait} ms`);
        mock.timers.tick(1);
        await settle();
        assert.equal(cycles(), 2, `a cycle at ${wait} ms`);
        daemon.wake();
        await settle();
        assert.equal(cycles(), 3, 'wake() runs a cycle at once');
      } finally {
        abort.abort();
        await daemon.done;
      }
    });
  }
});
