/**
 * An expired client CA, or an expired root, refuses every leaf under it, even a leaf that is itself
 * inside its validity (issue 13, item 1: only the leaf's time was checked, and OpenSSL's
 * CERT_HAS_EXPIRED, about the CA, was taken as "the leaf's time, checked here"). Real handshakes
 * against a running gateway and an SDK server; `openssl verify` as the second opinion. The CAs are
 * made in the past (injected clock at init), the leaves are forged with their real keys to be valid
 * now, as a CA key holder could.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { startHarness, type Harness } from '../gateway/harness.ts';
import { makePki, request, names, id, type Pki, type Credential, type TestCaCert } from '../sdk/fixtures.ts';
import { createServer, loadIdentity, type IdentitySource } from '../../src/sdk/index.ts';
import { OID } from '../../src/core/oids.ts';
import { verify, describeVerify } from './support.ts';
import { requireTool } from '../helpers/tools.ts';

const DAY = 86_400_000;
const YEAR = 365 * DAY;
const T = new Date(Math.floor(Date.now() / 1000) * 1000);
const at = (ms: number) => new Date(T.getTime() + ms);

/** Made 3 years ago: its client CA (2 years) expired a year ago, its root (10 years) is valid. */
let old: Pki;
/** Made 11 years ago: its root expired a year ago. */
let ancient: Pki;
/** A copy of the ancient client CA (same key) valid for years to come, under the expired root. */
let longCopy: TestCaCert;
let longCopyFile: string;
let underExpiredCa: Credential;
let underExpiredRoot: Credential;

before(async () => {
  old = await makePki({ now: at(-3 * YEAR), name: 'Old Test' });
  ancient = await makePki({ now: at(-11 * YEAR), name: 'Ancient Test' });
  longCopy = await ancient.clientCaCopy({ key: 'client', signedBy: 'root', notBefore: at(-11 * YEAR), notAfter: at(5 * YEAR) });
  longCopyFile = ancient.tc.file('long-client-ca.pem', longCopy.pem);
  const leaf = (p: Pki, name: string) => p.forge({ by: 'client', eku: [OID.clientAuth], names: names({ uri: [id(`prod/${name}`)] }), notBefore: at(-DAY), notAfter: at(30 * DAY), name });
  underExpiredCa = leaf(old, 'under-expired-ca');
  const l = leaf(ancient, 'under-expired-root');
  underExpiredRoot = { ...l, fullchain: l.cert + longCopy.pem };
});
after(async () => {
  await old.close();
  await ancient.close();
});

interface Case {
  name: string;
  /** The trust the servers are configured with: root (OpenSSL) and client CA (the verifier). */
  trust: () => { rootFile: string; root: string; clientCaFile: string; clientCa: string };
  cred: () => Credential;
}
const cases: Case[] = [
  { name: 'the client CA has expired', trust: () => ({ rootFile: old.rootFile, root: old.root, clientCaFile: old.clientCaFile, clientCa: old.clientCa }), cred: () => underExpiredCa },
  { name: 'the root has expired', trust: () => ({ rootFile: ancient.rootFile, root: ancient.root, clientCaFile: longCopyFile, clientCa: longCopy.pem }), cred: () => underExpiredRoot },
];

