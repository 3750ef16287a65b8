/**
 * A root rollover seen by a running gateway (issue 17), made by the CA's own ceremonies: trust.ca
 * moves from {old} to {old,new} to {new} (the CA's ca/roots.pem) (with trust.clientCas listing both client CAs); clients under the old root, the new root,
 * and the new root with new-by-old in their chain get through or are refused exactly as the bundle
 * (and `openssl verify -x509_strict`) says, without a restart; a keep-alive connection made before
 * the change keeps working; a bundle that does not parse keeps the one in force and is logged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { stringify } from 'yaml';
import { pino } from 'pino';
import { startGateway } from '../../src/gateway/index.ts';
import { request, replaceFile, id, names, type Credential } from '../sdk/fixtures.ts';
import { makeRealRollover, rootsPem, verifyStrict } from '../helpers/rollover.ts';
import { until } from '../helpers/wait.ts';

test('ok/trust.ca moves {old} -> {old,new} -> {new} under a running gateway; fail/a bad bundle keeps the one in force', async () => {
  // A real rollover of one CA; the gateway's certificate and the old client are issued before it.
  let gw!: Credential;
  let oldClient!: Credential;
  const ro = await makeRealRollover(async (old) => {
    gw = await old.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'gw');
    oldClient = await old.issue('client', names({ uri: [id('prod/old')] }), 'old');
  });
  const plain = http.createServer((_req, res) => res.end('plain'));
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  const results: { ok: boolean; code?: string }[] = [];
  const onReload = (m: unknown) => void results.push(m as { ok: boolean; code?: string });
  diagnostics.subscribe('mutual:gateway:reloaded', onReload);
  const logs: string[] = [];
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    // The CA's answer during the overlap carries new-by-old; "new" sends its intermediate only.
    const issued = await ro.new.issue('client', names({ uri: [id('prod/new')] }), 'new');
    assert.ok(issued.fullchain.includes(ro.newByOld));
    const clients: Record<'old' | 'new' | 'newCross', Credential> = { old: oldClient, new: { ...issued, fullchain: issued.cert + ro.new.clientCa }, newCross: issued };
    const trustFile = path.join(ro.dir, 'trust.pem');
    const clientCasFile = path.join(ro.dir, 'client-cas.pem');
    replaceFile(trustFile, rootsPem([{ pem: ro.old.root }]));
    fs.writeFileSync(clientCasFile, ro.old.clientCa + ro.new.clientCa);
    const configFile = path.join(ro.dir, 'gateway.yaml');
    fs.writeFileSync(configFile, stringify({
      listen: { host: '127.0.0.1', port: 0 },
      tls: { cert: gw.fullchainFile, key: gw.keyFile },
      trust: { ca: trustFile, clientCas: clientCasFile },
      revocation: { mode: 'off' },
      routes: [{ name: 'plain', pathPrefix: '/', upstream: `http://127.0.0.1:${(plain.address() as AddressInfo).port}`, allow: [{ identities: ['*'] }] }],
      accessLog: false,
      logLevel: 'silent',
    }));
    const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });
    const gateway = await startGateway({ configFile, logger, accessLogger: false });
    const serverTrust = ro.old.root;
    const swap = async (text: string) => {
      const n = results.length;
      replaceFile(trustFile, text);
      await until('the gateway to reload', () => results.length > n);
      return results[results.length - 1];
    };
    const expect = async (bundle: string, want: Record<keyof typeof clients, boolean>) => {
      for (const [name, ok] of Object.entries(want) as [keyof typeof clients, boolean][]) {
        const c = clients[name];
        assert.equal(verifyStrict(ro.dir, c.cert, c.fullchain.slice(c.cert.length), bundle), ok, `openssl verify of ${name}`);
        const r = await request(`${gateway.url}/x`, { ca: serverTrust, cert: c.fullchain, key: c.key });
        assert.equal(r.status, ok ? 200 : 495, `${name}: ${r.body}`);
        if (!ok) assert.equal(r.json?.code, 'CERT_UNTRUSTED');
      }
    };
    const keepAlive = () => new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
      const req = https.request(`${gateway.url}/k`, { agent, ca: serverTrust, cert: clients.old.fullchain, key: clients.old.key }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
      });
      req.on('error', reject);
      req.end();
    });
    try {
      await expect(ro.old.root, { old: true, new: false, newCross: true });
      assert.deepEqual(await keepAlive(), { status: 200, reused: false });
      assert.equal((await swap(ro.bundle())).ok, true);
      await expect(ro.old.root + ro.new.root, { old: true, new: true, newCross: true });
      await ro.retire();
      assert.equal((await swap(ro.bundle())).ok, true);
      await expect(ro.new.root, { old: false, new: true, newCross: true });
      assert.deepEqual(await keepAlive(), { status: 200, reused: true });
      // Half a bundle (a writer caught mid-way): refused, logged, and {new} stays in force.
      const bad = await swap(ro.bundle().slice(0, 200));
      assert.deepEqual([bad.ok, bad.code], [false, 'CONFIG_INVALID']);
      assert.ok(logs.some((l) => /reload failed/.test(l) && /trust\.pem/.test(l)), 'the failure is logged with the file');
      await expect(ro.new.root, { old: false, new: true, newCross: true });
    } finally {
      await gateway.close();
    }
  } finally {
    agent.destroy();
    diagnostics.unsubscribe('mutual:gateway:reloaded', onReload);
    await new Promise<void>((r) => {
      plain.close(() => r());
      plain.closeAllConnections();
    });
    await ro.close();
  }
});
