/**
 * The agent driving a real nginx (Debian's): ssl_certificate, ssl_certificate_key,
 * ssl_verify_client on, ssl_client_certificate and ssl_crl all come from the agent's files.
 * curl keeps calling through nginx while the daemon rotates the server certificate: no request
 * fails and nginx serves each new serial; a revoked client certificate is refused once the agent
 * refreshed the CRL; a broken nginx.conf (nginx -t fails) leaves the old files and a running
 * nginx; after a client CA key rotation the old key's certificates still pass and its revocations
 * still count (the retired intermediate and its CRL are in the trust files).
 *
 * Time is the test's clock, shared by the CA and the agent: a renewal comes due because the test
 * moves the clock to the renewal time and wakes the daemon, never because a few-second certificate
 * aged on the wall clock. The clock starts a day behind the wall clock and moves by less than
 * that, so nginx and curl (which judge by the wall clock) always see valid certificates and CRLs.
 * Every wait is on an event (a rotation served, a CRL listing a serial), bounded by a generous limit.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent } from '../../src/agent/agent.ts';
import { runDaemon } from '../../src/agent/run-daemon.ts';
import type { CycleReport } from '../../src/agent/agent.ts';
import { servedSerial } from '../../src/agent/hooks.ts';
import { hasTool, requireTool } from '../helpers/tools.ts';
import { EVENT_WAIT_MS, freePort, hostDir, manifestFor, pairMatches, runAsync, serialOf, serverManifest, sleep, snapshot, startAgentCa, testClock, until, type AgentTestCa } from './harness.ts';

const ROTATIONS = 3;
/**
 * Leaf lifetime and renewal fraction: the first certificate and the next {@link ROTATIONS}, each
 * issued a renewal period (6 h) later on the test clock, all lie within the day the clock starts
 * behind the wall clock, and each is still valid on the wall clock.
 */
const LEAF_SECONDS = 2 * 86_400;
const RENEWAL_FRACTION = 0.125;
/** Successful requests through nginx awaited across each rotation. */
const REQUESTS_PER_ROTATION = 10;

