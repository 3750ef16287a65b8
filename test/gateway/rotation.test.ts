/**
 * Rotation under a steady request loop: the gateway's server certificate, its upstream client
 * certificate, a config reload and a CRL refresh, all while requests flow on new and kept-alive
 * connections. Not one request may fail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import tls from 'node:tls';
import { startHarness, type Echo } from './harness.ts';
import { replaceFile, names, GATEWAY } from '../sdk/fixtures.ts';

test('ok/rotating the server and upstream client certificates under load: zero failed requests', async () => {
  const h = await startHarness();
  const cred = h.creds.payments;
  const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 4 });
  let ok = 0;
  const failures: string[] = [];
  const upstreamSerials = new Set<string>();
  let stop = false;
  const one = (agent: https.Agent | false) => new Promise<void>((resolve) => {
    const req = https.request(`${h.gateway.url}/api/loop`, { ca: h.pki.root, cert: cred.fullchain, key: cred.key, agent }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        if (res.statusCode === 200) {
          ok++;
          upstreamSerials.add((JSON.parse(Buffer.concat(parts).toString('utf8')) as Echo).peerSerial!);
        } else failures.push(`${res.statusCode} ${Buffer.concat(parts).toString('utf8').slice(0, 200)}`);
        resolve();
      });
    });
    req.on('error', (e) => {
      failures.push(e.message);
      resolve();
    });
    req.end();
  });
  const worker = async (agent: https.Agent | false) => {
    while (!stop) await one(agent);
  };
  const workers = [worker(keepAlive), worker(keepAlive), worker(false), worker(false)];
  const servedSerial = () => new Promise<string>((resolve, reject) => {
    const s = tls.connect({ port: h.gateway.port, host: '127.0.0.1', ca: h.pki.root, cert: cred.fullchain, key: cred.key }, () => {
      resolve(s.getPeerX509Certificate()!.serialNumber.toLowerCase().replace(/^0+/, ''));
      s.destroy();
    });
    s.on('error', reject);
  });
  const until = async (what: string, cond: () => boolean | Promise<boolean>) => {
    const t0 = Date.now();
    while (!(await cond())) {
      if (Date.now() - t0 > 60_000) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  // Traffic is counted, not timed: each step waits until 20 more requests went through (a loaded
  // machine answers fewer per second; the test asserts on what crossed each step, not on a rate).
  const moreRequests = async (n = 20) => {
    const target = ok + n;
    await until(`${n} more requests`, () => ok >= target || failures.length > 0);
  };
  try {
    await moreRequests();
    // 1. The gateway's server certificate (files replaced as the agent does: key, then chain).
    const nextServer = await h.pki.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'gw-server-2');
    replaceFile(h.gwServer.keyFile, nextServer.key);
    replaceFile(h.gwServer.fullchainFile, nextServer.fullchain);
    await until('the new server certificate', async () => (await servedSerial()) === nextServer.serial);
    await moreRequests();
    // 2. The upstream client certificate.
    const firstUpstream = [...upstreamSerials];
    const nextClient = await h.pki.issue('client', names({ uri: [GATEWAY] }), 'gw-client-2');
    replaceFile(h.gwClient.keyFile, nextClient.key);
    replaceFile(h.gwClient.fullchainFile, nextClient.fullchain);
    await until('the backend to see the new client certificate', () => upstreamSerials.has(nextClient.serial));
    assert.deepEqual(firstUpstream, [h.gwClient.serial]);
    // 3. A config reload and a CRL refresh in the middle of it all.
    assert.equal((await h.gateway.reload()).ok, true);
    await h.gateway.verifier.refresh();
    await moreRequests();
  } finally {
    stop = true;
    await Promise.all(workers);
    keepAlive.destroy();
    await h.close();
  }
  assert.deepEqual(failures, []);
  assert.ok(ok >= 60, `only ${ok} requests went through`);
});
