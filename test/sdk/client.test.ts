/**
 * SDK clients and glue: fetch/dispatcher and https.Agent presenting a client certificate and
 * checking the server's EKU; rotation that keeps requests in flight; XFCC believed only from a
 * trusted proxy; Express and Fastify middleware; enrollment and renewal against `mutual serve`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { pino } from 'pino';
import { makePki, names, id, request, GATEWAY, type Pki, type Credential } from './fixtures.ts';
import {
  createServer, createFetch, loadIdentity, peerIdentity, identityFromXfcc, identityMaterial, IdentitySource, MtlsHttpsAgent, allow, fastifyAllow, enrollIdentity, isMutualError,
  type MtlsServer, type MtlsHandler,
} from '../../src/sdk/index.ts';
import { OID } from '../../src/core/oids.ts';
import { startCaServer } from '../../src/server/ca-server.ts';
import { loadTokenKey, mintToken } from '../../src/ca/tokens.ts';
import { TEST_PASSPHRASE } from '../helpers/test-ca.ts';

let pki: Pki;
let serverCred: Credential;
let serverIdentity: IdentitySource;
const servers: MtlsServer[] = [];

before(async () => {
  pki = await makePki();
  serverCred = await pki.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'srv');
  serverIdentity = loadIdentity({ certFile: serverCred.fullchainFile, keyFile: serverCred.keyFile, caFile: pki.bundleFile, watch: false });
});
after(async () => {
  for (const s of servers) {
    const closed = new Promise<void>((r) => s.close(() => r()));
    (s as https.Server).closeAllConnections?.();
    await closed;
  }
  serverIdentity.close();
  await pki.close();
});

async function serve(handler: MtlsHandler, o: { allow?: string[]; identity?: IdentitySource } = {}): Promise<string> {
  const s = await createServer({ identity: o.identity ?? serverIdentity, clientCas: pki.clientCa, revocation: { mode: 'off' }, ...(o.allow ? { allow: o.allow } : {}) }, handler);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return `https://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

const clientIdentity = async (name: string) => {
  const c = await pki.issue('client', names({ uri: [id(`prod/${name}`)] }), name);
  return { cred: c, identity: new IdentitySource(identityMaterial(c.fullchain, c.key, pki.root)) };
};

test('ok/fetch presents the client certificate; rotation keeps the request in flight and switches new ones', async () => {
  const url = await serve((req, res) => {
    const p = peerIdentity(req)!;
    setTimeout(() => res.end(p.serial), req.url === '/slow' ? 400 : 0);
  });
  const { cred, identity } = await clientIdentity('fetcher');
  const f = createFetch({ identity, ca: pki.root, serverCas: pki.serverCa });
  try {
    assert.equal(await (await f(`${url}/`)).text(), cred.serial);
    const slow = f(`${url}/slow`).then((r) => r.text());
    await new Promise((r) => setTimeout(r, 100));
    const next = await pki.issue('client', names({ uri: [id('prod/fetcher')] }), 'fetcher-2');
    identity.update(identityMaterial(next.fullchain, next.key, pki.root));
    assert.equal(await (await f(`${url}/`)).text(), next.serial, 'new requests use the new certificate');
    assert.equal(await slow, cred.serial, 'the request in flight finished on the old connection');
  } finally {
    await f.dispatcher.close();
  }
});

test('fail/fetch refuses a server certificate without EKU serverAuth', async () => {
  const forged = pki.forge({ by: 'server', eku: [], names: names({ dns: ['localhost'], ip: ['127.0.0.1'] }), name: 'srv-noeku' });
  const noEku = new IdentitySource(identityMaterial(forged.fullchain, forged.key, pki.bundle));
  const url = await serve((_req, res) => res.end('should not be reached'), { identity: noEku });
  const { identity } = await clientIdentity('picky');
  const f = createFetch({ identity, ca: pki.root, serverCas: pki.serverCa });
  try {
    await assert.rejects(f(`${url}/`), (e: Error) => isMutualError((e as { cause?: unknown }).cause, 'CERT_WRONG_EKU'));
  } finally {
    await f.dispatcher.close();
  }
});

test('ok/https.Agent presents the certificate and uses the new one after rotation', async () => {
  const url = await serve((req, res) => res.end(peerIdentity(req)!.serial));
  const { cred, identity } = await clientIdentity('agent');
  const agent = new MtlsHttpsAgent({ identity, ca: pki.root, serverCas: pki.serverCa });
  const get = () => new Promise<string>((resolve, reject) => {
    https.get(`${url}/`, { agent }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c));
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
  try {
    assert.equal(await get(), cred.serial);
    assert.equal(await get(), cred.serial);
    const next = await pki.issue('client', names({ uri: [id('prod/agent')] }), 'agent-2');
    identity.update(identityMaterial(next.fullchain, next.key, pki.root));
    assert.equal(await get(), next.serial);
  } finally {
    agent.destroy();
  }
});

test('ok/identityFromXfcc believes XFCC only from the gateway\'s own connection', async () => {
  const url = await serve((req, res) => {
    try {
      res.end(JSON.stringify({ caller: identityFromXfcc(req, { trustedProxies: [GATEWAY] })?.spiffeId ?? null }));
    } catch (e) {
      res.end(JSON.stringify({ code: isMutualError(e) ? e.code : 'error' }));
    }
  });
  const gw = await pki.issue('client', names({ uri: [GATEWAY] }), 'gw');
  const caller = await pki.issue('client', names({ uri: [id('prod/sneaky')] }), 'sneaky');
  const xfcc = `By=${GATEWAY};Hash=00;Subject="CN=payments";URI=${id('prod/payments')}`;
  const viaGateway = await request(`${url}/`, { ca: pki.root, cert: gw.fullchain, key: gw.key, headers: { 'x-forwarded-client-cert': xfcc } });
  assert.deepEqual(JSON.parse(viaGateway.body), { caller: id('prod/payments') });
  const spoofed = await request(`${url}/`, { ca: pki.root, cert: caller.fullchain, key: caller.key, headers: { 'x-forwarded-client-cert': xfcc } });
  assert.deepEqual(JSON.parse(spoofed.body), { code: 'XFCC_UNTRUSTED' });
  const forgedBy = await request(`${url}/`, { ca: pki.root, cert: gw.fullchain, key: gw.key, headers: { 'x-forwarded-client-cert': `By=${id('infra/other')};URI=${id('prod/payments')}` } });
  assert.deepEqual(JSON.parse(forgedBy.body), { code: 'XFCC_UNTRUSTED' });
  const none = await request(`${url}/`, { ca: pki.root, cert: gw.fullchain, key: gw.key });
  assert.deepEqual(JSON.parse(none.body), { caller: null });
});

test('ok/Express allow() middleware', async () => {
  const app = express();
  app.get('/orders', allow([id('staging/*'), id('prod/orders-web')]), (req, res) => {
    res.json({ hello: peerIdentity(req)?.spiffeId });
  });
  const url = await serve(app as unknown as MtlsHandler);
  const ok = await clientIdentity('orders-web');
  const no = await clientIdentity('billing');
  const r1 = await request(`${url}/orders`, { ca: pki.root, cert: ok.cred.fullchain, key: ok.cred.key });
  assert.equal(r1.status, 200);
  assert.deepEqual(JSON.parse(r1.body), { hello: id('prod/orders-web') });
  const r2 = await request(`${url}/orders`, { ca: pki.root, cert: no.cred.fullchain, key: no.cred.key });
  assert.equal(r2.status, 403);
  assert.equal(r2.json?.code, 'ACCESS_DENIED');
});

test('ok/Fastify allow hook, with the SDK server as its server', async () => {
  let handler: MtlsHandler = () => {};
  const server = await createServer({ identity: serverIdentity, clientCas: pki.clientCa, revocation: { mode: 'off' } }, (req, res) => handler(req, res));
  servers.push(server);
  const app = Fastify({ serverFactory: (h) => {
    handler = h as unknown as MtlsHandler;
    return server as unknown as https.Server;
  } });
  app.get('/admin', { onRequest: fastifyAllow([id('prod/admin')]) }, async (req) => ({ hello: peerIdentity(req.raw)?.spiffeId }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const admin = await clientIdentity('admin');
  const other = await clientIdentity('web');
  const r1 = await request(`${url}/admin`, { ca: pki.root, cert: admin.cred.fullchain, key: admin.cred.key });
  assert.equal(r1.status, 200, r1.body);
  assert.deepEqual(JSON.parse(r1.body), { hello: id('prod/admin') });
  const r2 = await request(`${url}/admin`, { ca: pki.root, cert: other.cred.fullchain, key: other.cred.key });
  assert.equal(r2.status, 403);
  assert.equal(r2.json?.code, 'ACCESS_DENIED');
  await app.close();
  servers.splice(servers.indexOf(server), 1);
});

test('ok/enroll with a token, then renew in the background at 2/3 of the lifetime', async () => {
  const net = await import('node:net');
  const port = await new Promise<number>((r) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => r(p));
    });
  });
  const ca = await startCaServer({ ca: pki.tc.ca, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port, logger: pino({ level: 'silent' }), rateLimit: false });
  const crypto = await import('node:crypto');
  const { token } = await mintToken({
    key: loadTokenKey(pki.tc.layout.keysDir, TEST_PASSPHRASE), names: names({ uri: [id('prod/enrolled')] }), ttlSeconds: 600,
    rootFingerprint: crypto.createHash('sha256').update(pki.tc.ca.root.der).digest('hex'), madeBy: 'test',
  });
  // A clock 70 days ahead: past 2/3 of the 90-day lifetime, so the renewal is due at once.
  const src = await enrollIdentity({ caUrl: ca.url, token, now: () => new Date(Date.now() + 70 * 86_400_000) });
  try {
    const first = src.current.info;
    assert.equal(first.names.uri[0], id('prod/enrolled'));
    assert.ok(first.eku.includes(OID.clientAuth));
    const renewed = await new Promise<string>((r) => src.once('rotated', (m) => r(m.info.serial)));
    assert.notEqual(renewed, first.serial);
    assert.equal(src.current.info.names.uri[0], id('prod/enrolled'));
    assert.notEqual(src.current.key, undefined);
  } finally {
    src.close();
    await ca.close();
  }
});
