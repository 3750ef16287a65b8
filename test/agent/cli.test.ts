/**
 * `mutual agent ...` as a process: exit codes, --json output, status, the daemon's start and stop.
 * Runs the program with the agent command registered as src/cli/main.ts does (cli-entry.ts).
 * Nothing here depends on time passing: every wait is on an event (a process exiting, a report
 * line, a log line), bounded only by a limit generous enough for a loaded 2-core machine, where
 * starting one Node process with type stripping takes seconds.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Agent } from '../../src/agent/agent.ts';
import { loadManifest } from '../../src/agent/manifest.ts';
import { agentCli, EVENT_WAIT_MS, hostDir, pairMatches, runAsync, serialOf, serverManifest, startAgentCa, testClock, until, writeManifest, type AgentTestCa } from './harness.ts';

describe('mutual agent (CLI)', { concurrency: false }, () => {
  let ca: AgentTestCa;
  let dir: string;
  let file: string;

  before(async () => {
    ca = await startAgentCa();
    dir = hostDir();
    fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(['localhost', '127.0.0.1']));
    file = writeManifest(dir, serverManifest(dir, ca));
  });
  after(async () => {
    await ca.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('ok/validate, once (exit 0, --json), status --json', async () => {
    // The first run under systemd's UMask=0077: folders still get the modes the services need.
    const entry = path.join(import.meta.dirname, 'cli-entry.ts');
    const [v, o] = await Promise.all([
      agentCli(['validate', '-c', file]),
      runAsync('/bin/sh', ['-c', `umask 077; exec "${process.execPath}" "${entry}" agent once -c "${file}" --json`], { timeoutMs: 2 * EVENT_WAIT_MS }),
    ]);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /is valid: 1 certificate/);
    assert.equal(o.status, 0, o.stderr);
    const r = JSON.parse(o.stdout);
    assert.equal(r.certificates[0].action, 'enrolled');
    for (const [d, mode] of [['state', 0o711], ['state/live', 0o711], ['state/live/web', 0o711], ['certs', 0o755]] as const) {
      assert.equal(fs.statSync(path.join(dir, d)).mode & 0o777, mode, d);
    }
    assert.equal(fs.statSync(path.join(dir, 'certs/web.crt')).mode & 0o777, 0o644);
    const again = await agentCli(['once', '-c', file]);
    assert.equal(again.status, 0);
    assert.match(again.stdout, /web: nothing to do/);
    const [s, text] = await Promise.all([agentCli(['status', '-c', file, '--json']), agentCli(['status'], { env: { ...process.env, MUTUAL_AGENT_CONFIG: file } })]);
    assert.equal(s.status, 0);
    const st = JSON.parse(s.stdout);
    assert.equal(st.certificates[0].health, 'ok');
    assert.equal(st.certificates[0].serial, serialOf(path.join(dir, 'certs/web.crt')));
    assert.match(text.stdout, /^web\s+ok\s+[0-9a-f]{16}/m);
  });

  it('fail/exit codes: 10 for a bad manifest or unknown name, 11 when the CA is down, 12 when a token is needed', async () => {
    const bad = writeManifest(dir, 'ca: { url: http://x }\nstateDir: s\n', 'bad.yaml');
    // A second certificate with no token: 12 (an operator must act), the first stays in place.
    const two = serverManifest(dir, ca) as any;
    two.certificates.push({ name: 'other', profile: 'server', names: ['other.acme.internal'], tokenFile: path.join(dir, 'other.token'), files: { cert: path.join(dir, 'certs/other.crt'), key: path.join(dir, 'certs/other.key') } });
    const [b, j, missing, unknown, t] = await Promise.all([
      agentCli(['once', '-c', bad]),
      agentCli(['once', '-c', bad, '--json']),
      agentCli(['once', '-c', path.join(dir, 'nope.yaml')]),
      agentCli(['rotate', 'nosuch', '-c', file]),
      agentCli(['once', '-c', writeManifest(dir, two, 'two.yaml')]),
    ]);
    assert.equal(b.status, 10);
    assert.match(b.stderr, /error\[CONFIG_INVALID\]: .*bad\.yaml: ca\.url: the CA URL must be https/);
    assert.match(b.stderr, /hint: Fix the field named/);
    assert.equal(JSON.parse(j.stdout).error.code, 'CONFIG_INVALID');
    assert.equal(missing.status, 10);
    assert.equal(unknown.status, 10);
    assert.match(unknown.stderr, /no certificate named nosuch/);
    assert.equal(t.status, 12, t.stdout + t.stderr);
    assert.match(t.stdout, /other: error\[AGENT_TOKEN_NEEDED\]/);
    await ca.stop();
    try {
      const before = fs.readFileSync(path.join(dir, 'certs/web.crt'));
      const down = await agentCli(['rotate', 'web', '-c', file]);
      assert.equal(down.status, 11, down.stdout + down.stderr);
      assert.match(down.stdout, /web: error\[CA_UNAVAILABLE\]/);
      assert.match(down.stderr, /"code":"CA_UNAVAILABLE"/, 'a JSON log line on stderr');
      assert.deepEqual(fs.readFileSync(path.join(dir, 'certs/web.crt')), before);
    } finally {
      await ca.restart();
    }
  });

  it('ok/once renews a certificate that came due: issued a day ago on the CA\'s clock, two thirds into its lifetime', async () => {
    // The CA's clock (and the first run's) stands a day behind the wall clock: the certificate it
    // issues then is due by the time `mutual agent once` runs on the wall clock, still valid.
    const clock = testClock();
    const lifetime = 1.5 * 86_400;
    const old = await startAgentCa({ leafSeconds: lifetime, clock });
    const d = hostDir();
    try {
      fs.writeFileSync(path.join(d, 'web.token'), await old.token(['localhost', '127.0.0.1']));
      const f = writeManifest(d, serverManifest(d, old));
      const first = await new Agent({ manifest: loadManifest(f), now: clock.now }).cycle({ ignoreBackoff: true });
      assert.equal(first.certificates[0].action, 'enrolled', JSON.stringify(first));
      assert.ok(Date.parse(first.certificates[0].renewAt!) < Date.now() && Date.parse(first.certificates[0].notAfter!) > Date.now(), 'due on the wall clock, not expired');
      const serial = serialOf(path.join(d, 'certs/web.crt'));
      const r = await agentCli(['once', '-c', f, '--json']);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const report = JSON.parse(r.stdout);
      assert.equal(report.certificates[0].action, 'renewed');
      assert.equal(report.certificates[0].previousSerial, serial);
      assert.notEqual(serialOf(path.join(d, 'certs/web.crt')), serial);
      assert.ok(pairMatches(path.join(d, 'certs/web.key'), path.join(d, 'certs/web.crt')));
      // Obtained now: the next run has nothing to do.
      const again = await agentCli(['once', '-c', f]);
      assert.equal(again.status, 0, again.stdout + again.stderr);
      assert.match(again.stdout, /web: nothing to do/);
    } finally {
      await old.close();
      fs.rmSync(d, { recursive: true, force: true });
    }
  });

  it('ok/run: the daemon cycles, stops on SIGTERM with exit 0', async () => {
    const child = spawn(process.execPath, [path.join(import.meta.dirname, 'cli-entry.ts'), 'agent', 'run', '-c', file, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    try {
      await until(() => out.includes('\n'), EVENT_WAIT_MS, 'a first cycle report');
      const first = JSON.parse(out.split('\n')[0]);
      assert.equal(first.exitCode, 0);
      assert.match(err, /"msg":"mutual agent started"/);
      // SIGHUP re-reads agent.yaml and runs a cycle at once.
      child.kill('SIGHUP');
      await until(() => err.includes('re-read agent.yaml') && out.split('\n').length > 2, EVENT_WAIT_MS, 'a cycle after SIGHUP');
    } finally {
      child.kill('SIGTERM');
    }
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0, err);
    assert.match(err, /"msg":"mutual agent stopped"/);
  });
});
