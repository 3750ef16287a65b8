/**
 * The agent across an intermediate key rotation: the retired intermediate (still valid) and its
 * CRL go into the trust files with the current ones, the agent's own certificate from the old
 * key is found revoked on the old key's CRL, and what the CA says about retired intermediates is
 * checked like everything else it sends: a retired CA not signed by the pinned root, a retired
 * CRL signed by another key, an older retired CRL (a replay), too many of them, or a CA from
 * before rotations were served (404). The bad answers come from a small HTTPS proxy in front of
 * the real CA that replaces one path's body.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { Agent } from '../../src/agent/agent.ts';
import { agentStatus } from '../../src/agent/agent-status.ts';
import { readState } from '../../src/agent/agent-state.ts';
import { TrustCache } from '../../src/agent/trust-cache.ts';
import { parseCrl } from '../../src/core/crl-reader.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { parsePemBlocks, readPemOrDer } from '../../src/core/pem.ts';
import { makeTestCa } from '../helpers/test-ca.ts';
import { call } from '../../src/sdk/ca-client.ts';
import { hasTool, openssl } from '../helpers/tools.ts';
import { hostDir, manifestFor, serialOf, serverManifest, snapshot, startAgentCa, sleep, type AgentTestCa } from './harness.ts';

const NAMES = ['localhost', '127.0.0.1'];
const count = (text: string, label: string) => text.split(`-----BEGIN ${label}-----`).length - 1;
const skipNoOpenssl = { skip: !hasTool('openssl') && process.env.MUTUAL_INTEROP !== 'require' ? 'openssl is not installed (apt-get install openssl)' : false };

/** An HTTPS proxy in front of the CA (same root) that answers some paths with other bytes. */
async function proxyFor(ca: AgentTestCa): Promise<{ url: string; replace: Map<string, { status: number; body: Buffer | string }>; close(): Promise<void> }> {
  const cert = await ca.tc.ca.issue({ role: 'server', names: { dns: ['localhost'], ip: ['127.0.0.1'], uri: [] }, actor: 'test' });
  const replace = new Map<string, { status: number; body: Buffer | string }>();
  const server = https.createServer({ cert: cert.fullchainPem, key: cert.privateKey!.export({ type: 'pkcs8', format: 'pem' }) }, (req, res) => {
    const r = replace.get(req.url ?? '');
    if (r) {
      res.writeHead(r.status);
      res.end(r.body);
      return;
    }
    call(`${ca.url}${req.url}`, { tls: { ca: ca.root }, raw: true }).then(
      (a) => {
        // JSON answers (/roots.json) keep their type: the agent reads them as JSON only then.
        res.writeHead(a.status, (req.url ?? '').endsWith('.json') ? { 'content-type': 'application/json' } : {});
        res.end(a.body);
      },
      () => {
        res.writeHead(502);
        res.end();
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}`, replace,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** A trust-only manifest (no certificate of its own) against `url`. */
function trustManifest(dir: string, ca: AgentTestCa, url: string) {
  return manifestFor(dir, {
    ca: { url, rootFingerprint: ca.rootFingerprint },
    stateDir: path.join(dir, 'state'),
    renewal: { retryInitial: '100ms', retryMax: '100ms' },
    trust: {
      refresh: '1ms',
      bundles: [{ path: path.join(dir, 'trust/clients-ca.pem'), include: ['root', 'client-ca'] }],
      crls: [{ path: path.join(dir, 'trust/crl.pem'), issuers: ['root', 'client'] }, { path: path.join(dir, 'trust/client.crl'), issuers: ['client'], format: 'der' }],
    },
  });
}

describe('agent across an intermediate key rotation', { concurrency: 3 }, () => {
  it('ok/the agent\'s own certificate from the old server CA key is found revoked on that key\'s CRL', async () => {
    const ca = await startAgentCa();
    const dir = hostDir();
    try {
      fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(NAMES));
      const raw = serverManifest(dir, ca, { trust: { refresh: '1ms', bundles: [{ path: path.join(dir, 'trust/servers-ca.pem'), include: ['root', 'server-ca'] }] } });
      const agent = new Agent({ manifest: manifestFor(dir, raw) });
      assert.equal((await agent.cycle({ ignoreBackoff: true })).exitCode, 0);
      const cert = path.join(dir, 'certs/web.crt');
      const serial = serialOf(cert);
      await ca.rotate('server-ca');
      await ca.revoke(serial);
      await sleep(1500);
      const files = [cert, path.join(dir, 'certs/web.key')];
      const before = snapshot(files);
      const r = await agent.cycle({ ignoreBackoff: true });
      assert.equal(r.exitCode, 12, JSON.stringify(r.certificates));
      assert.equal(r.certificates[0].code, 'AGENT_REVOKED');
      assert.equal(agentStatus(agent.manifest).certificates[0].health, 'revoked');
      assert.deepEqual(snapshot(files), before, 'the files in place are kept');
      const state = readState(path.join(dir, 'state'));
      assert.ok(Object.keys(state.trust.crls).some((k) => /^server\.[0-9a-f]{16}$/.test(k)), `the retired key's CRL is tracked: ${Object.keys(state.trust.crls).join(', ')}`);
      assert.equal(count(fs.readFileSync(path.join(dir, 'trust/servers-ca.pem'), 'utf8'), 'CERTIFICATE'), 3, 'root, new and retired server CA');
      // A new token: enrolled again, from the new key.
      fs.writeFileSync(path.join(dir, 'web.token'), await ca.token(NAMES));
      const r2 = await agent.cycle({ ignoreBackoff: true });
      assert.equal(r2.exitCode, 0, JSON.stringify(r2.certificates));
      const issuer = parseCertificate(readPemOrDer(fs.readFileSync(cert, 'utf8'), ['CERTIFICATE'])).authorityKeyId!;
      assert.ok(issuer.equals(parseCertificate(readPemOrDer(ca.tc.ca.server.pem, ['CERTIFICATE'])).subjectKeyId!), 'issued by the new key');
    } finally {
      await ca.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ok/trust files carry both client CAs and both CRLs (PEM); a DER CRL file holds the current key\'s; OpenSSL checks with them', skipNoOpenssl, async () => {
    const ca = await startAgentCa();
    const dir = hostDir();
    try {
      const old = await ca.tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: ['spiffe://acme.internal/test/old'] }, actor: 'test' });
      await ca.rotate('client-ca');
      const fresh = await ca.tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: ['spiffe://acme.internal/test/new'] }, actor: 'test' });
      const agent = new Agent({ manifest: trustManifest(dir, ca, ca.url) });
      const r = await agent.cycle({ ignoreBackoff: true });
      assert.equal(r.exitCode, 0, JSON.stringify(r.trust));
      const bundle = fs.readFileSync(path.join(dir, 'trust/clients-ca.pem'), 'utf8');
      const crls = fs.readFileSync(path.join(dir, 'trust/crl.pem'), 'utf8');
      assert.equal(count(bundle, 'CERTIFICATE'), 3);
      assert.equal(count(crls, 'X509 CRL'), 3);
      const currentKey = parseCertificate(readPemOrDer(ca.tc.ca.client.pem, ['CERTIFICATE'])).subjectKeyId!;
      assert.ok(parseCrl(fs.readFileSync(path.join(dir, 'trust/client.crl'))).authorityKeyId!.equals(currentKey), 'the DER file is the current key\'s CRL');
      for (const [name, pem] of [['old', old.certificatePem], ['new', fresh.certificatePem]]) {
        const leaf = path.join(dir, `${name}.pem`);
        fs.writeFileSync(leaf, pem);
        const v = openssl(['verify', '-x509_strict', '-purpose', 'sslclient', '-crl_check_all', '-CAfile', path.join(dir, 'trust/clients-ca.pem'), '-CRLfile', path.join(dir, 'trust/crl.pem'), leaf]);
        assert.equal(v.status, 0, `${name}: ${v.stdout}${v.stderr}`);
      }
      // Rendered for a time after the retired intermediate expired: it and its CRL are gone.
      const cache = new TrustCache(path.join(dir, 'state'));
      const retired = cache.retired('client');
      assert.equal(retired.length, 1);
      const later = new Date(retired[0].notAfter.getTime() + 1000);
      assert.equal(count(cache.bundle(['root', 'client-ca'], later)!, 'CERTIFICATE'), 2);
      assert.equal(count(cache.crls(['root', 'client'], 'pem', later)!.toString(), 'X509 CRL'), 2);
    } finally {
      await ca.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fail/bad answers about retired intermediates: refused with a code, the trust files unchanged', async (t) => {
    const ca = await startAgentCa();
    const dir = hostDir();
    const proxy = await proxyFor(ca);
    try {
      await ca.tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: ['spiffe://acme.internal/test/old'] }, actor: 'test' });
      const victim = await ca.tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: ['spiffe://acme.internal/test/victim'] }, actor: 'test' });
      const oldKeyed = `client.${parseCertificate(readPemOrDer(ca.tc.ca.client.pem, ['CERTIFICATE'])).subjectKeyId!.toString('hex').slice(0, 16)}`;
      const oldCa = ca.tc.ca.client.pem;
      await ca.rotate('client-ca');
      const get = async (p: string) => (await call(`${ca.url}${p}`, { tls: { ca: ca.root }, raw: true })).body;
      const staleRetiredCrl = await get(`/crl/${oldKeyed}.crl`);
      await ca.revoke(victim.serial);
      await sleep(1500);
      const agent = new Agent({ manifest: trustManifest(dir, ca, proxy.url) });
      const first = await agent.cycle({ ignoreBackoff: true });
      assert.equal(first.exitCode, 0, JSON.stringify(first.trust));
      const files = ['trust/clients-ca.pem', 'trust/crl.pem', 'trust/client.crl'].map((f) => path.join(dir, f));
      const good = snapshot(files);
      const revokedInFile = () => parsePemBlocks(fs.readFileSync(files[1], 'utf8')).some((b) => parseCrl(b.der).revoked.has(victim.serial));
      assert.ok(revokedInFile(), 'the retired key\'s revocation is in the CRL file');

      const currentCrl = await get('/crl/client.crl');
      const allCas = (await get('/ca/client.all.pem')).toString();
      // Another CA's client intermediate: a CA, but not from the pinned root.
      const stranger = await makeTestCa();
      const strangerCa = stranger.ca.client.pem;
      await stranger.close();
      const cases: { name: string; path: string; status: number; body: Buffer | string; code?: string; kept?: true }[] = [
        { name: 'fail/retired list: a CA not signed by the pinned root', path: '/ca/client.all.pem', status: 200, body: allCas + strangerCa, code: 'CA_UNTRUSTED' },
        { name: 'fail/retired list: the server CA among the client CAs', path: '/ca/client.all.pem', status: 200, body: allCas + ca.tc.ca.server.pem, code: 'CA_UNTRUSTED' },
        { name: 'fail/retired list: a certificate that is not a CA', path: '/ca/client.all.pem', status: 200, body: allCas + (await ca.tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: ['spiffe://acme.internal/test/leaf'] }, actor: 'test' })).certificatePem, code: 'CA_UNTRUSTED' },
        { name: 'fail/retired list: garbage', path: '/ca/client.all.pem', status: 200, body: allCas + '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', code: 'CA_UNTRUSTED' },
        { name: 'fail/retired list: more than 9 blocks', path: '/ca/client.all.pem', status: 200, body: allCas + oldCa.repeat(9), code: 'CA_UNTRUSTED' },
        { name: 'fail/retired CRL signed by the new key', path: `/crl/${oldKeyed}.crl`, status: 200, body: currentCrl, code: 'CRL_BAD_SIGNATURE' },
        { name: 'fail/retired CRL missing', path: `/crl/${oldKeyed}.crl`, status: 404, body: '', code: 'CA_UNAVAILABLE' },
        { name: 'ok/an older retired CRL (a replay) is not taken', path: `/crl/${oldKeyed}.crl`, status: 200, body: staleRetiredCrl, kept: true },
      ];
      for (const c of cases) {
        await t.test(c.name, async () => {
          proxy.replace.clear();
          proxy.replace.set(c.path, { status: c.status, body: c.body });
          const r = await agent.cycle({ ignoreBackoff: true });
          if (c.kept) {
            assert.equal(r.exitCode, 0, JSON.stringify(r.trust));
          } else {
            assert.notEqual(r.exitCode, 0);
            assert.equal(r.trust.code, c.code, JSON.stringify(r.trust));
          }
          assert.deepEqual(snapshot(files), good, 'the trust files are unchanged');
          assert.ok(revokedInFile(), 'the revocation is still in the CRL file');
        });
      }
      await t.test('ok/a CA from before rotations were served (404 on .all.pem): the current ones only', async () => {
        proxy.replace.clear();
        for (const role of ['server', 'client']) proxy.replace.set(`/ca/${role}.all.pem`, { status: 404, body: '' });
        const r = await agent.cycle({ ignoreBackoff: true });
        assert.equal(r.exitCode, 0, JSON.stringify(r.trust));
        assert.equal(count(fs.readFileSync(files[0], 'utf8'), 'CERTIFICATE'), 2);
        assert.equal(count(fs.readFileSync(files[1], 'utf8'), 'X509 CRL'), 2);
        const cached = fs.readdirSync(path.join(dir, 'state/trust'));
        assert.ok(!cached.some((f) => /^crl-client\.[0-9a-f]{16}\.der$/.test(f)), `the retired CRL was dropped from the cache: ${cached.join(', ')}`);
        assert.ok(cached.includes('crl-client.der') && !cached.includes('client-ca.retired.pem'));
      });
    } finally {
      await proxy.close();
      await ca.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
