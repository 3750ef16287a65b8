/**
 * Two replicas of `mutual serve` on one PostgreSQL schema (two CertificateAuthority instances on
 * the same state folder, as two processes would be): concurrent issuance on both with no duplicate
 * serial and one inventory; a revocation on A reaches B's OCSP answers (including its cached `good`)
 * and B's CRL within seconds; a token is single use across replicas. That scheduled jobs run on one
 * replica at a time (advisory locks) is covered by test/store/postgres.test.ts.
 * Needs MUTUAL_TEST_PG (skips without it; fails without it under MUTUAL_INTEROP=require).
 */
import { describe, test, before, after } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { pino } from 'pino';
import { CertificateAuthority } from '../../src/ca/authority.ts';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { toPem } from '../../src/core/pem.ts';
import { startCaServer, type CaServer } from '../../src/server/ca-server.ts';
import { renew } from '../../src/sdk/ca-client.ts';
import type { PostgresStore } from '../../src/store/postgres-store.ts';
import { makeTestCa, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';
import { requireTool } from '../helpers/tools.ts';
import { curlTo, dropSchema, freshSchema, opensslAsync, pgSkip, pgUrl, send, waitFor, type SendTls } from '../helpers/server.ts';
import { openAuthority } from '../../src/ca/open-authority.ts';

/** How soon a revocation on one replica must show on the other. */
const PROPAGATION_MS = 3000;

describe('replicas on one PostgreSQL', { skip: pgSkip() }, () => {
  let tc: TestCa;
  let schema: string;
  const cas: CertificateAuthority[] = [];
  const servers: CaServer[] = [];
  let A: string;
  let B: string;
  let admin: SendTls;
  let n = 0;
  const tmp = (name: string) => path.join(tc.dir, `${n++}-${name}`);

  before(async () => {
    const url = pgUrl();
    schema = freshSchema();
    // Made on PostgreSQL from the start, as `mutual init --database` does: the admin certificate
    // must be in the shared inventory (one the store does not know is refused).
    tc = await makeTestCa({ databaseUrl: url, databaseSchema: schema });
    await tc.ca.close();
    for (let i = 0; i < 2; i++) {
      const ca = await openAuthority({ home: tc.home, passphrase: TEST_PASSPHRASE, databaseUrl: url, databaseSchema: schema });
      cas.push(ca);
      servers.push(await startCaServer({ ca, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), rateLimit: false }));
    }
    [A, B] = servers.map((s) => s.url);
    admin = { ca: tc.init.rootPem, cert: tc.init.admin.certificatePem, key: tc.init.admin.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
  });
  after(async () => {
    for (const s of servers) await s.close();
    for (const ca of cas) await ca.close();
    if (schema && process.env.MUTUAL_TEST_PG) await dropSchema(schema);
    if (tc) fs.rmSync(tc.dir, { recursive: true, force: true });
  });

  /** A CSR (PEM) for a client identity, and its key. */
  const clientCsr = (svc: string) => {
    const { privateKey } = generateKeyPair('p256');
    return { csr: toPem(buildCsr({ privateKey, commonName: svc, names: { dns: [], ip: [], uri: [`spiffe://acme.internal/prod/${svc}`] } }), 'CERTIFICATE REQUEST'), key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
  };

  test('ok/concurrent-issuance-on-both', async (t) => {
    const PER_CLIENT = 12;
    const CLIENTS = 6;
    const csr = clientCsr('burst').csr;
    const issued: { serial: string; via: string }[] = [];
    await Promise.all([A, B].flatMap((base) => Array.from({ length: CLIENTS }, async () => {
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (let i = 0; i < PER_CLIENT; i++) {
          const r = await send(`${base}/v1/sign`, { body: { profile: 'client', csr }, tls: admin, agent });
          assert.equal(r.status, 201, r.body.toString());
          issued.push({ serial: r.json.serial, via: base });
        }
      } finally {
        agent.destroy();
      }
    })));
    const serials = issued.map((i) => i.serial);
    assert.equal(serials.length, 2 * CLIENTS * PER_CLIENT);
    assert.equal(new Set(serials).size, serials.length, 'duplicate serials');
    // Each replica's inventory has every certificate, whichever replica issued it.
    for (const base of [A, B]) {
      const list = await send(`${base}/v1/certificates?all=1&limit=10000`, { tls: admin });
      assert.equal(list.status, 200);
      const seen = new Set(list.json.items.map((x: { serial: string }) => x.serial));
      assert.deepEqual(serials.filter((s) => !seen.has(s)), [], `missing from ${base === A ? 'A' : 'B'}`);
      assert.equal(seen.size, list.json.items.length, 'a serial listed twice');
    }
    const { rows } = await (cas[0].store as PostgresStore).pool.query('SELECT count(*) AS n, count(DISTINCT serial) AS d FROM certificates');
    assert.equal(Number(rows[0].n), Number(rows[0].d));
    t.diagnostic(`${serials.length} certificates from two replicas`);
  });

  test('ok/revocation-on-a-reaches-b-ocsp-and-crl', async (t: TestContext) => {
    if (!requireTool(t, 'openssl') || !requireTool(t, 'curl')) return;
    const { csr } = clientCsr('replicated');
    const made = await send(`${B}/v1/sign`, { body: { profile: 'client', csr }, tls: admin });
    assert.equal(made.status, 201);
    const serial: string = made.json.serial;
    const certFile = tmp('leaf.pem');
    fs.writeFileSync(certFile, made.json.certificate);
    const ocsp = (base: string, extra: string[] = []) => opensslAsync(['ocsp', '-url', `${base}/ocsp`, '-issuer', tc.layout.clientCaCert, '-cert', certFile, '-CAfile', tc.layout.rootCert, ...extra]);
    const crlLists = async (base: string): Promise<boolean> => {
      const der = tmp('client.crl');
      const r = await curlTo(['--cacert', tc.layout.rootCert, `${base}/crl/client.crl`], der);
      assert.equal(r.status, 200);
      const text = await opensslAsync(['crl', '-inform', 'DER', '-in', der, '-noout', '-text']);
      assert.equal(text.status, 0, text.stderr);
      return text.stdout.includes(`Serial Number: ${serial.toUpperCase()}`);
    };
    // B says good, and caches that answer (no nonce); neither CRL lists it.
    for (const extra of [[], ['-no_nonce'], ['-no_nonce']]) assert.match((await ocsp(B, extra)).stdout, /: good/);
    assert.equal(await crlLists(B), false);

    const rv = await send(`${A}/v1/revoke`, { body: { serial, reason: 'keyCompromise' }, tls: admin });
    assert.equal(rv.status, 200, rv.body.toString());
    const started = Date.now();
    // A knows at once.
    assert.match((await ocsp(A)).stdout, /: revoked/);

    const cases = [
      { name: 'ok/b-ocsp-cached-path', check: async () => /: revoked/.test((await ocsp(B, ['-no_nonce'])).stdout) },
      { name: 'ok/b-ocsp-with-nonce', check: async () => /: revoked/.test((await ocsp(B)).stdout) },
      { name: 'ok/b-crl', check: () => crlLists(B) },
    ];
    for (const c of cases) {
      await t.test(c.name, async () => {
        await waitFor(`${c.name} to show the revocation`, PROPAGATION_MS - (Date.now() - started) + 200, async () => ((await c.check()) ? true : undefined));
        t.diagnostic(`${c.name}: ${Date.now() - started} ms after the revocation`);
      });
    }
    // The answer carries the reason and time, and verifies.
    const o = await ocsp(B);
    assert.match(o.stdout, /Reason: keyCompromise/);
    assert.match(o.stderr, /Response verify OK/);
  });

  test('ok/token-single-use-across-replicas', async () => {
    const mk = await send(`${A}/v1/tokens`, { body: { names: ['spiffe://acme.internal/prod/once'] }, tls: admin });
    assert.equal(mk.status, 201);
    const { csr } = clientCsr('once');
    const both = await Promise.all([A, B, A, B].map((base) => send(`${base}/v1/enroll`, { body: { csr }, headers: { authorization: `Bearer ${mk.json.token}` }, tls: { ca: tc.init.rootPem } })));
    assert.deepEqual(both.map((r) => r.status).sort(), [201, 401, 401, 401]);
    for (const r of both.filter((x) => x.status !== 201)) assert.equal(r.code, 'TOKEN_REPLAYED');
  });

  test('fail/admin-revoked-on-a-is-refused-on-b-at-once', async (t: TestContext) => {
    // Issue 13, item 9: B learned of A's revocations only at its next poll (up to a second later),
    // and signed for the revoked admin meanwhile. Each round: a fresh admin works on B, A revokes it,
    // and B's very next calls (a burst, started as soon as the revocation returned) are refused.
    const ROUNDS = 3;
    const BURST = 4;
    const pool = (cas[0].store as PostgresStore).pool;
    for (let i = 0; i < ROUNDS; i++) {
      await t.test(`fail/round-${i}`, async () => {
        const name = `rotating-${i}-${n++}`;
        const { privateKey } = generateKeyPair('p256');
        const csr = toPem(buildCsr({ privateKey, commonName: name, names: { dns: [], ip: [], uri: [`spiffe://acme.internal/admin/${name}`] } }), 'CERTIFICATE REQUEST');
        const made = await send(`${A}/v1/sign`, { body: { profile: 'client', csr }, tls: admin });
        assert.equal(made.status, 201, made.body.toString());
        const second: SendTls = { ca: tc.init.rootPem, cert: made.json.certificate, key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
        const { csr: leafCsr } = clientCsr(`by-${name}`);
        // B accepts the new admin (so a refusal below is the revocation, not an unknown admin).
        const before = await send(`${B}/v1/sign`, { body: { profile: 'client', csr: leafCsr }, tls: second });
        assert.equal(before.status, 201, before.body.toString());
        const rv = await send(`${A}/v1/revoke`, { body: { serial: made.json.serial, reason: 'keyCompromise' }, tls: admin });
        assert.equal(rv.status, 200, rv.body.toString());
        const after = await Promise.all([
          ...Array.from({ length: BURST }, () => send(`${B}/v1/sign`, { body: { profile: 'client', csr: leafCsr }, tls: second })),
          send(`${B}/v1/tokens`, { body: { names: ['spiffe://acme.internal/prod/after-revocation'] }, tls: second }),
          send(`${B}/v1/certificates?limit=1`, { tls: second }),
        ]);
        assert.deepEqual(after.map((r) => r.code), after.map(() => 'CERT_REVOKED'), after.map((r) => `${r.status} ${r.code}`).join(', '));
        // Nothing was signed for it after the revocation: only the one certificate from before.
        const { rows } = await pool.query('SELECT count(*) AS n FROM certificates WHERE issued_by = $1', [`spiffe://acme.internal/admin/${name}`]);
        assert.equal(Number(rows[0].n), 1);
      });
    }
  });

  test('ok/renew-on-b-what-a-issued-and-revoked-on-a-refused-on-b', async () => {
    const { csr, key } = clientCsr('renewed');
    const made = await send(`${A}/v1/sign`, { body: { profile: 'client', csr }, tls: admin });
    assert.equal(made.status, 201);
    const r = await renew({ caUrl: B, certificate: made.json.certificate, key, root: tc.init.rootPem });
    const row = await send(`${A}/v1/certificates/${r.serial}`, { tls: admin });
    assert.equal(row.json.renewedFrom, made.json.serial);
    // Revoked on A: B refuses to renew it (from the shared store and its own revocation set).
    assert.equal((await send(`${A}/v1/revoke`, { body: { serial: r.serial }, tls: admin })).status, 200);
    const refused = await send(`${B}/v1/renew`, { body: {}, tls: { ca: tc.init.rootPem, cert: r.certificate, key } });
    assert.equal(refused.code, 'CERT_REVOKED');
  });
});
