/**
 * A rollback takes back every file of a generation: the certificate's own files and every
 * deployment file (deploy-target) rendered from it in the same run, whatever hooks each has. Before
 * this, a deployment file without the certificate's check and reload went in its own group and
 * stayed on the rejected certificate while the certificate's files were back on the old one (two
 * certificates deployed for one name).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Agent } from '../../src/agent/agent.ts';
import { parsePemBlocks } from '../../src/core/pem.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { hostDir, manifestFor, pairMatches, runAsync, serialOf, serverManifest, snapshot, startAgentCa, writeManifest, type AgentTestCa } from './harness.ts';

const CRASH_CHILD = path.join(import.meta.dirname, 'fixtures/crash-child.ts');

const NAMES = ['localhost', '127.0.0.1'];

/** The serial of the first certificate in a file that holds PEM blocks. */
const firstSerial = (file: string): string => parseCertificate(parsePemBlocks(fs.readFileSync(file, 'utf8')).find((b) => b.label === 'CERTIFICATE')!.der).serial;

interface Case {
  name: string;
  /** Hooks of the certificate in agent.yaml. */
  cert: Record<string, unknown>;
  /** Header lines of each deployment file, by file name. */
  deploy: Record<string, string>;
  /** The code of the failed deployment. */
  code: string;
}

// `FAIL` is replaced by a command that fails until the marker file exists; `FAIL_ONCE` fails once
// without the marker (a reload that fails, then succeeds when the rollback reloads again).
const CASES: Case[] = [
  { name: 'fail/check of the certificate: a deployment file without hooks goes back too', cert: { check: 'FAIL' }, deploy: { 'haproxy.pem': '', 'cert-only.pem': '# check: true\n' }, code: 'AGENT_CHECK_FAILED' },
  { name: 'fail/check of a deployment file: the certificate and the other deployment files go back too', cert: { check: 'true' }, deploy: { 'haproxy.pem': '# check: FAIL\n', 'cert-only.pem': '' }, code: 'AGENT_CHECK_FAILED' },
  { name: 'fail/reload of a deployment file: the certificate goes back and its service, already reloaded, is reloaded again', cert: { reload: 'echo r >> RELOADS' }, deploy: { 'haproxy.pem': '# reload: FAIL_ONCE\n', 'cert-only.pem': '# check: true\n' }, code: 'AGENT_RELOAD_FAILED' },
];

