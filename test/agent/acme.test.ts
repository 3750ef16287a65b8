/**
 * `mutual agent` in ACME mode, against real ACME servers: a real `mutual serve` with ACME enabled
 * (the real CLI, its validator resolving names with the test DNS) and pebble, Let's Encrypt's test
 * server. The same agent obtains and deploys from both; against mutual it renews when the server's
 * renewal information (RFC 9773) says so (a revoked certificate's window is moved into the past),
 * on the agent's injected clock; a name outside the CA's policy is refused with a coded error and
 * nothing is deployed or changed. Every certificate passes `openssl verify -x509_strict -purpose sslserver`.
 */
import { after, before, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { Agent } from '../../src/agent/agent.ts';
import { AGENT_EXIT } from '../../src/agent/exit-codes.ts';
import { loadManifest } from '../../src/agent/manifest.ts';
import { readState } from '../../src/agent/agent-state.ts';
import { accountKeyFile } from '../../src/agent/obtain-acme.ts';
import { adminCall } from '../../src/sdk/ca-client.ts';
import { X509Certificate } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { ariCertificateId } from '../../src/sdk/acme-client.ts';
import { certIdOf } from '../../src/ca/acme/renewal-window.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { makeTestCa, tempDir, type TestCa } from '../helpers/test-ca.ts';
import { caFiles, spawnServe, type Running } from '../helpers/server.ts';
import { freePort, requireTool, runAsync } from '../helpers/tools.ts';
import { startPebble } from '../acme/pebble.ts';
import { startMutual } from '../acme/mutual.ts';
import { startTestDns, type TestDns } from '../acme/test-dns.ts';
import type { AcmeTarget } from '../acme/target.ts';

/** A clock the test moves; starts at the wall clock (real peers judge the certificates by it). */
function clock() {
  let t = Math.floor(Date.now() / 1000) * 1000;
  return { now: () => new Date(t), set: (to: number) => (t = Math.max(t, to)) };
}

/** Writes agent.yaml for one ACME certificate and returns the loaded manifest's file. */
function manifest(dir: string, o: { directory: string; tlsCa: string; httpPort: number; names: string[]; name?: string; challenge?: Record<string, string>; eab?: { kid: string; hmacFile: string } }): string {
  const file = path.join(dir, 'agent.yaml');
  const out = path.join(dir, 'out');
  const name = o.name ?? 'web';
  fs.writeFileSync(file, stringifyYaml({
    stateDir: path.join(dir, 'state'),
    certificates: [{
      name, profile: 'server', names: o.names,
      acme: { directory: o.directory, ca: o.tlsCa, ...(o.eab ? { eabKeyId: o.eab.kid, eabHmacKeyFile: o.eab.hmacFile } : {}), challenge: o.challenge ?? { type: 'http-01', listen: `127.0.0.1:${o.httpPort}` } },
      files: { cert: path.join(out, `${name}.crt`), key: path.join(out, `${name}.key`), chain: path.join(out, `${name}-chain.pem`), fullchain: path.join(out, `${name}-full.pem`) },
    }],
  }));
  return file;
}

/** `openssl verify -x509_strict -purpose sslserver` of a deployed certificate to `rootFile`. */
async function verify(dir: string, rootFile: string, name = 'web'): Promise<void> {
  const out = path.join(dir, 'out');
  const r = await runAsync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', rootFile, '-untrusted', path.join(out, `${name}-chain.pem`), path.join(out, `${name}.crt`)]);
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /: OK/);
}

const serialOf = (file: string): string => new X509Certificate(fs.readFileSync(file)).serialNumber.toLowerCase().replace(/^0+/, '');

