/**
 * SIGKILL of the agent at every step of a deployment (a renewal, and a first enrollment): the key
 * and certificate on disk always match, and the next run completes the deployment (or, before the
 * new generation exists, finds nothing to resume) without asking the CA again.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Agent } from '../../src/agent/agent.ts';
import { DEPLOY_STEPS } from '../../src/agent/generation-store.ts';
import { hostDir, manifestFor, pairMatches, runAsync, serialOf, serverManifest, startAgentCa, writeManifest } from './harness.ts';

const CHILD = path.join(import.meta.dirname, 'fixtures/crash-child.ts');
const NAMES = ['localhost', '127.0.0.1'];
// Steps where the new generation already exists complete on the next run.
const AFTER_GENERATION = DEPLOY_STEPS.slice(DEPLOY_STEPS.indexOf('generation-ready'));

function files(dir: string) {
  return { key: path.join(dir, 'certs/web.key'), cert: path.join(dir, 'certs/web.crt'), fullchain: path.join(dir, 'certs/web.fullchain.pem') };
}

function assertPairs(dir: string, when: string): void {
  const f = files(dir);
  if (!fs.existsSync(f.key) && !fs.existsSync(f.cert)) return;
  assert.ok(pairMatches(f.key, f.cert), `${when}: key and cert match`);
  assert.ok(pairMatches(f.key, f.fullchain), `${when}: key and fullchain match`);
}

function assertClean(dir: string): void {
  const live = path.join(dir, 'state/live/web');
  const left = fs.readdirSync(live).filter((e) => e.startsWith('.') || e === 'journal.json');
  assert.deepEqual(left, [], 'no staging folders, temp links or journal left');
}

describe('crash safety', { concurrency: 2 }, () => {
  it('ok/SIGKILL at each step of a renewal leaves a matching pair; the next run completes it', async () => {
    const ca = await startAgentCa();
    const dir = hostDir();
    try {
      fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(NAMES));
      const raw = serverManifest(dir, ca, {}, { check: 'true', reload: 'true' });
      const file = writeManifest(dir, raw);
      const agent = new Agent({ manifest: manifestFor(dir, raw) });
      assert.equal((await agent.cycle({ ignoreBackoff: true })).exitCode, 0);
      for (const step of DEPLOY_STEPS.filter((s) => s !== 'adopted')) {
        const before = serialOf(files(dir).cert);
        const issued = ca.issued();
        const child = await runAsync(process.execPath, [CHILD, file, step, 'rotate']);
        assert.equal(child.signal, 'SIGKILL', `${step}: the child died there (${child.stderr.slice(-300)})`);
        assert.equal(ca.issued(), issued + 1);
        assertPairs(dir, `after SIGKILL at ${step}`);
        const r = await agent.cycle({ ignoreBackoff: true });
        assert.equal(r.exitCode, 0, `${step}: ${JSON.stringify(r.certificates)}`);
        assertPairs(dir, `after the run that followed SIGKILL at ${step}`);
        assert.equal(ca.issued(), issued + 1, `${step}: the next run did not ask the CA again: ${JSON.stringify(r.certificates)}`);
        const after = serialOf(files(dir).cert);
        if ((AFTER_GENERATION as readonly string[]).includes(step)) {
          assert.notEqual(after, before, `${step}: the new certificate is in place`);
          assert.ok(['resumed', 'none'].includes(r.certificates[0].action), `${step}: ${r.certificates[0].action}`);
        } else {
          assert.equal(after, before, `${step}: the old certificate stays`);
          assert.equal(r.certificates[0].action, 'none');
        }
        assertClean(dir);
      }
    } finally {
      await ca.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ok/SIGKILL at each step of a first enrollment: the spent token is not needed again', async () => {
    const ca = await startAgentCa();
    try {
      for (const step of DEPLOY_STEPS) {
        const dir = hostDir();
        try {
          fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(NAMES));
          const raw = serverManifest(dir, ca);
          const file = writeManifest(dir, raw);
          const child = await runAsync(process.execPath, [CHILD, file, step, 'once']);
          assert.equal(child.signal, 'SIGKILL', `${step}: the child died there (${child.stderr.slice(-300)})`);
          assertPairs(dir, `after SIGKILL at ${step}`);
          const issued = ca.issued();
          const r = await new Agent({ manifest: manifestFor(dir, raw) }).cycle({ ignoreBackoff: true });
          if (!(AFTER_GENERATION as readonly string[]).includes(step)) {
            // The certificate died with the process before its generation existed; the token is spent.
            assert.equal(r.exitCode, 12);
            assert.ok(['AGENT_TOKEN_NEEDED', 'TOKEN_REPLAYED'].includes(r.certificates[0].code!), r.certificates[0].code);
            assert.equal(fs.existsSync(files(dir).cert), false);
            continue;
          }
          assert.equal(r.exitCode, 0, `${step}: ${JSON.stringify(r.certificates)}`);
          assert.equal(ca.issued(), issued, `${step}: no second certificate`);
          assertPairs(dir, `after the run that followed SIGKILL at ${step}`);
          assert.ok(fs.existsSync(files(dir).cert), `${step}: deployed`);
          assertClean(dir);
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }
    } finally {
      await ca.close();
    }
  });
});
