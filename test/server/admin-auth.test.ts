/**
 * The admin gate of `mutual serve` (src/server/admin-auth.ts) with real certificates from a test CA
 * and its SQLite store: who passes, and the code of each refusal. That a revocation on another
 * replica is seen at once is tested with two replicas on PostgreSQL in replicas.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { CaStore } from '../../src/ca/store.ts';
import { parseCertificate, type CertificateInfo } from '../../src/core/certificate.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { AdminAuthenticator, type AdminStatus } from '../../src/server/admin-auth.ts';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';

const TD = 'acme.internal';
let tc: TestCa;
let foreign: TestCa;
const certs: Record<'admin' | 'second' | 'revokedAdmin' | 'client' | 'server' | 'foreignAdmin', CertificateInfo> = {} as never;

const info = (pem: string): CertificateInfo => parseCertificate(readPemOrDer(pem, ['CERTIFICATE']));

before(async () => {
  tc = await makeTestCa();
  foreign = await makeTestCa();
  const issue = async (role: 'client' | 'server', names: { dns?: string[]; uri?: string[] }) =>
    info((await tc.ca.issue({ role, names: { dns: [], ip: [], uri: [], ...names }, actor: 'test' })).certificatePem);
  certs.admin = info(tc.init.admin.certificatePem);
  certs.second = await issue('client', { uri: [`spiffe://${TD}/admin/second`] });
  certs.revokedAdmin = await issue('client', { uri: [`spiffe://${TD}/admin/revoked`] });
  await tc.ca.revoke({ serial: certs.revokedAdmin.serial, reason: 'keyCompromise' });
  certs.client = await issue('client', { uri: [`spiffe://${TD}/prod/payments`] });
  certs.server = await issue('server', { dns: [`api.${TD}`] });
  certs.foreignAdmin = info(foreign.init.admin.certificatePem);
});
after(async () => {
  await tc?.close();
  await foreign?.close();
});

/** A gate over the test CA's store; `revokedHere` is this replica's revocation set. */
function gate(revokedHere: string[] = [], store: Pick<CaStore, 'getCertificate'> = tc.ca.store): AdminAuthenticator {
  return new AdminAuthenticator({ admins: [`spiffe://${TD}/admin/*`], issuerKeyIds: [tc.ca.client.keyId], store, isRevoked: (s) => revokedHere.includes(s) });
}

/** readStatus then require, as a request would; the identity or the refusal's code. */
async function decide(g: AdminAuthenticator, peer: CertificateInfo | undefined, chainOk = true): Promise<{ status?: AdminStatus; outcome: string }> {
  const status = await g.readStatus(peer, chainOk);
  try {
    return { status, outcome: g.require(peer, chainOk, status) };
  } catch (e) {
    return { status, outcome: isMutualError(e) ? e.code : `thrown: ${(e as Error).message}` };
  }
}

test('admin-gate', async (t) => {
  const noRow = { getCertificate: async () => undefined };
  const otherBytes = { ...certs.admin, der: Buffer.concat([certs.admin.der, Buffer.from([0])]) };
  const cases: { name: string; run: () => Promise<{ status?: AdminStatus; outcome: string }>; status?: AdminStatus; outcome: string }[] = [
    { name: 'ok/first-admin', run: () => decide(gate(), certs.admin), status: 'valid', outcome: `spiffe://${TD}/admin/admin` },
    { name: 'ok/second-admin', run: () => decide(gate(), certs.second), status: 'valid', outcome: `spiffe://${TD}/admin/second` },
    { name: 'fail/no-certificate', run: () => decide(gate(), undefined), outcome: 'AUTH_REQUIRED' },
    { name: 'fail/chain-not-verified', run: () => decide(gate(), certs.admin, false), outcome: 'AUTH_FORBIDDEN' },
    { name: 'fail/client-not-admin', run: () => decide(gate(), certs.client), outcome: 'AUTH_FORBIDDEN' },
    { name: 'fail/server-certificate', run: () => decide(gate(), certs.server), outcome: 'AUTH_FORBIDDEN' },
    { name: 'fail/admin-of-another-ca', run: () => decide(gate(), certs.foreignAdmin), outcome: 'AUTH_FORBIDDEN' },
    // Revoked in the store (by another replica) while this replica's set does not know yet.
    { name: 'fail/revoked-in-the-store-only', run: () => decide(gate(), certs.revokedAdmin), status: 'revoked', outcome: 'CERT_REVOKED' },
    { name: 'fail/revoked-in-this-replicas-set', run: () => decide(gate([certs.second.serial]), certs.second), status: 'valid', outcome: 'CERT_REVOKED' },
    // A certificate the shared store does not know could not be revoked there: no admin credential.
    { name: 'fail/admin-the-store-has-no-row-for', run: () => decide(gate([], noRow), certs.admin), status: 'unrecorded', outcome: 'AUTH_FORBIDDEN' },
    { name: 'fail/other-bytes-under-its-serial', run: () => decide(gate(), otherBytes), status: 'mismatch', outcome: 'AUTH_FORBIDDEN' },
    {
      name: 'fail/issuer-no-longer-trusted-after-reload',
      run: () => {
        const g = gate();
        g.setIssuers(['00'.repeat(20)]);
        return decide(g, certs.admin);
      },
      outcome: 'AUTH_FORBIDDEN',
    },
    // A route that did not read the store's word is refused, not waved through.
    { name: 'fail/status-not-read', run: async () => ({ outcome: (() => { try { return gate().require(certs.admin, true, undefined); } catch (e) { return isMutualError(e) ? e.code : 'thrown'; } })() }), outcome: 'thrown' },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const r = await c.run();
      assert.equal(r.outcome, c.outcome, c.name);
      assert.equal(r.status, c.status, `${c.name}: status`);
    });
  }
});
