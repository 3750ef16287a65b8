/**
 * Two ACME services on two authorities sharing one PostgreSQL database (two replicas of `mutual
 * serve`): a nonce from one is spent once on either, an account made on one is found on the
 * other, a challenge answered on one is validated once, and two finalizes on both replicas issue
 * one certificate, in the shared inventory and verified by `openssl verify`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { AcmeAuthority } from '../../src/ca/acme/acme-authority.ts';
import { acmeConfig } from '../../src/ca/config.ts';
import type { CertificateAuthority } from '../../src/ca/authority.ts';
import { openAuthority } from '../../src/ca/open-authority.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { makeTestCa, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';
import { dropSchema, freshSchema, pgSkip, PG_URL } from '../store/fixtures.ts';
import { accountKey, ACCOUNT_URL, csrFor, opensslVerify, startResponder, type Responder } from './harness.ts';

describe('ACME on two replicas of one PostgreSQL', { skip: pgSkip() }, () => {
  let tc: TestCa;
  let schema: string;
  let responder: Responder;
  const cas: CertificateAuthority[] = [];
  const services: AcmeAuthority[] = [];

  before(async () => {
    schema = freshSchema();
    tc = await makeTestCa({ databaseUrl: PG_URL, databaseSchema: schema });
    await tc.ca.close();
    responder = await startResponder();
    const config = { ...acmeConfig({}), enabled: true, challenges: ['http-01' as const], httpPort: responder.port, validationTimeout: '2s' };
    for (let i = 0; i < 2; i++) {
      const ca = await openAuthority({ home: tc.home, passphrase: TEST_PASSPHRASE, databaseUrl: PG_URL, databaseSchema: schema });
      cas.push(ca);
      services.push(new AcmeAuthority({ ca, config, retry: { attempts: 2, backoffMs: 5 }, hostOverride: '127.0.0.1' }));
    }
  });
  after(async () => {
    for (const s of services) await s.settle();
    await responder?.close();
    for (const ca of cas) await ca.close();
    if (schema && PG_URL) await dropSchema(schema);
    if (tc) fs.rmSync(tc.dir, { recursive: true, force: true });
  });

  test('ok/nonce-account-challenge-and-finalize-across-replicas', async () => {
    const [A, B] = services;
    const nonce = await A.newNonce();
    assert.deepEqual((await Promise.all([A.spendNonce(nonce), B.spendNonce(nonce), A.spendNonce(nonce), B.spendNonce(nonce)])).filter(Boolean).length, 1);
    assert.equal(await B.spendNonce(await B.newNonce()), true, 'both replicas share the nonce key');

    const k = await accountKey();
    const made = await A.newAccount({ jwk: k.jwk, thumbprint: k.thumbprint, contact: [], termsOfServiceAgreed: true, accountUrl: ACCOUNT_URL });
    assert.equal((await B.accountByKey(k.thumbprint))?.id, made.account.id);
    const order = await B.newOrder(made.account.id, { identifiers: [{ type: 'dns', value: 'replica.acme.internal' }] });
    const authz = await A.authorization(made.account.id, order.authorizationIds[0]);
    const c = authz.challenges[0];
    responder.answers.set(c.token, `${c.token}.${k.thumbprint}`);
    await Promise.all([A.respondChallenge(made.account.id, c.id), B.respondChallenge(made.account.id, c.id)]);
    await Promise.all(services.map((s) => s.settle()));
    assert.equal((await B.order(made.account.id, order.id)).status, 'ready');

    const results = await Promise.allSettled([A, B].map((s) => s.finalize(made.account.id, order.id, csrFor(['replica.acme.internal']))));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'one finalize wins');
    assert.ok(isMutualError((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason, 'ACME_ORDER_NOT_READY'));
    const issued = await cas[0].list({ role: 'server', limit: 100 });
    assert.equal(issued.filter((x) => x.issuedBy === `acme:${made.account.id}`).length, 1, 'one certificate in the shared inventory');
    const done = await A.order(made.account.id, order.id);
    const chain = await B.certificate(made.account.id, done.certificateId!, 0);
    const v = opensslVerify(tc, chain.pem, new Date());
    assert.equal(v.status, 0, v.output);
  });
});
