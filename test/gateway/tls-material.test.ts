/**
 * The gateway's TLS material (src/gateway/tls-material.ts) across a config change: what is
 * replaced, what is kept, and nothing changed when a file cannot be read. End to end (handshakes
 * under load while it rotates) in reload.test.ts and rotation.test.ts.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { isMutualError } from '../../src/core/errors.ts';
import { validateGatewayConfig, type GatewayConfig } from '../../src/gateway/config.ts';
import { TlsMaterial } from '../../src/gateway/tls-material.ts';
import { makePki, names, type Pki } from '../sdk/fixtures.ts';
import { GATEWAY_ID } from './harness.ts';

const now = () => new Date();
let pki: Pki;
const materials: TlsMaterial[] = [];
after(async () => {
  for (const m of materials) m.close();
  await pki?.close();
});

async function setup() {
  pki ??= await makePki();
  const server = await pki.issue('server', names({ dns: ['localhost'] }), `gw-server-${materials.length}`);
  const client = await pki.issue('client', names({ uri: [GATEWAY_ID] }), `gw-client-${materials.length}`);
  const raw = {
    tls: { cert: server.fullchainFile, key: server.keyFile },
    trust: { ca: pki.bundleFile, clientCas: pki.clientCaFile },
    revocation: { mode: 'off' },
    upstreamTls: { cert: client.fullchainFile, key: client.keyFile },
    routes: [{ upstream: 'http://127.0.0.1:1' }],
  };
  const config = (edit: (r: typeof raw) => Record<string, unknown> = (r) => r): GatewayConfig => validateGatewayConfig(edit(structuredClone(raw)));
  const m = await TlsMaterial.load(config(), { log: pino({ level: 'silent' }), watch: false, now });
  materials.push(m);
  return { m, config, server, client };
}

test('ok/the same config again: nothing is replaced', async () => {
  const { m, config } = await setup();
  const verifier = m.verifier;
  const upstream = m.upstreamIdentity;
  const changes = await m.update(config(), config());
  assert.deepEqual(changes, { trustChanged: false, serverChanged: false, upstreamCaChanged: false, replacedUpstreamIdentity: undefined });
  assert.equal(m.verifier, verifier);
  assert.equal(m.upstreamIdentity, upstream);
  assert.equal(m.upstreamCa, pki.bundle, 'without upstreamTls.ca, upstreams are checked against trust.ca');
});

test('ok/a new trust bundle: a new verifier, new upstream anchors, the server context offers it', async () => {
  const { m, config } = await setup();
  const old = m.verifier;
  const trustFile = path.join(pki.tc.dir, 'trust-2.pem');
  fs.writeFileSync(trustFile, pki.root);
  const changes = await m.update(config(), config((r) => ({ ...r, trust: { ...r.trust, ca: trustFile } })));
  assert.equal(changes.trustChanged, true);
  assert.equal(changes.upstreamCaChanged, true);
  assert.notEqual(m.verifier, old);
  assert.equal(m.upstreamCa, pki.root);
  assert.equal(m.serverOptions(true).ca, pki.root, 'the server context offers the new trust');
});

test('ok/a new server certificate source and upstream client certificate: both swapped, the old upstream one handed back', async () => {
  const { m, config } = await setup();
  const nextServer = await pki.issue('server', names({ dns: ['localhost'] }), 'gw-server-next');
  const nextClient = await pki.issue('client', names({ uri: [GATEWAY_ID] }), 'gw-client-next');
  const oldUpstream = m.upstreamIdentity;
  let rotated = 0;
  m.onServerRotated(() => rotated++);
  const changes = await m.update(config(), config((r) => ({
    ...r, tls: { cert: nextServer.fullchainFile, key: nextServer.keyFile }, upstreamTls: { cert: nextClient.fullchainFile, key: nextClient.keyFile },
  })));
  assert.equal(changes.serverChanged, true);
  assert.equal(changes.trustChanged, false);
  assert.equal(changes.replacedUpstreamIdentity, oldUpstream);
  oldUpstream?.close();
  assert.equal(m.serverOptions(true).cert, nextServer.fullchain);
  assert.equal(m.upstreamIdentity?.current.cert, nextClient.fullchain);
  assert.equal(rotated, 0);
});

test('fail/a trust bundle that cannot be read: the error, and the material as it was', async () => {
  const { m, config } = await setup();
  const verifier = m.verifier;
  const before = m.serverOptions(true);
  await assert.rejects(m.update(config(), config((r) => ({ ...r, trust: { ...r.trust, ca: path.join(pki.tc.dir, 'missing.pem') } }))), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  assert.equal(m.verifier, verifier);
  assert.deepEqual(m.serverOptions(true), before);
});

test('ok/session tickets off: SSL_OP_NO_TICKET in the server options', async () => {
  const { m } = await setup();
  assert.equal(m.serverOptions(true).secureOptions, undefined);
  assert.ok(m.serverOptions(false).secureOptions);
});

test('fail/enrolment without a token: CONFIG_INVALID', async () => {
  const { m, config } = await setup();
  const saved = process.env.MUTUAL_GATEWAY_TOKEN;
  delete process.env.MUTUAL_GATEWAY_TOKEN;
  try {
    await assert.rejects(m.update(config(), config((r) => ({ ...r, tls: { enroll: { caUrl: 'https://127.0.0.1:1' } } }))), (e) => isMutualError(e) && e.code === 'CONFIG_INVALID');
  } finally {
    if (saved !== undefined) process.env.MUTUAL_GATEWAY_TOKEN = saved;
  }
});