describe('agent acme: mutual serve', { timeout: 180_000 }, () => {
  let dns: TestDns;
  let tc: TestCa;
  let srv: Running | undefined;
  let httpPort: number;
  let directory: string;
  let root: string;
  const dir = tempDir('mutual-agent-acme-');

  before(async () => {
    dns = await startTestDns();
    httpPort = await freePort();
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    tc = await makeTestCa({ url });
    const config = parseYaml(fs.readFileSync(tc.layout.config, 'utf8')) as Record<string, unknown>;
    config.acme = { enabled: true, httpPort, challenges: ['http-01'], dns: { servers: [`127.0.0.1:${dns.port}`] }, validationTimeout: '5s' };
    fs.writeFileSync(tc.layout.config, stringifyYaml(config), { mode: 0o600 });
    srv = await spawnServe(tc, undefined, [], port);
    directory = `${url}/acme/directory`;
    root = caFiles(tc).root;
    await dns.addHost('web.acme.internal');
  });
  after(async () => {
    if (srv && srv.child.exitCode === null) srv.child.kill('SIGTERM');
    await srv?.exited;
    await tc?.close();
    await dns?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('ok/agent obtains over ACME, waits inside the ARI window, renews once the window is past (revoked)', async (t: TestContext) => {
    if (!requireTool(t, 'openssl')) return;
    const ck = clock();
    const file = manifest(dir, { directory, tlsCa: root, httpPort, names: ['web.acme.internal'] });
    const agent = new Agent({ manifest: loadManifest(file), now: ck.now, random: () => 0.5 });
    const first = await agent.cycle();
    assert.equal(first.exitCode, 0, JSON.stringify(first) + srv!.output());
    assert.equal(first.certificates[0].action, 'enrolled');
    await verify(dir, root);
    const serial1 = serialOf(path.join(dir, 'out', 'web.crt'));
    assert.equal(first.certificates[0].serial, serial1);
    // The client's RFC 9773 id is the server's.
    const info = parseCertificate(readPemOrDer(fs.readFileSync(path.join(dir, 'out', 'web.crt'), 'utf8'), ['CERTIFICATE']));
    const id1 = ariCertificateId(fs.readFileSync(path.join(dir, 'out', 'web.crt')));
    assert.equal(id1, certIdOf(info.authorityKeyId!.toString('hex'), info.serial));
    // The account key is made once, readable by the agent alone.
    assert.equal(fs.statSync(accountKeyFile(path.join(dir, 'state'), directory)).mode & 0o777, 0o600);

    // In good standing: the server's window is the last third of the lifetime; the agent waits.
    const second = await agent.cycle();
    assert.equal(second.certificates[0].action, 'none');
    const ari = readState(path.join(dir, 'state')).certificates.web.ari!;
    assert.equal(ari.serial, serial1);
    assert.ok(Date.parse(ari.start) > ck.now().getTime(), JSON.stringify(ari));
    // A random time inside the window (the injected randomness says the middle).
    assert.equal(Date.parse(ari.renewAt), Math.floor(Date.parse(ari.start) + 0.5 * (Date.parse(ari.end) - Date.parse(ari.start))));
    // The daemon wakes to ask again when the server said (its Retry-After), well before the window.
    assert.ok(Date.parse(second.nextWakeAt) <= Date.parse(ari.checkAfter) && Date.parse(ari.checkAfter) < Date.parse(ari.start));
    assert.equal(second.certificates[0].renewAt, ari.renewAt);

    // Revoked: the server moves the window into the past; the agent sees it at the next re-check time.
    const cert = fs.readFileSync(path.join(tc.layout.adminDir, 'cert.pem'), 'utf8');
    const key = fs.readFileSync(path.join(tc.layout.adminDir, 'key.pem'), 'utf8');
    await adminCall({ caUrl: directory.replace(/\/acme\/directory$/, ''), path: '/v1/revoke', body: { serial: serial1, reason: 'keyCompromise' }, cert, key, root: tc.init.rootPem });
    const before = await agent.cycle();
    assert.equal(before.certificates[0].action, 'none', 'the kept window holds until its re-check time');
    ck.set(Date.parse(ari.checkAfter) + 1000);
    const third = await agent.cycle();
    assert.equal(third.exitCode, 0, JSON.stringify(third) + srv!.output());
    assert.equal(third.certificates[0].action, 'renewed');
    const serial2 = serialOf(path.join(dir, 'out', 'web.crt'));
    assert.notEqual(serial2, serial1);
    assert.equal(third.certificates[0].previousSerial, serial1);
    await verify(dir, root);
    // The renewal's order named the certificate it replaces (RFC 9773 5).
    const db = new DatabaseSync(tc.layout.database, { readOnly: true });
    try {
      const rows = db.prepare('SELECT replaces FROM acme_orders WHERE replaces IS NOT NULL').all() as { replaces: string }[];
      assert.deepEqual(rows.map((r) => r.replaces), [id1]);
    } finally {
      db.close();
    }
  });

  test('fail/a name outside the CA policy: coded error, nothing deployed, the old certificate untouched', async (t: TestContext) => {
    if (!requireTool(t, 'openssl')) return;
    const d = tempDir('mutual-agent-acme-bad-');
    try {
      await dns.addHost('bad.example.com');
      // A new certificate for a name the CA will not certify: nothing is written.
      const fresh = new Agent({ manifest: loadManifest(manifest(d, { directory, tlsCa: root, httpPort, names: ['bad.example.com'], name: 'outside' })) });
      const r1 = await fresh.cycle();
      assert.equal(r1.exitCode, AGENT_EXIT.NEEDS_OPERATOR);
      assert.equal(r1.certificates[0].code, 'ACME_CLIENT_FAILED');
      assert.match(r1.certificates[0].message ?? '', /rejectedIdentifier|unauthorized|policy/i);
      assert.equal(fs.existsSync(path.join(d, 'out', 'outside.crt')), false);

      // A certificate in place, then asked with a name outside the policy: the files in place stay.
      const ok = new Agent({ manifest: loadManifest(manifest(d, { directory, tlsCa: root, httpPort, names: ['web.acme.internal'] })) });
      assert.equal((await ok.cycle()).exitCode, 0);
      const before = fs.readFileSync(path.join(d, 'out', 'web.crt'));
      const keyBefore = fs.readFileSync(path.join(d, 'out', 'web.key'));
      const bad = new Agent({ manifest: loadManifest(manifest(d, { directory, tlsCa: root, httpPort, names: ['web.acme.internal', 'bad.example.com'] })) });
      const r2 = await bad.cycle({ force: ['web'] });
      assert.equal(r2.exitCode, AGENT_EXIT.NEEDS_OPERATOR);
      assert.equal(r2.certificates[0].code, 'ACME_CLIENT_FAILED');
      assert.deepEqual(fs.readFileSync(path.join(d, 'out', 'web.crt')), before);
      assert.deepEqual(fs.readFileSync(path.join(d, 'out', 'web.key')), keyBefore);
      await verify(d, root);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});

/** A static file server for a webroot (what nginx would be), on a free loopback port. */
async function serveWebroot(webroot: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const rel = path.normalize(decodeURIComponent(req.url ?? '/')).replace(/^(\.\.[/\\])+/, '');
    fs.readFile(path.join(webroot, rel), (e, body) => res.writeHead(e ? 404 : 200).end(e ? 'not found' : body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

/** A dns-01 hook script: sets and clears the TXT record through the test DNS's record API (curl). */
function dnsHook(dir: string, controlUrl: string): string {
  const file = path.join(dir, 'dns-hook.sh');
  fs.writeFileSync(file, `#!/bin/sh
set -e
case "$1" in
  set) curl -fsS -X POST -d "{\\"host\\":\\"$MUTUAL_ACME_NAME.\\",\\"value\\":\\"$MUTUAL_ACME_VALUE\\"}" ${controlUrl}/set-txt ;;
  clear) curl -fsS -X POST -d "{\\"host\\":\\"$MUTUAL_ACME_NAME.\\"}" ${controlUrl}/clear-txt ;;
  *) exit 2 ;;
esac
`, { mode: 0o755 });
  return file;
}

describe('agent acme: pebble', { timeout: 120_000 }, () => {
  for (const how of ['http-01 responder', 'http-01 webroot', 'dns-01 hook'] as const) test(`ok/the same agent obtains and deploys a certificate from pebble (${how})`, async (t: TestContext) => {
    if (!requireTool(t, 'pebble') || !requireTool(t, 'openssl') || (how === 'dns-01 hook' && !requireTool(t, 'curl'))) return;
    const dns = await startTestDns();
    const d = tempDir('mutual-agent-pebble-');
    const webroot = path.join(d, 'www');
    const web = how === 'http-01 webroot' ? await serveWebroot(webroot) : undefined;
    const httpPort = web?.port ?? await freePort();
    let pebble: AcmeTarget | undefined;
    try {
      pebble = await startPebble({ httpPort, tlsPort: await freePort(), dns, eab: false });
      await dns.addHost('web.pebble.test');
      const challenge: Record<string, string> | undefined = how === 'http-01 webroot' ? { type: 'http-01', webroot } : how === 'dns-01 hook' ? { type: 'dns-01', hook: dnsHook(d, dns.controlUrl) } : undefined;
      const agent = new Agent({ manifest: loadManifest(manifest(d, { directory: pebble.directoryUrl, tlsCa: pebble.tlsCaFile, httpPort, names: ['web.pebble.test'], challenge })) });
      const r = await agent.cycle();
      assert.equal(r.exitCode, 0, JSON.stringify(r) + pebble.output());
      assert.equal(r.certificates[0].action, 'enrolled');
      await verify(d, pebble.rootFile);
      const st = await pebble.status(path.join(d, 'out', 'web.crt'), path.join(d, 'out', 'web-chain.pem'));
      assert.equal(st.status, 'good', st.detail);
      // Nothing of the challenge is left behind.
      if (how === 'http-01 webroot') assert.deepEqual(fs.readdirSync(path.join(webroot, '.well-known', 'acme-challenge')), []);
    } finally {
      await web?.close();
      await pebble?.close();
      await dns.close();
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('agent acme: mutual serve with external account binding', { timeout: 120_000 }, () => {
  test('ok/the agent registers with the EAB key from its file, then obtains', async (t: TestContext) => {
    if (!requireTool(t, 'openssl')) return;
    const dns = await startTestDns();
    const httpPort = await freePort();
    let target: AcmeTarget | undefined;
    const d = tempDir('mutual-agent-eab-');
    try {
      target = await startMutual({ httpPort, tlsPort: await freePort(), dns, eab: true });
      await dns.addHost('eab.acme.internal');
      const { kid, hmac } = await target.eab(['eab.acme.internal']);
      const hmacFile = path.join(d, 'eab.key');
      fs.writeFileSync(hmacFile, `${hmac}\n`, { mode: 0o600 });
      const r = await new Agent({ manifest: loadManifest(manifest(d, { directory: target.directoryUrl, tlsCa: target.tlsCaFile, httpPort, names: ['eab.acme.internal'], eab: { kid, hmacFile } })) }).cycle();
      assert.equal(r.exitCode, 0, JSON.stringify(r) + target.output());
      assert.equal(r.certificates[0].action, 'enrolled');
      await verify(d, target.rootFile);

      // Without the binding the same server refuses the account: a coded refusal, nothing written.
      const d2 = path.join(d, 'no-eab');
      fs.mkdirSync(d2);
      const r2 = await new Agent({ manifest: loadManifest(manifest(d2, { directory: target.directoryUrl, tlsCa: target.tlsCaFile, httpPort, names: ['eab.acme.internal'] })) }).cycle();
      assert.equal(r2.certificates[0].code, 'ACME_CLIENT_FAILED');
      assert.match(r2.certificates[0].message ?? '', /externalAccountRequired/);
      assert.equal(fs.existsSync(path.join(d2, 'out', 'web.crt')), false);
    } finally {
      await target?.close();
      await dns.close();
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});