describe('agent rollback of a whole generation', { concurrency: 3 }, () => {
  let ca: AgentTestCa;
  before(async () => {
    ca = await startAgentCa();
  });
  after(async () => {
    await ca.close();
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const dir = hostDir();
      try {
        const marker = path.join(dir, 'fixed');
        const reloads = path.join(dir, 'reloads.log');
        const once = path.join(dir, 'failed-once.log');
        const fill = (s: string) => s.replaceAll('FAIL_ONCE', `test -e ${marker} || { echo x >> ${once}; test $(wc -l < ${once}) -ge 2; }`).replaceAll('FAIL', `test -e ${marker}`).replaceAll('RELOADS', reloads);
        fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(NAMES));
        const deploy = path.join(dir, 'deploy.d');
        fs.mkdirSync(deploy);
        const bodies: Record<string, string> = { 'haproxy.pem': '{{fullchain web}}\n{{key web}}\n', 'cert-only.pem': '{{cert web}}\n' };
        const targets = Object.keys(c.deploy).map((n) => path.join(dir, 'out', n));
        for (const [n, header] of Object.entries(c.deploy)) fs.writeFileSync(path.join(deploy, n), `# deploy-target: ${dir}/out/${n}\n${fill(header)}${bodies[n]}`);
        const raw = serverManifest(dir, ca, { templates: { dir: deploy } });
        // First run: everything passes (the marker exists), every file holds the first certificate.
        fs.writeFileSync(marker, '');
        const agent = new Agent({ manifest: manifestFor(dir, { ...raw, certificates: [{ ...(raw.certificates as object[])[0], ...JSON.parse(fill(JSON.stringify(c.cert))) }] }) });
        const r0 = await agent.cycle({ ignoreBackoff: true });
        assert.equal(r0.exitCode, 0, JSON.stringify(r0));
        const f = { key: path.join(dir, 'certs/web.key'), cert: path.join(dir, 'certs/web.crt'), fullchain: path.join(dir, 'certs/web.fullchain.pem') };
        const old = serialOf(f.cert);
        for (const t of targets) assert.equal(firstSerial(t), old, `${t} holds the first certificate`);
        const all = [...Object.values(f), ...targets];
        const before = snapshot(all);
        fs.rmSync(reloads, { force: true });

        // The renewal fails its check or reload: every file, the deployment files too, is back.
        fs.rmSync(marker);
        const r = await agent.cycle({ ignoreBackoff: true, force: ['web'] });
        assert.equal(r.certificates[0].code, c.code, JSON.stringify(r));
        assert.equal(r.exitCode, 13);
        assert.deepEqual(snapshot(all), before, 'every file of the generation is byte-identical to before');
        for (const t of r.templates) assert.equal(t.ok, false, `${t.file} is reported as not deployed`);
        if (JSON.stringify(c.cert).includes('RELOADS')) assert.equal(fs.readFileSync(reloads, 'utf8'), 'r\nr\n', 'the certificate\'s service was reloaded, then reloaded again after the rollback');

        // Fixed: the same certificate goes out everywhere at once.
        fs.writeFileSync(marker, '');
        const r2 = await agent.cycle({ ignoreBackoff: true });
        assert.equal(r2.exitCode, 0, JSON.stringify(r2));
        assert.equal(r2.certificates[0].action, 'resumed');
        const now = serialOf(f.cert);
        assert.notEqual(now, old);
        for (const t of targets) assert.equal(firstSerial(t), now, `${t} holds the deployed certificate`);
        assert.ok(pairMatches(f.key, f.cert));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('fail/check of a deployment resumed after a crash: the deployment files, already written, go back too', async () => {
    const dir = hostDir();
    try {
      const marker = path.join(dir, 'fixed');
      fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(NAMES));
      const deploy = path.join(dir, 'deploy.d');
      fs.mkdirSync(deploy);
      fs.writeFileSync(path.join(deploy, 'haproxy.pem'), `# deploy-target: ${dir}/out/haproxy.pem\n{{fullchain web}}\n{{key web}}\n`);
      const raw = serverManifest(dir, ca, { templates: { dir: deploy } }, { check: `test -e ${marker}` });
      const file = writeManifest(dir, raw);
      fs.writeFileSync(marker, '');
      const agent = new Agent({ manifest: manifestFor(dir, raw) });
      assert.equal((await agent.cycle({ ignoreBackoff: true })).exitCode, 0);
      const f = { key: path.join(dir, 'certs/web.key'), cert: path.join(dir, 'certs/web.crt'), fullchain: path.join(dir, 'certs/web.fullchain.pem'), haproxy: path.join(dir, 'out/haproxy.pem') };
      const old = serialOf(f.cert);
      const before = snapshot(Object.values(f));
      // A renewal killed right after its check passed: everything, the deployment file too, is on the new certificate.
      const child = await runAsync(process.execPath, [CRASH_CHILD, file, 'checked', 'rotate']);
      assert.equal(child.signal, 'SIGKILL', child.stderr.slice(-300));
      assert.notEqual(firstSerial(f.haproxy), old);
      assert.equal(firstSerial(f.haproxy), serialOf(f.cert));
      // The resumed deployment fails its check now: all of it goes back.
      fs.rmSync(marker);
      const r = await agent.cycle({ ignoreBackoff: true });
      assert.equal(r.certificates[0].code, 'AGENT_CHECK_FAILED', JSON.stringify(r));
      assert.deepEqual(snapshot(Object.values(f)), before, 'every file of the generation is byte-identical to before the renewal');
      fs.writeFileSync(marker, '');
      const r2 = await agent.cycle({ ignoreBackoff: true });
      assert.equal(r2.exitCode, 0, JSON.stringify(r2));
      assert.equal(r2.certificates[0].action, 'resumed');
      assert.notEqual(serialOf(f.cert), old);
      assert.equal(firstSerial(f.haproxy), serialOf(f.cert));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
