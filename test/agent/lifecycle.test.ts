/**
 * The agent against a real CA server (in this process): enrollment, renewal at the fraction,
 * forced rotation, renewal inside the grace window, revocation, CA outages, failing
 * check/reload/verify with rollback, unwritable targets, adoption of existing files, trust files,
 * PKCS#12, deployment files, the lock. Where time matters, the CA and the agent share a clock the
 * test moves (an hour-long certificate "expires" when the test says so): nothing waits on the wall clock.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { Agent } from '../../src/agent/agent.ts';
import { agentStatus } from '../../src/agent/agent-status.ts';
import { acquireLock, readState } from '../../src/agent/agent-state.ts';
import { parsePemBlocks } from '../../src/core/pem.ts';
import { parseCrl } from '../../src/core/crl-reader.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { hasTool } from '../helpers/tools.ts';
import { freePort, hostDir, manifestFor, pairMatches, serialOf, serverManifest, snapshot, startAgentCa, runAsync, testClock } from './harness.ts';

const NAMES = ['localhost', '127.0.0.1'];
/** Lifetime of the certificates the time-driven cases renew or let expire (the clock moves, not the test). */
const LEAF_SECONDS = 3600;

async function enrolled(leafSeconds?: number, graceSeconds?: number, extra: Record<string, unknown> = {}, cert: Record<string, unknown> = {}) {
  const clock = testClock();
  const ca = await startAgentCa({ leafSeconds, graceSeconds, clock });
  const dir = hostDir();
  fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(NAMES));
  const raw = serverManifest(dir, ca, extra, cert);
  const manifest = manifestFor(dir, raw);
  const agent = new Agent({ manifest, now: clock.now });
  const r = await agent.cycle({ ignoreBackoff: true });
  assert.equal(r.exitCode, 0, JSON.stringify(r.certificates));
  assert.equal(r.certificates[0].action, 'enrolled');
  const f = { key: path.join(dir, 'certs/web.key'), cert: path.join(dir, 'certs/web.crt'), fullchain: path.join(dir, 'certs/web.fullchain.pem') };
  return {
    ca, dir, raw, agent, f, clock,
    /** A new agent for an edited manifest (same state folder). */
    with(edit: (m: any) => void): Agent {
      const m = structuredClone(raw) as any;
      edit(m);
      return new Agent({ manifest: manifestFor(dir, m), now: clock.now });
    },
    async close() {
      await ca.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const once = (a: Agent) => a.cycle({ ignoreBackoff: true });
const rotate = (a: Agent, name = 'web') => a.cycle({ ignoreBackoff: true, force: [name] });

describe('agent lifecycle', { concurrency: 6 }, () => {
  it('ok/enroll: files are links into one generation, trust files, PKCS#12, a deployment file; then nothing to do', async () => {
    const ca = await startAgentCa();
    const dir = hostDir();
    try {
      fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(NAMES));
      const deploy = path.join(dir, 'deploy.d');
      fs.mkdirSync(deploy);
      fs.writeFileSync(path.join(deploy, 'haproxy.pem'), `# deploy-target: ${dir}/haproxy/web.pem\n# Combined certificate and key for haproxy\n{{fullchain web}}\n{{key web}}\n`);
      const m = manifestFor(dir, serverManifest(dir, ca, {
        trust: { refresh: '1h', bundles: [{ path: path.join(dir, 'trust/clients-ca.pem'), include: ['root', 'client-ca'] }], crls: [{ path: path.join(dir, 'trust/crl.pem') }] },
        templates: { dir: deploy },
        metricsFile: path.join(dir, 'metrics/mutual.prom'),
      }, { files: { cert: path.join(dir, 'certs/web.crt'), key: path.join(dir, 'certs/web.key'), chain: path.join(dir, 'certs/chain.pem'), fullchain: path.join(dir, 'certs/web.fullchain.pem'), pkcs12: { path: path.join(dir, 'certs/web.p12'), passwordFile: path.join(dir, 'certs/p12.pass') } } }));
      const agent = new Agent({ manifest: m });
      const r = await once(agent);
      assert.equal(r.exitCode, 0, JSON.stringify(r));
      assert.equal(r.certificates[0].action, 'enrolled');
      const key = path.join(dir, 'certs/web.key');
      const crt = path.join(dir, 'certs/web.crt');
      assert.ok(pairMatches(key, crt));
      assert.equal(fs.readlinkSync(key), path.join(m.stateDir, 'live/web/current/key.pem'));
      assert.equal(fs.statSync(key).mode & 0o777, 0o600);
      assert.equal(fs.statSync(crt).mode & 0o777, 0o644);
      const fullchain = parsePemBlocks(fs.readFileSync(path.join(dir, 'certs/web.fullchain.pem'), 'utf8'));
      assert.equal(fullchain.length, 2);
      assert.deepEqual(fullchain[0].der, parsePemBlocks(fs.readFileSync(crt, 'utf8'))[0].der);
      // Trust files: root + client CA; the root's and the client CA's CRLs (nginx checks every level).
      assert.equal(parsePemBlocks(fs.readFileSync(path.join(dir, 'trust/clients-ca.pem'), 'utf8')).length, 2);
      const crls = parsePemBlocks(fs.readFileSync(path.join(dir, 'trust/crl.pem'), 'utf8'));
      assert.deepEqual(crls.map((b) => b.label), ['X509 CRL', 'X509 CRL']);
      assert.deepEqual(crls.map((b) => parseCrl(b.der).issuer.includes('Root') || parseCrl(b.der).issuer.includes('root')), [true, false]);
      // The deployment file from the watched folder: certificate and key together, 0600.
      const combined = path.join(dir, 'haproxy/web.pem');
      const blocks = parsePemBlocks(fs.readFileSync(combined, 'utf8'));
      assert.deepEqual(blocks.map((b) => b.label), ['CERTIFICATE', 'CERTIFICATE', 'PRIVATE KEY']);
      assert.equal(fs.statSync(combined).mode & 0o777, 0o600);
      assert.ok(fs.readFileSync(combined, 'utf8').startsWith('-----BEGIN CERTIFICATE-----'), 'the header is not written');
      // PKCS#12 with a generated password, readable by OpenSSL.
      assert.equal(fs.statSync(path.join(dir, 'certs/p12.pass')).mode & 0o777, 0o600);
      if (hasTool('openssl')) {
        const o = await runAsync('openssl', ['pkcs12', '-in', path.join(dir, 'certs/web.p12'), '-passin', `file:${path.join(dir, 'certs/p12.pass')}`, '-nokeys', '-clcerts']);
        assert.equal(o.status, 0, o.stderr);
        assert.ok(o.stdout.includes('BEGIN CERTIFICATE'));
      }
      assert.match(fs.readFileSync(path.join(dir, 'metrics/mutual.prom'), 'utf8'), /mutual_agent_certificate_expiry_timestamp_seconds\{name="web",serial="[0-9a-f]+"\} \d+/);
      // Second run: nothing to do, nothing rewritten.
      const before = snapshot([key, crt, combined, path.join(dir, 'trust/crl.pem')]);
      const r2 = await once(agent);
      assert.equal(r2.exitCode, 0);
      assert.equal(r2.certificates[0].action, 'none');
      assert.deepEqual(r2.trust.changed, []);
      assert.equal(r2.templates[0].action, 'none');
      assert.deepEqual(snapshot([key, crt, combined, path.join(dir, 'trust/crl.pem')]), before);
      const s = agentStatus(m);
      assert.equal(s.certificates[0].health, 'ok');
      assert.ok(s.certificates[0].files.every((f) => f.linked));
      assert.equal(s.lastCycle?.exitCode, 0);
      assert.equal(readState(m.stateDir).certificates.web.spentTokens.length, 1);
    } finally {
      await ca.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ok/renew: at the fraction of the lifetime with a new key; rotate forces it; newKey: false keeps the key', async () => {
    const h = await enrolled(LEAF_SECONDS);
    try {
      const first = serialOf(h.f.cert);
      const firstKey = fs.readFileSync(h.f.key, 'utf8');
      const r0 = await once(h.agent);
      assert.equal(r0.certificates[0].action, 'none');
      const renewAt = Date.parse(r0.certificates[0].renewAt!);
      h.clock.set(renewAt - 1000);
      assert.equal((await once(h.agent)).certificates[0].action, 'none', 'not renewed a second before the renewal time');
      h.clock.set(renewAt);
      const r = await once(h.agent);
      assert.equal(r.exitCode, 0);
      assert.equal(r.certificates[0].action, 'renewed');
      assert.equal(r.certificates[0].previousSerial, first);
      assert.notEqual(serialOf(h.f.cert), first);
      assert.notEqual(fs.readFileSync(h.f.key, 'utf8'), firstKey, 'a new key');
      assert.ok(pairMatches(h.f.key, h.f.cert));
      const second = serialOf(h.f.cert);
      const sameKey = h.with((m) => (m.certificates[0].newKey = false));
      const keyBefore = fs.readFileSync(h.f.key, 'utf8');
      const r2 = await rotate(sameKey);
      assert.equal(r2.certificates[0].action, 'renewed');
      assert.notEqual(serialOf(h.f.cert), second);
      assert.equal(fs.readFileSync(h.f.key, 'utf8'), keyBefore);
      // Old generations are pruned: the current one and the one before stay.
      assert.equal(fs.readdirSync(path.join(h.dir, 'state/live/web')).filter((e) => e.startsWith('g-')).length, 2);
    } finally {
      await h.close();
    }
  });

  it('ok/grace: a certificate that expired inside the CA\'s grace window is renewed without a token', async () => {
    const h = await enrolled(LEAF_SECONDS, 30);
    try {
      fs.rmSync(path.join(h.dir, 'web.token'));
      const notAfter = Date.parse((await once(h.agent)).certificates[0].notAfter!);
      h.clock.set(notAfter + 600);
      const r = await once(h.agent);
      assert.equal(r.exitCode, 0, JSON.stringify(r.certificates));
      assert.equal(r.certificates[0].action, 'renewed');
      assert.ok(Date.parse(r.certificates[0].notAfter!) > h.clock.now().getTime());
      assert.ok(pairMatches(h.f.key, h.f.cert));
    } finally {
      await h.close();
    }
  });

  it('fail/expired beyond the grace window: AGENT_TOKEN_NEEDED (exit 12), files kept; a new token recovers', async () => {
    const h = await enrolled(LEAF_SECONDS, 0);
    try {
      fs.rmSync(path.join(h.dir, 'web.token'));
      const notAfter = Date.parse((await once(h.agent)).certificates[0].notAfter!);
      h.clock.set(notAfter + 600);
      const before = snapshot(Object.values(h.f));
      const r = await once(h.agent);
      assert.equal(r.exitCode, 12);
      assert.equal(r.certificates[0].code, 'AGENT_TOKEN_NEEDED');
      assert.match(r.certificates[0].message!, /expired/);
      assert.ok(r.warnings.some((w) => w.code === 'AGENT_CERT_EXPIRING'));
      assert.deepEqual(snapshot(Object.values(h.f)), before);
      assert.equal(agentStatus(h.agent.manifest, h.clock.now()).certificates[0].health, 'expired');
      fs.writeFileSync(path.join(h.dir, 'web.token'), await h.ca.token(NAMES));
      const r2 = await once(h.agent);
      assert.equal(r2.exitCode, 0);
      assert.equal(r2.certificates[0].action, 'enrolled');
    } finally {
      await h.close();
    }
  });

  it('fail/revoked: refused at renewal, and found on the CRL: AGENT_REVOKED (exit 12), files kept; a new token re-enrolls', async () => {
    const h = await enrolled(undefined, undefined, { trust: { refresh: '1h' } });
    try {
      const serial = serialOf(h.f.cert);
      await h.ca.revoke(serial);
      const before = snapshot(Object.values(h.f));
      // The CRL was fetched before the revocation: the CA's refusal of the renewal says it.
      const r = await rotate(h.agent);
      assert.equal(r.exitCode, 12);
      assert.equal(r.certificates[0].code, 'AGENT_REVOKED');
      assert.deepEqual(snapshot(Object.values(h.f)), before);
      // A fresh CRL says it without asking for a renewal, on a plain run.
      const fresh = h.with((m) => (m.trust = { refresh: '1ms' }));
      h.clock.advance(1000);
      const r2 = await once(fresh);
      assert.equal(r2.exitCode, 12, JSON.stringify(r2.certificates));
      assert.equal(r2.certificates[0].code, 'AGENT_REVOKED');
      assert.equal(agentStatus(fresh.manifest, h.clock.now()).certificates[0].health, 'revoked');
      assert.deepEqual(snapshot(Object.values(h.f)), before);
      fs.writeFileSync(path.join(h.dir, 'web.token'), await h.ca.token(NAMES));
      const r3 = await once(fresh);
      assert.equal(r3.exitCode, 0, JSON.stringify(r3.certificates));
      assert.equal(r3.certificates[0].action, 'enrolled');
      assert.notEqual(serialOf(h.f.cert), serial);
      assert.ok(pairMatches(h.f.key, h.f.cert));
    } finally {
      await h.close();
    }
  });

  it('fail/CA unreachable: CA_UNAVAILABLE (exit 11), files untouched, retry with backoff; back when the CA is', async () => {
    const h = await enrolled(undefined, undefined, { trust: { refresh: '1ms', crls: [{ path: path.join('trust', 'crl.pem') }] }, renewal: { fraction: 0.5, jitter: 0, retryInitial: '30s', retryMax: '1m' } });
    try {
      const files = [...Object.values(h.f), path.join(h.dir, 'trust/crl.pem')];
      const before = snapshot(files);
      await h.ca.stop();
      h.clock.advance(1000);
      const r = await rotate(h.agent);
      assert.equal(r.exitCode, 11);
      assert.equal(r.certificates[0].code, 'CA_UNAVAILABLE');
      assert.equal(r.trust.code, 'CA_UNAVAILABLE');
      assert.deepEqual(snapshot(files), before);
      const st = readState(h.dir + '/state').certificates.web;
      assert.equal(st.failures, 1);
      assert.ok(Date.parse(st.nextAttemptAt!) > h.clock.now().getTime());
      // The daemon waits out the backoff instead of hammering the CA.
      const waiting = await h.agent.cycle({});
      assert.equal(waiting.certificates[0].action, 'waiting');
      await h.ca.restart();
      const r2 = await rotate(h.agent);
      assert.equal(r2.exitCode, 0);
      assert.equal(r2.certificates[0].action, 'renewed');
      assert.equal(readState(h.dir + '/state').certificates.web.failures, 0);
    } finally {
      await h.close();
    }
  });

  it('fail/check: the previous files stay, the same certificate is deployed once the check passes', async () => {
    const h = await enrolled(undefined, undefined, {}, { check: 'true' });
    try {
      const before = snapshot(Object.values(h.f));
      const issued = h.ca.issued();
      const r = await rotate(h.with((m) => (m.certificates[0].check = 'echo "config broken" >&2; exit 1')));
      assert.equal(r.exitCode, 13);
      assert.equal(r.certificates[0].code, 'AGENT_CHECK_FAILED');
      assert.match(r.certificates[0].message!, /config broken/);
      assert.deepEqual(snapshot(Object.values(h.f)), before);
      assert.equal(h.ca.issued(), issued + 1);
      const status = agentStatus(h.agent.manifest, h.clock.now());
      assert.equal(status.certificates[0].health, 'pending');
      const r2 = await once(h.agent);
      assert.equal(r2.exitCode, 0, JSON.stringify(r2.certificates));
      assert.equal(r2.certificates[0].action, 'resumed');
      assert.equal(h.ca.issued(), issued + 1, 'no second certificate');
      assert.notDeepEqual(snapshot(Object.values(h.f)), before);
      assert.ok(pairMatches(h.f.key, h.f.cert));
    } finally {
      await h.close();
    }
  });

  it('fail/reload: the previous files are restored and the service reloaded again; a failing second reload is ROLLBACK_FAILED (14)', async () => {
    const h = await enrolled();
    try {
      const log = path.join(h.dir, 'reloads.log');
      const before = snapshot(Object.values(h.f));
      // Fails the first time, succeeds after (the rollback's reload).
      const r = await rotate(h.with((m) => (m.certificates[0].reload = `echo x >> ${log}; test $(wc -l < ${log}) -ge 2`)));
      assert.equal(r.exitCode, 13);
      assert.equal(r.certificates[0].code, 'AGENT_RELOAD_FAILED');
      assert.equal(fs.readFileSync(log, 'utf8'), 'x\nx\n', 'reloaded, then reloaded again after the rollback');
      assert.deepEqual(snapshot(Object.values(h.f)), before);
      const r2 = await once(h.with((m) => (m.certificates[0].reload = 'exit 3')));
      assert.equal(r2.exitCode, 14);
      assert.equal(r2.certificates[0].code, 'AGENT_ROLLBACK_FAILED');
      assert.deepEqual(snapshot(Object.values(h.f)), before, 'the files are back even though the service could not be reloaded');
      assert.ok(pairMatches(h.f.key, h.f.cert));
    } finally {
      await h.close();
    }
  });

  it('fail/verify: a service that keeps serving another certificate rolls the deployment back', async () => {
    const h = await enrolled();
    const port = await freePort();
    const server = tls.createServer({ key: fs.readFileSync(h.f.key), cert: fs.readFileSync(h.f.fullchain) }, (s) => s.end());
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    try {
      const old = serialOf(h.f.cert);
      const r = await rotate(h.with((m) => (m.certificates[0].verify = { port, timeout: '3s' })));
      assert.equal(r.exitCode, 13);
      assert.equal(r.certificates[0].code, 'AGENT_VERIFY_FAILED');
      assert.match(r.certificates[0].message!, new RegExp(`serves ${old}`));
      assert.equal(serialOf(h.f.cert), old);
    } finally {
      server.close();
      await h.close();
    }
  });

  it('fail/unwritable targets: AGENT_WRITE_FAILED (13), nothing asked of the CA, the token kept, no partial trust files', async () => {
    const ca = await startAgentCa();
    const dir = hostDir();
    try {
      fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(NAMES));
      fs.writeFileSync(path.join(dir, 'a-file'), 'not a folder');
      const raw = serverManifest(dir, ca, {}, { files: { cert: path.join(dir, 'certs/web.crt'), key: path.join(dir, 'a-file/web.key') } }) as any;
      const r = await once(new Agent({ manifest: manifestFor(dir, raw) }));
      assert.equal(r.exitCode, 13);
      assert.equal(r.certificates[0].code, 'AGENT_WRITE_FAILED');
      assert.match(r.certificates[0].message!, /a-file\/web\.key/);
      assert.equal(ca.issued(), 0, 'no certificate was requested');
      assert.equal(fs.existsSync(path.join(dir, 'certs/web.crt')), false);
      // The token was not spent: the corrected manifest enrolls with it.
      raw.certificates[0].files.key = path.join(dir, 'certs/web.key');
      // The bundle and the CRL share a reload: they are deployed together or not at all.
      raw.trust = { bundles: [{ path: path.join(dir, 'trust/ca.pem'), reload: 'true' }], crls: [{ path: path.join(dir, 'a-file/crl.pem'), reload: 'true' }] };
      const r2 = await once(new Agent({ manifest: manifestFor(dir, raw) }));
      assert.equal(r2.certificates[0].action, 'enrolled');
      assert.equal(r2.trust.code, 'AGENT_WRITE_FAILED');
      assert.equal(r2.exitCode, 13);
      assert.equal(fs.existsSync(path.join(dir, 'trust/ca.pem')), false, 'the bundle written before the failing CRL was taken back');
      assert.deepEqual(fs.readdirSync(path.join(dir, 'certs')).filter((n) => n.startsWith('.')), [], 'no temp files left');
    } finally {
      await ca.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ok/adoption: existing files become the rollback generation, byte for byte', async () => {
    const ca = await startAgentCa();
    const dir = hostDir();
    try {
      fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(NAMES));
      fs.mkdirSync(path.join(dir, 'certs'));
      const crt = path.join(dir, 'certs/web.crt');
      const key = path.join(dir, 'certs/web.key');
      const old = ca.tc.ca.issue({ role: 'server', names: { dns: ['localhost'], ip: [], uri: [] }, actor: 'test' });
      const o = await old;
      fs.writeFileSync(crt, o.certificatePem);
      fs.writeFileSync(key, o.privateKey!.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      const before = snapshot([crt, key]);
      const raw = serverManifest(dir, ca, {}, { files: { cert: crt, key }, check: 'exit 1' }) as any;
      const r = await once(new Agent({ manifest: manifestFor(dir, raw) }));
      assert.equal(r.exitCode, 13);
      assert.deepEqual(snapshot([crt, key]), before, 'the original bytes are back');
      assert.equal(fs.statSync(key).mode & 0o777, 0o600);
      raw.certificates[0].check = 'true';
      const r2 = await once(new Agent({ manifest: manifestFor(dir, raw) }));
      assert.equal(r2.certificates[0].action, 'resumed');
      assert.notEqual(serialOf(crt), o.serial);
      assert.ok(pairMatches(key, crt));
    } finally {
      await ca.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fail/deployment file: a bad header is CONFIG (exit 10) and named; the certificate is still deployed', async () => {
    const ca = await startAgentCa();
    const dir = hostDir();
    try {
      fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(NAMES));
      const deploy = path.join(dir, 'deploy.d');
      fs.mkdirSync(deploy);
      fs.writeFileSync(path.join(deploy, 'bad.pem'), '# deploy-target: relative/path.pem\n{{cert web}}\n');
      fs.writeFileSync(path.join(deploy, 'unknown.pem'), `# deploy-target: ${dir}/x.pem\n{{cert nosuch}}\n`);
      fs.writeFileSync(path.join(deploy, 'good.pem'), `# deploy-target: ${dir}/out/ca.pem\n# mode: 0640\n{{bundle root}}\n`);
      const r = await once(new Agent({ manifest: manifestFor(dir, serverManifest(dir, ca, { templates: { dir: deploy } })) }));
      assert.equal(r.exitCode, 10);
      assert.equal(r.certificates[0].action, 'enrolled');
      const byFile = Object.fromEntries(r.templates.map((t) => [path.basename(t.file), t]));
      assert.equal(byFile['bad.pem'].code, 'AGENT_TEMPLATE_INVALID');
      assert.match(byFile['bad.pem'].message!, /bad\.pem:1: deploy-target must be an absolute/);
      assert.match(byFile['unknown.pem'].message!, /no certificate named nosuch/);
      assert.equal(byFile['good.pem'].action, 'written');
      assert.equal(fs.statSync(path.join(dir, 'out/ca.pem')).mode & 0o777, 0o640);
      assert.equal(fs.existsSync(path.join(dir, 'x.pem')), false);
    } finally {
      await ca.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fail/lock: a second agent waits, then AGENT_LOCKED; a dead holder\'s lock is taken over', async () => {
    const dir = hostDir();
    try {
      const m = manifestFor(dir, { ca: { url: 'https://127.0.0.1:1', rootFingerprint: 'ab'.repeat(32) }, stateDir: path.join(dir, 'state') });
      const release = await acquireLock(m.stateDir);
      await assert.rejects(new Agent({ manifest: m, lockWaitMs: 200 }).cycle(), (e) => isMutualError(e, 'AGENT_LOCKED'));
      release();
      fs.writeFileSync(path.join(m.stateDir, 'agent.lock'), '999999\n');
      const r = await new Agent({ manifest: m, lockWaitMs: 200 }).cycle();
      assert.equal(r.exitCode, 0);
      assert.equal(fs.existsSync(path.join(m.stateDir, 'agent.lock')), false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

