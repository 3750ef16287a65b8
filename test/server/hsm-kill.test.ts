/**
 * Fault, as test/server/kill.test.ts, with the intermediates' keys on a PKCS#11 token: `mutual
 * serve` is killed with SIGKILL during a burst of concurrent issuance (its token sessions die with
 * it, unclosed). After a restart on the same state folder and token, every certificate a client
 * received is in the inventory byte for byte, once, and the restarted server issues.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import { DatabaseSync } from 'node:sqlite';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { toPem } from '../../src/core/pem.ts';
import { closeKeyStores } from '../../src/keys/index.ts';
import { makeToken } from '../helpers/softhsm.ts';
import { makeTestCa } from '../helpers/test-ca.ts';
import { send, spawnServe, waitFor, type Running, type SendTls } from '../helpers/server.ts';

const CLIENTS = 6;

test('ok/sigkill during issuance with token keys: nothing a client received is lost', async (t) => {
  const tok = makeToken(t);
  if (!tok) return;
  const tc = await makeTestCa({ keyStore: { kind: 'pkcs11', uri: tok.tokenUri } });
  await tc.ca.close();
  await closeKeyStores();
  t.after(() => fs.rmSync(tc.dir, { recursive: true, force: true }));
  const admin: SendTls = { ca: tc.init.rootPem, cert: tc.init.admin.certificatePem, key: tc.init.admin.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
  const running: Running[] = [];
  t.after(async () => {
    for (const r of running) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
    await Promise.all(running.map((r) => r.exited));
  });

  const first = await spawnServe(tc);
  running.push(first);
  const csrs = Array.from({ length: CLIENTS }, (_, i) => toPem(buildCsr({ privateKey: generateKeyPair('p256').privateKey, commonName: `k${i}`, names: { dns: [`k${i}.acme.internal`], ip: [], uri: [] } }), 'CERTIFICATE REQUEST'));
  const received = new Map<string, string>();
  let killed = false;
  const loop = async (i: number) => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      while (!killed) {
        try {
          const r = await send(`${first.url}/v1/sign`, { body: { profile: 'server', csr: csrs[i] }, tls: admin, agent });
          assert.equal(r.status, 201, r.body.toString());
          received.set(r.json.serial, r.json.certificate);
        } catch (e) {
          if ((e as { code?: string }).code === 'ERR_ASSERTION') throw e;
          // In flight when the process died: this client never got a certificate.
        }
      }
    } finally {
      agent.destroy();
    }
  };
  const loops = Array.from({ length: CLIENTS }, (_, i) => loop(i));
  await waitFor('a burst of issuance', 30_000, () => (received.size >= 24 ? true : undefined));
  first.child.kill('SIGKILL');
  killed = true;
  assert.equal((await first.exited).signal, 'SIGKILL');
  await Promise.all(loops);
  t.diagnostic(`${received.size} certificates received before the kill`);

  const second = await spawnServe(tc);
  running.push(second);
  const list = await send(`${second.url}/v1/certificates?all=1&limit=10000`, { tls: admin });
  assert.equal(list.status, 200);
  const serials: string[] = list.json.items.map((i: { serial: string }) => i.serial);
  assert.equal(new Set(serials).size, serials.length, 'a serial is listed twice');
  assert.deepEqual([...received.keys()].filter((s) => !serials.includes(s)), [], 'certificates a client received are missing');
  for (const [serial, pem] of [...received].slice(0, 16)) {
    const one = await send(`${second.url}/v1/certificates/${serial}`, { tls: admin });
    assert.equal(one.json.certificate, pem, serial);
  }
  const after = await send(`${second.url}/v1/sign`, { body: { profile: 'server', csr: csrs[0] }, tls: admin });
  assert.equal(after.status, 201, after.body.toString());
  second.child.kill('SIGTERM');
  assert.equal((await second.exited).code, 0, second.output());
  const sqlite = new DatabaseSync(tc.layout.database);
  try {
    assert.deepEqual(sqlite.prepare('PRAGMA integrity_check').all().map((r) => (r as { integrity_check: string }).integrity_check), ['ok']);
  } finally {
    sqlite.close();
  }
});
