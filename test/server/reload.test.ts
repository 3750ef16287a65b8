/**
 * `mutual serve` (the real CLI, its own process) takes up a key rotation on SIGHUP without a
 * restart: after both intermediates are re-signed with new keys and installed, it issues from the
 * new server key (OpenSSL verifies against the new intermediate), presents a TLS certificate
 * from it, serves both keys' CA certificates and CRLs, and still accepts the admin certificate
 * the old client key issued. A reload that fails (an intermediate certificate that does not
 * match its key) is logged and changes nothing: the server goes on issuing as before.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { readConfig } from '../../src/ca/config.ts';
import { installIntermediate, intermediateCsr } from '../../src/ca/intermediate.ts';
import { signIntermediate } from '../../src/ca/offline.ts';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { readPemOrDer, toPem } from '../../src/core/pem.ts';
import { defaultNamePolicy } from '../../src/core/policy.ts';
import { makeTestCa, TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { send, spawnServe, waitFor, type SendTls } from '../helpers/server.ts';
import { hasTool, openssl } from '../helpers/tools.ts';

const skipNoOpenssl = { skip: !hasTool('openssl') && process.env.MUTUAL_INTEROP !== 'require' ? 'openssl is not installed (apt-get install openssl)' : false };
const tc = await makeTestCa();
after(() => tc.close());

const keyIdOf = (pem: string) => parseCertificate(readPemOrDer(pem, ['CERTIFICATE'])).subjectKeyId!;
const akiOf = (pem: string) => parseCertificate(readPemOrDer(pem, ['CERTIFICATE'])).authorityKeyId!;
const csrFor = (host: string) => toPem(buildCsr({ privateKey: generateKeyPair('p256').privateKey, commonName: host, names: { dns: [host], ip: [], uri: [] } }), 'CERTIFICATE REQUEST');
const file = (name: string, text: string) => {
  const p = path.join(tc.dir, name);
  fs.writeFileSync(p, text);
  return p;
};

/** Re-signs an intermediate with a new key and installs it, as docs/operations.md does with the CLI. */
async function rotate(role: 'server-ca' | 'client-ca'): Promise<void> {
  const config = readConfig(tc.layout.config);
  const csr = await intermediateCsr({ home: tc.home, role, passphrase: TEST_PASSPHRASE, newKey: true });
  const pem = await signIntermediate({
    offlineDir: tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, csr, role, organization: config.name,
    policy: defaultNamePolicy(config.trustDomain, { dns: config.policy.permitDns, ip: config.policy.permitIp }),
  });
  await installIntermediate({ home: tc.home, role, certificate: pem, passphrase: TEST_PASSPHRASE });
}

/** The certificate the server presents in its TLS handshake (PEM). */
function servedCertificate(url: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), ca: tc.init.rootPem, servername: 'localhost' }, () => {
      const raw = s.getPeerX509Certificate()!.raw;
      s.end();
      resolve(toPem(raw, 'CERTIFICATE'));
    });
    s.on('error', reject);
  });
}

test('ok/SIGHUP: a key rotation is taken up without a restart, the old admin certificate still works; a failing reload changes nothing', skipNoOpenssl, async () => {
  const srv = await spawnServe(tc);
  try {
    // The admin certificate comes from the client CA's first key, which the rotation retires.
    const admin: SendTls = { ca: tc.init.rootPem, cert: tc.init.admin.certificatePem, key: tc.init.admin.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
    const sign = async (host: string) => {
      const r = await send(`${srv.url}/v1/sign`, { body: { profile: 'server', csr: csrFor(host) }, tls: admin });
      assert.equal(r.status, 201, r.body.toString());
      return r.json.certificate as string;
    };
    const oldServerKey = keyIdOf(fs.readFileSync(tc.layout.serverCaCert, 'utf8'));
    assert.ok(akiOf(await sign('before.acme.internal')).equals(oldServerKey));

    await rotate('server-ca');
    await rotate('client-ca');
    const newServerCa = fs.readFileSync(tc.layout.serverCaCert, 'utf8');
    const newServerKey = keyIdOf(newServerCa);
    // Not yet reloaded: still the old key.
    assert.ok(akiOf(await sign('still.acme.internal')).equals(oldServerKey));

    srv.child.kill('SIGHUP');
    // The server's own certificate is the reload's last step (the CA issues from the new key
    // from its first).
    await waitFor('the reload', 10_000, async () => akiOf(await servedCertificate(srv.url)).equals(newServerKey) || undefined);
    const after = await sign('after.acme.internal');
    assert.ok(akiOf(after).equals(newServerKey), 'issued from the new key');
    const v = openssl(['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', tc.layout.rootCert, '-untrusted', file('new-server-ca.pem', newServerCa), file('after.pem', after)]);
    assert.equal(v.status, 0, v.stdout + v.stderr);
    const all = (await send(`${srv.url}/ca/server.all.pem`, { tls: { ca: tc.init.rootPem } })).body.toString();
    assert.equal(all.split('-----BEGIN CERTIFICATE-----').length - 1, 2, 'the new server CA and the retired one');
    const oldCrl = await send(`${srv.url}/crl/server.${oldServerKey.toString('hex').slice(0, 16)}.crl`, { tls: { ca: tc.init.rootPem } });
    assert.equal(oldCrl.status, 200, 'the retired key\'s CRL is served');
    const oldCa = file('old-server-ca.pem', all.slice(all.indexOf('-----BEGIN CERTIFICATE-----', 10)));
    fs.writeFileSync(path.join(tc.dir, 'old.crl'), oldCrl.body);
    const crl = openssl(['crl', '-inform', 'DER', '-in', path.join(tc.dir, 'old.crl'), '-noout', '-CAfile', oldCa]);
    assert.match(crl.stdout + crl.stderr, /verify OK/, 'signed by the retired server CA');

    // A reload that fails: the installed server CA certificate no longer matches its key.
    const good = fs.readFileSync(tc.layout.serverCaCert);
    fs.copyFileSync(oldCa, tc.layout.serverCaCert);
    try {
      srv.child.kill('SIGHUP');
      await waitFor('the failed reload in the log', 10_000, () => /reload failed/.test(srv.output()) || undefined);
      assert.match(srv.output(), /KEY_MISMATCH/);
      assert.ok(akiOf(await sign('still-new.acme.internal')).equals(newServerKey), 'still issuing from what was loaded');
      assert.equal((await send(`${srv.url}/health`, { tls: { ca: tc.init.rootPem } })).status, 200);
    } finally {
      fs.writeFileSync(tc.layout.serverCaCert, good);
    }
  } finally {
    srv.child.kill('SIGTERM');
    await srv.exited;
  }
});
