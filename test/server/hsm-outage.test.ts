/**
 * Fault: the token holding the CA's keys disappears (its SoftHSM2 folder renamed away) during a
 * burst of concurrent issuance against `mutual serve` (the real CLI, its own process), then comes
 * back. While it is away: every refused request is a coded 503 HSM_UNAVAILABLE, /ready says 503
 * and names the keys, a revocation is recorded (its CRL is signed once the token is back), the
 * process stays up. The inventory holds exactly what the clients received. Once restored: /ready
 * 200 and issuance works, in the same process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { toPem } from '../../src/core/pem.ts';
import { closeKeyStores } from '../../src/keys/index.ts';
import { makeToken } from '../helpers/softhsm.ts';
import { makeTestCa } from '../helpers/test-ca.ts';
import { send, spawnServe, waitFor, type SendTls } from '../helpers/server.ts';
import { openssl, requireTool } from '../helpers/tools.ts';

/** Concurrent issuing clients. */
const CLIENTS = 6;

const csrFor = (name: string) => toPem(buildCsr({ privateKey: generateKeyPair('p256').privateKey, commonName: name, names: { dns: [name], ip: [], uri: [] } }), 'CERTIFICATE REQUEST');

test('ok/token removed mid-burst: coded 503s, nothing issued unrecorded, /ready 503, resumes when restored', async (t) => {
  const tok = makeToken(t);
  if (!tok || !requireTool(t, 'openssl')) return;
  const tc = await makeTestCa({ keyStore: { kind: 'pkcs11', uri: tok.tokenUri } });
  await tc.ca.close();
  // This process's own sessions end here: the server is the one that must live through the outage.
  await closeKeyStores();
  t.after(() => fs.rmSync(tc.dir, { recursive: true, force: true }));
  const admin: SendTls = { ca: tc.init.rootPem, cert: tc.init.admin.certificatePem, key: tc.init.admin.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
  const srv = await spawnServe(tc);
  t.after(async () => {
    if (srv.child.exitCode === null && srv.child.signalCode === null) srv.child.kill('SIGKILL');
    await srv.exited;
  });

  // A pool of CSRs made up front: the burst measures the server, not key generation here.
  const pool = Array.from({ length: 64 }, (_, i) => ({ name: `b${i}.acme.internal`, csr: csrFor(`b${i}.acme.internal`) }));
  const received = new Map<string, string>();
  const refused: { status: number; code?: string }[] = [];
  let stop = false;
  let next = 0;
  const loop = async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      while (!stop) {
        const item = pool[next++ % pool.length];
        const r = await send(`${srv.url}/v1/sign`, { body: { profile: 'server', csr: item.csr }, tls: admin, agent });
        if (r.status === 201) received.set(r.json.serial, r.json.certificate);
        else refused.push({ status: r.status, code: r.code });
      }
    } finally {
      agent.destroy();
    }
  };
  const loops = Array.from({ length: CLIENTS }, () => loop());
  try {
    await waitFor('certificates before the removal', 30_000, () => (received.size >= 12 ? true : undefined));
    tok.remove();
    await waitFor('refusals while the token is away', 30_000, () => (refused.length >= 12 ? true : undefined));
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  t.diagnostic(`${received.size} certificates issued, ${refused.length} refused`);
  assert.deepEqual([...new Set(refused.map((r) => `${r.status} ${r.code}`))], ['503 HSM_UNAVAILABLE']);

  const ready = await waitFor('/ready 503', 10_000, async () => {
    const r = await send(`${srv.url}/ready`, { tls: { ca: tc.init.rootPem } });
    return r.status === 503 ? r : undefined;
  });
  assert.ok(ready.json.unavailableKeys.includes('server-ca'), ready.body.toString());
  assert.equal(srv.child.exitCode, null, 'the server is still running');

  // The inventory holds exactly what the clients received, byte for byte.
  const list = await send(`${srv.url}/v1/certificates?all=1&limit=10000`, { tls: admin });
  assert.equal(list.status, 200);
  const burst = (list.json.items as { serial: string; names: { dns: string[] } }[]).filter((i) => /^b\d+\.acme\.internal$/.test(i.names.dns[0] ?? ''));
  assert.deepEqual(burst.map((i) => i.serial).sort(), [...received.keys()].sort(), 'the inventory and what clients received differ');
  const [oneSerial, onePem] = [...received][0];
  const one = await send(`${srv.url}/v1/certificates/${oneSerial}`, { tls: admin });
  assert.equal(one.json.certificate, onePem);

  // A revocation while away is recorded; its CRL waits for the token.
  const rev = await send(`${srv.url}/v1/revoke`, { body: { serial: oneSerial, reason: 'keyCompromise' }, tls: admin });
  assert.equal(rev.status, 200, rev.body.toString());

  tok.restore();
  await waitFor('/ready 200 after the restore', 20_000, async () => ((await send(`${srv.url}/ready`, { tls: { ca: tc.init.rootPem } })).status === 200 ? true : undefined));
  const after = await send(`${srv.url}/v1/sign`, { body: { profile: 'server', csr: csrFor('after.acme.internal') }, tls: admin });
  assert.equal(after.status, 201, after.body.toString());
  // The CRL signed once the token came back lists the revocation, and OpenSSL verifies it.
  const crl = await waitFor('the CRL with the revocation', 20_000, async () => {
    const r = await send(`${srv.url}/crl/server.pem`, { tls: { ca: tc.init.rootPem } });
    const text = openssl(['crl', '-noout', '-text'], { input: r.body });
    return text.stdout.toUpperCase().includes(oneSerial.toUpperCase()) ? r.body : undefined;
  });
  tc.file('server.crl.pem', crl);
  const v = openssl(['crl', '-in', `${tc.dir}/server.crl.pem`, '-CAfile', tc.layout.serverCaCert, '-noout']);
  assert.match(v.stdout + v.stderr, /verify OK/);
  assert.equal(srv.child.exitCode, null, 'the same process');
  srv.child.kill('SIGTERM');
  const e = await srv.exited;
  assert.equal(e.code, 0, srv.output());
});