describe('agent with nginx', { skip: hasTool('nginx') || process.env.MUTUAL_INTEROP === 'require' ? false : 'nginx is not installed (apt-get install nginx)' }, () => {
  let ca: AgentTestCa;
  const clock = testClock();
  let dir: string;
  let port: number;
  let nginx: ChildProcess;
  let nginxLog = '';
  let raw: Record<string, any>;
  let agent: Agent;
  const conf = () => path.join(dir, 'nginx.conf');
  const pidFile = () => path.join(dir, 'nginx.pid');
  const globals = () => `pid ${pidFile()}; error_log stderr;`;
  const files = () => ({ key: path.join(dir, 'certs/web.key'), cert: path.join(dir, 'certs/web.crt'), fullchain: path.join(dir, 'certs/web.fullchain.pem') });
  const clients: Record<string, { cert: string; key: string; serial: string }> = {};

  /** One request through nginx with curl; the HTTP status, or 0 when the connection failed. */
  async function curl(who: string): Promise<{ code: number; err: string }> {
    const c = clients[who];
    // --max-time only guards against a hang: on a loaded machine a handshake can take seconds.
    const r = await runAsync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '60', '--cacert', path.join(dir, 'root.pem'), '--cert', c.cert, '--key', c.key,
      '--resolve', `localhost:${port}:127.0.0.1`, `https://localhost:${port}/`]);
    return { code: Number(r.stdout.trim()) || 0, err: r.stderr.trim() };
  }

  before(async (t) => {
    if (!requireTool(t as never, 'nginx', 'nginx') || !requireTool(t as never, 'curl', 'curl')) return;
    ca = await startAgentCa({ leafSeconds: LEAF_SECONDS, clock });
    dir = hostDir();
    port = await freePort();
    fs.writeFileSync(path.join(dir, 'root.pem'), ca.root);
    fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(['localhost', '127.0.0.1']));
    for (const who of ['good', 'bad']) {
      const r = await ca.tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: [`spiffe://acme.internal/test/${who}`] }, actor: 'test' });
      clients[who] = { cert: path.join(dir, `${who}.crt`), key: path.join(dir, `${who}.key`), serial: r.serial };
      fs.writeFileSync(clients[who].cert, r.certificatePem);
      fs.writeFileSync(clients[who].key, r.privateKey!.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    }
    const nginxHooks = {
      check: ['nginx', '-t', '-q', '-p', dir, '-c', conf(), '-g', globals()],
      reload: { signal: 'HUP', pidFile: pidFile() },
    };
    raw = serverManifest(dir, ca, {
      renewal: { fraction: RENEWAL_FRACTION, jitter: 0, retryInitial: '200ms', retryMax: '2s' },
      trust: {
        refresh: '500ms',
        bundles: [{ path: path.join(dir, 'trust/clients-ca.pem'), include: ['root', 'client-ca'], ...nginxHooks }],
        crls: [{ path: path.join(dir, 'trust/crl.pem'), issuers: ['root', 'client'], ...nginxHooks }],
      },
    }, { ...nginxHooks, verify: { host: '127.0.0.1', port, serverName: 'localhost', timeout: '60s' } });
    fs.writeFileSync(conf(), `
worker_processes 1;
events { worker_connections 256; }
http {
  access_log off;
  server {
    listen 127.0.0.1:${port} ssl;
    server_name localhost;
    ssl_certificate ${files().fullchain};
    ssl_certificate_key ${files().key};
    ssl_client_certificate ${dir}/trust/clients-ca.pem;
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_crl ${dir}/trust/crl.pem;
    location / { return 200 "ok\\n"; }
  }
}
`);
    // First run before nginx exists (what ExecStartPre=mutual agent once does): no reload, no verify.
    const bootstrap = structuredClone(raw);
    for (const x of [bootstrap.certificates[0], ...bootstrap.trust.bundles, ...bootstrap.trust.crls]) {
      delete x.reload;
      delete x.verify;
    }
    const r = await new Agent({ manifest: manifestFor(dir, bootstrap), now: clock.now }).cycle({ ignoreBackoff: true });
    assert.equal(r.exitCode, 0, JSON.stringify(r));
    agent = new Agent({ manifest: manifestFor(dir, raw), now: clock.now });
    nginx = spawn('nginx', ['-p', dir, '-c', conf(), '-g', `daemon off; ${globals()}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    nginx.stderr!.on('data', (d: Buffer) => (nginxLog += d.toString()));
    await until(() => fs.existsSync(pidFile()), EVENT_WAIT_MS, 'nginx to start');
    await until(async () => (await curl('good')).code === 200, EVENT_WAIT_MS, `nginx to answer (${nginxLog})`);
  });

  after(async () => {
    if (nginx && nginx.exitCode === null) {
      nginx.kill('SIGTERM');
      await new Promise((r) => nginx.once('exit', r));
    }
    await ca?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`ok/the daemon rotates the server certificate ${ROTATIONS} times under load: zero failed requests, nginx serves each new serial`, async () => {
    let stop = false;
    const results = { ok: 0, failed: [] as string[] };
    const loop = async () => {
      while (!stop) {
        const r = await curl('good');
        if (r.code === 200) results.ok++;
        else results.failed.push(`${r.code} ${r.err}`);
      }
    };
    const loops = [loop(), loop()];
    const rotations: string[] = [];
    const cycleFailures: string[] = [];
    // What nginx presents, sampled all along; the clock moves on only once a rotation was seen served.
    const served = new Set<string>();
    const sampler = (async () => {
      while (!stop) {
        try {
          served.add(await servedSerial({ host: '127.0.0.1', port, serverName: 'localhost' }));
        } catch {
          // Counted by the curl loops if nginx really refused.
        }
        await sleep(100);
      }
    })();
    const abort = new AbortController();
    const first = serialOf(files().cert);
    let last: CycleReport | undefined;
    const daemon = runDaemon({
      agent, signal: abort.signal, now: clock.now,
      onCycle: (r) => {
        const c = r.certificates[0];
        if (!c.ok) cycleFailures.push(`${c.code} ${c.message} ${nginxLog.slice(-500)}`);
        if (c.action === 'renewed') rotations.push(c.serial!);
        last = r;
      },
    });
    try {
      for (let i = 0; i < ROTATIONS; i++) {
        await until(() => last !== undefined && rotations.length === i, EVENT_WAIT_MS, `a cycle after rotation ${i}`);
        // The certificate in place comes due: the clock moves to its renewal time, and the daemon,
        // asleep until then, is woken (what its timer does when the time comes).
        clock.set(Date.parse(last!.certificates[0].renewAt!));
        daemon.wake();
        const okBefore = results.ok;
        await until(() => cycleFailures.length > 0 || (rotations.length > i && served.has(rotations[i]) && results.ok >= okBefore + REQUESTS_PER_ROTATION), EVENT_WAIT_MS, `rotation ${i + 1} served by nginx, and requests through it`);
        assert.deepEqual(cycleFailures, []);
      }
    } finally {
      abort.abort();
      await daemon.done;
      stop = true;
      await Promise.all([...loops, sampler]);
    }
    assert.deepEqual(cycleFailures, [], 'every cycle succeeded');
    assert.deepEqual(results.failed, [], 'no request failed');
    assert.ok(results.ok > 20, `requests went through (${results.ok})`);
    assert.equal(new Set([first, ...rotations]).size, ROTATIONS + 1, 'a new serial each time');
    assert.deepEqual(rotations.filter((r) => !served.has(r)), [], 'nginx served each new certificate');
    assert.ok(pairMatches(files().key, files().cert));
  });

  it('ok/a revoked client certificate is refused by nginx once the agent refreshed the CRL', async () => {
    assert.equal((await agent.cycle({ ignoreBackoff: true, force: ['web'] })).exitCode, 0);
    assert.equal((await curl('bad')).code, 200);
    await ca.revoke(clients.bad.serial);
    // The trust refresh (every 500 ms) comes due on the test clock.
    clock.advance(1000);
    const r = await agent.cycle({ ignoreBackoff: true });
    assert.equal(r.exitCode, 0, JSON.stringify(r));
    assert.ok(r.trust.changed.includes(path.join(dir, 'trust/crl.pem')), 'the CRL file was rewritten');
    await until(async () => (await curl('bad')).code === 400, EVENT_WAIT_MS, 'nginx to refuse the revoked certificate');
    assert.equal((await curl('good')).code, 200);
  });

  it('fail/nginx -t fails on a broken nginx.conf: the old files stay and nginx keeps serving them', async () => {
    assert.equal((await agent.cycle({ ignoreBackoff: true, force: ['web'] })).exitCode, 0);
    const good = fs.readFileSync(conf(), 'utf8');
    const old = serialOf(files().cert);
    const before = snapshot(Object.values(files()));
    const pid = Number(fs.readFileSync(pidFile(), 'utf8'));
    fs.writeFileSync(conf(), good.replace('ssl_verify_depth 2;', 'ssl_verify_depth 2;\n    this_is_not_a_directive on;'));
    try {
      const r = await agent.cycle({ ignoreBackoff: true, force: ['web'] });
      assert.equal(r.exitCode, 13);
      assert.equal(r.certificates[0].code, 'AGENT_CHECK_FAILED');
      assert.match(r.certificates[0].message!, /this_is_not_a_directive/);
      assert.deepEqual(snapshot(Object.values(files())), before);
      assert.doesNotThrow(() => process.kill(pid, 0), 'nginx still runs');
      await until(async () => (await servedSerial({ host: '127.0.0.1', port, serverName: 'localhost' })) === old, EVENT_WAIT_MS, 'nginx to serve the old certificate');
      assert.equal((await curl('good')).code, 200);
    } finally {
      fs.writeFileSync(conf(), good);
    }
    // Fixed: the pending certificate goes out without a new one being issued.
    const issued = ca.issued();
    const r2 = await agent.cycle({ ignoreBackoff: true });
    assert.equal(r2.certificates[0].action, 'resumed');
    assert.equal(ca.issued(), issued);
    assert.equal(r2.exitCode, 0);
    await until(async () => (await servedSerial({ host: '127.0.0.1', port, serverName: 'localhost' })) === r2.certificates[0].serial, EVENT_WAIT_MS, 'nginx to serve the resumed certificate');
  });

  it('ok/after a client CA key rotation nginx accepts what the old key and the new key issued, and refuses what either revoked', async () => {
    await ca.rotate('client-ca');
    const fresh = await ca.tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: ['spiffe://acme.internal/test/fresh'] }, actor: 'test' });
    clients.fresh = { cert: path.join(dir, 'fresh.crt'), key: path.join(dir, 'fresh.key'), serial: fresh.serial };
    fs.writeFileSync(clients.fresh.cert, fresh.certificatePem);
    fs.writeFileSync(clients.fresh.key, fresh.privateKey!.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const bundle = path.join(dir, 'trust/clients-ca.pem');
    const crls = path.join(dir, 'trust/crl.pem');
    clock.advance(1000);
    const r = await agent.cycle({ ignoreBackoff: true });
    assert.equal(r.exitCode, 0, JSON.stringify(r));
    assert.ok(r.trust.changed.includes(bundle) && r.trust.changed.includes(crls), `both trust files were rewritten: ${r.trust.changed.join(', ')}`);
    const count = (file: string, label: string) => fs.readFileSync(file, 'utf8').split(`-----BEGIN ${label}-----`).length - 1;
    assert.equal(count(bundle, 'CERTIFICATE'), 3, 'the root, the new client CA and the retired one');
    assert.equal(count(crls, 'X509 CRL'), 3, 'the root\'s CRL and both client CAs\'');
    // OpenSSL on the agent's files, then nginx itself (reloaded by the agent's hook).
    const verify = (who: string) => runAsync('openssl', ['verify', '-x509_strict', '-purpose', 'sslclient', '-crl_check_all', '-CAfile', bundle, '-CRLfile', crls, clients[who].cert]);
    for (const who of ['good', 'fresh']) {
      const v = await verify(who);
      assert.equal(v.status, 0, `${who}: ${v.stdout}${v.stderr}`);
    }
    assert.match((await verify('bad')).stdout + (await verify('bad')).stderr, /certificate revoked/);
    await until(async () => (await curl('fresh')).code === 200, EVENT_WAIT_MS, `nginx to accept the new key's certificate (${nginxLog.slice(-300)})`);
    assert.equal((await curl('good')).code, 200, 'the old key\'s certificate still passes');
    assert.equal((await curl('bad')).code, 400, 'the old key\'s revoked certificate is still refused');

    // A revocation by the retired key reaches nginx through the retired CRL.
    await ca.revoke(clients.good.serial);
    clock.advance(1000);
    const r2 = await agent.cycle({ ignoreBackoff: true });
    assert.equal(r2.exitCode, 0, JSON.stringify(r2));
    assert.ok(r2.trust.changed.includes(crls), 'the CRL file was rewritten');
    assert.match((await verify('good')).stdout + (await verify('good')).stderr, /certificate revoked/);
    await until(async () => (await curl('good')).code === 400, EVENT_WAIT_MS, 'nginx to refuse the old key\'s newly revoked certificate');
    assert.equal((await curl('fresh')).code, 200);
  });
});