for (const c of cases) {
  test(`fail/gateway: ${c.name} -> CERT_CHAIN_EXPIRED`, async () => {
    let h: Harness | undefined;
    try {
      h = await startHarness((cfg) => {
        const t = c.trust();
        cfg.trust = { ca: t.rootFile, clientCas: t.clientCaFile };
        // Revocation is not what is tested: the old CAs' CRLs are not served here.
        cfg.revocation = { mode: 'off' };
      });
      const r = await request(`${h.gateway.url}/api/x`, { ca: h.pki.root, cert: c.cred().fullchain, key: c.cred().key });
      assert.equal(`${r.status} ${r.json?.code}`, '495 CERT_CHAIN_EXPIRED', r.body);
    } finally {
      await h?.close();
    }
  });

  test(`fail/sdk: ${c.name} -> CERT_CHAIN_EXPIRED`, async () => {
    // The server's own certificate comes from a current CA; only the client side is old.
    const current = await makePki();
    let identity: IdentitySource | undefined;
    const server = await (async () => {
      const s = await current.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'sdk-server');
      identity = loadIdentity({ certFile: s.fullchainFile, keyFile: s.keyFile, caFile: current.rootFile, watch: false });
      const t = c.trust();
      return createServer({ identity, ca: t.root, clientCas: t.clientCa, revocation: { mode: 'off' } }, (_req, res) => res.end('ok'));
    })();
    try {
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const r = await request(`https://127.0.0.1:${(server.address() as AddressInfo).port}/`, { ca: current.root, cert: c.cred().fullchain, key: c.cred().key });
      assert.equal(`${r.status} ${r.json?.code}`, '495 CERT_CHAIN_EXPIRED', r.body);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      identity?.close();
      await current.close();
    }
  });
}

test('ok/openssl verify -x509_strict -purpose sslclient refuses both (second opinion)', (t) => {
  if (!requireTool(t, 'openssl')) return;
  for (const c of cases) {
    const dir = fs.mkdtempSync(path.join(old.tc.dir, 'v-'));
    const cred = c.cred();
    const leaf = path.join(dir, 'leaf.pem');
    const sent = path.join(dir, 'sent.pem');
    fs.writeFileSync(leaf, cred.cert);
    fs.writeFileSync(sent, cred.fullchain.slice(cred.cert.length));
    const v = verify({ cert: leaf, purpose: 'sslclient', caFile: c.trust().rootFile, untrusted: sent, at: T, authLevel: 2 });
    assert.ok(!v.ok, `${c.name}: ${describeVerify(v)}`);
    assert.ok(v.errors.some((e) => e.code === 10 && e.depth >= 1), `${c.name}: expired at depth >= 1: ${describeVerify(v)}`);
  }
});

test('fail/sdk: a keep-alive connection is refused at its next request once its client CA expires', async () => {
  const current = await makePki();
  const s = await current.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'sdk-server');
  const identity = loadIdentity({ certFile: s.fullchainFile, keyFile: s.keyFile, caFile: current.rootFile, watch: false });
  // A leaf made to outlive its client CA (2 years), as a holder of the CA key could.
  const leaf = current.forge({ by: 'client', eku: [OID.clientAuth], names: names({ uri: [id('prod/long')] }), notBefore: at(-DAY), notAfter: at(5 * YEAR), name: 'long' });
  // The server's clock starts now (T is older than this CA), then jumps past the client CA's notAfter.
  let clock = new Date();
  const server = await createServer({ identity, ca: current.root, clientCas: current.clientCa, revocation: { mode: 'off' }, now: () => clock }, (_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const get = () => new Promise<{ status: number; code?: string; reused: boolean }>((resolve, reject) => {
    const req = https.get(`https://127.0.0.1:${(server.address() as AddressInfo).port}/`, { ca: current.root, cert: leaf.fullchain, key: leaf.key, agent }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (b: Buffer) => parts.push(b));
      res.on('end', () => {
        const body = Buffer.concat(parts).toString('utf8');
        resolve({ status: res.statusCode ?? 0, code: body.startsWith('{') ? (JSON.parse(body) as { code?: string }).code : undefined, reused: req.reusedSocket });
      });
    });
    req.on('error', reject);
  });
  try {
    const first = await get();
    assert.equal(first.status, 200, String(first.code));
    clock = new Date(clock.getTime() + 3 * YEAR);
    const r = await get();
    assert.ok(r.reused, 'the same connection');
    assert.equal(`${r.status} ${r.code}`, '495 CERT_CHAIN_EXPIRED');
  } finally {
    agent.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    identity.close();
    await current.close();
  }
});
