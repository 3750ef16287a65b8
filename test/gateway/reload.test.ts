/**
 * Files that change under a running gateway: a CRL file (as `mutual agent` writes it) and the
 * client CA bundle apply without a restart; shutdown lets a request in flight finish.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startHarness } from './harness.ts';
import { request, replaceFile } from '../sdk/fixtures.ts';
import { makeTestCa } from '../helpers/test-ca.ts';

const until = async (what: string, cond: () => Promise<boolean>) => {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > 8000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

test('ok/a new CRL file and a new client CA bundle apply without a restart', async () => {
  let crlFile = '';
  const h = await startHarness((c, x) => {
    void x;
    crlFile = path.join(path.dirname(String((c.trust as { ca: string }).ca)), 'client.crl');
    c.revocation = { mode: 'fail-closed', crlUrls: [], crlFiles: [crlFile], ocsp: false };
  });
  try {
    // The file did not exist at start: fail-closed refuses.
    const call = () => request(`${h.gateway.url}/api/x`, { ca: h.pki.root, cert: h.creds.payments.fullchain, key: h.creds.payments.key });
    assert.equal((await call()).json?.code, 'REVOCATION_UNAVAILABLE');
    replaceFile(crlFile, await h.pki.crl());
    await until('the CRL file to load', async () => (await call()).status === 200);
    await h.pki.tc.ca.revoke({ serial: h.creds.payments.serial, reason: 'keyCompromise' });
    replaceFile(crlFile, await h.pki.crl());
    // A call whose connection is open when the CRL lands is closed by the verifier
    // (closeRevokedConnections): a hang-up then, and the next call is refused.
    await until('the new CRL to apply', async () => (await call().catch(() => undefined))?.json?.code === 'CERT_REVOKED');
    // Trust bundle: only another CA's client CA is trusted now, so our callers' issuer is not. (Named
    // apart: a CA with our names and another key is a look-alike, refused as CERT_BAD_SIGNATURE.)
    const other = await makeTestCa({ name: 'Other Test' });
    try {
      const billing = () => request(`${h.gateway.url}/api/x`, { ca: h.pki.root, cert: h.creds.admin.fullchain, key: h.creds.admin.key });
      assert.equal((await billing()).status, 200);
      replaceFile(h.pki.clientCaFile, other.ca.client.pem);
      await until('the new client CA bundle', async () => (await billing()).json?.code === 'CERT_ISSUER_NOT_ALLOWED');
      replaceFile(h.pki.clientCaFile, h.pki.clientCa);
      await until('the bundle to be restored', async () => (await billing()).status === 200);
    } finally {
      await other.close();
    }
  } finally {
    await h.close();
  }
});

test('ok/shutdown lets a request in flight finish and refuses new connections', async () => {
  const h = await startHarness((c) => {
    Object.assign(c.limits as object, { upstreamTimeoutMs: 5000, shutdownTimeoutMs: 5000 });
  });
  try {
    const slow = request(`${h.gateway.url}/api/slow`, { ca: h.pki.root, cert: h.creds.payments.fullchain, key: h.creds.payments.key });
    await new Promise((r) => setTimeout(r, 300));
    const closing = h.gateway.close();
    await new Promise((r) => setTimeout(r, 100));
    await assert.rejects(request(`${h.gateway.url}/api/x`, { ca: h.pki.root, cert: h.creds.payments.fullchain, key: h.creds.payments.key }));
    const r = await slow;
    assert.equal(r.status, 200, r.body);
    await closing;
  } finally {
    await h.close();
  }
});
