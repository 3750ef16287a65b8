/**
 * Certificate lifecycle over the API (issue 13 items 4, 5, 6):
 * - a revocation covers the renewals of the revoked certificate: end to end through `mutual serve`
 *   (the real process, SQLite and PostgreSQL), checked with `openssl ocsp` and an OpenSSL CRL check;
 * - a lineage holds at most two valid certificates, and renewals of one certificate are
 *   rate-limited (RENEWAL_TOO_SOON with Retry-After), with the server's clock injected;
 * - the certificate lifetime comes from the token (the enrollment request cannot choose it), down
 *   to 5 minutes, and such a certificate works end to end (OpenSSL, OCSP, renewal at 2/3).
 */
import { describe, test, before, after } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { MIN_CERT_LIFETIME_SECONDS, RENEWAL_WINDOW_SECONDS, RENEWALS_PER_WINDOW } from '../../src/ca/authority.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { adminCall, enroll, renew } from '../../src/sdk/ca-client.ts';
import { makeTestCa } from '../helpers/test-ca.ts';
import { requireTool } from '../helpers/tools.ts';
import {
  dropSchema, freshSchema, opensslAsync, pgSkip, pgUrl, send, spawnServe, startTestServer, waitFor, type Running, type SendTls, type TestServer,
} from '../helpers/server.ts';

const TD = 'acme.internal';
const ID = (svc: string) => `spiffe://${TD}/prod/${svc}`;

/** Writes a file in `dir` and returns its path. */
const put = (dir: string, name: string, data: string | Buffer) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, data);
  return p;
};

// ------------------------------------------------------------------------------------------------
// Item 4 end to end: `mutual serve` as a process.

/**
 * Holder B enrolls and renews with the same key (B'); the admin revokes B (keyCompromise). B' must
 * be revoked with it: the API says so, B' cannot renew, `openssl
 * ocsp` answers revoked (keyCompromise), and the client CA's CRL lists B' (OpenSSL's CRL check fails).
 */
async function revocationCoversRenewal(t: TestContext, db?: { url: string; schema: string }): Promise<void> {
  // On PostgreSQL the CA is made there (as `mutual init --database` does), so its admin is known to it.
  const tc = await makeTestCa(db ? { databaseUrl: db.url, databaseSchema: db.schema } : {});
  await tc.ca.close();
  let srv: Running | undefined;
  try {
    srv = await spawnServe(tc, db);
    const url = srv.url;
    const admin = { cert: tc.init.admin.certificatePem, key: tc.init.admin.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string, root: tc.init.rootPem };
    const made = (await adminCall({ caUrl: url, path: '/v1/tokens', body: { names: [ID('holder-b')] }, ...admin })) as { token: string };
    const b = await enroll({ caUrl: url, token: made.token, root: tc.init.rootPem });
    const key = b.key.export({ type: 'pkcs8', format: 'pem' }) as string;
    const b2 = await renew({ caUrl: url, certificate: b.certificate, key, root: tc.init.rootPem });
    assert.equal(b2.key, undefined, 'renewed with the same key');

    const r = (await adminCall({ caUrl: url, path: '/v1/revoke', body: { serial: b.serial, reason: 'keyCompromise' }, ...admin })) as { status: string; covered: string[] };
    assert.equal(r.status, 'revoked');
    assert.deepEqual(r.covered, [b2.serial], 'the revocation reports the renewal it covered');
    await assert.rejects(renew({ caUrl: url, certificate: b2.certificate, key, root: tc.init.rootPem }), (e) => isMutualError(e, 'CERT_REVOKED'));
    const row = (await adminCall({ caUrl: url, path: `/v1/certificates/${b2.serial}`, ...admin })) as { status: string; reason: string };
    assert.deepEqual([row.status, row.reason], ['revoked', 'keyCompromise']);

    if (!requireTool(t, 'openssl')) return;
    const dir = tc.dir;
    const certFile = put(dir, 'b2.pem', b2.certificate);
    const o = await opensslAsync(['ocsp', '-url', `${url}/ocsp`, '-issuer', tc.layout.clientCaCert, '-cert', certFile, '-CAfile', tc.layout.rootCert]);
    assert.match(o.stderr, /Response verify OK/, o.stderr);
    assert.match(o.stdout, /: revoked/, o.stdout);
    assert.match(o.stdout, /Reason: keyCompromise/, o.stdout);
    // The CRL the server publishes lists B' (rebuilt by its poller within a second or two).
    const crlFile = await waitFor('the client CRL to list the renewal', 5000, async () => {
      const got = await send(`${url}/crl/client.crl`, { tls: { ca: tc.init.rootPem } });
      const f = put(dir, 'client.crl', got.body);
      const text = await opensslAsync(['crl', '-inform', 'DER', '-in', f, '-noout', '-text']);
      return text.stdout.includes(`Serial Number: ${b2.serial.toUpperCase()}`) ? f : undefined;
    });
    const pem = put(dir, 'client.crl.pem', (await opensslAsync(['crl', '-inform', 'DER', '-in', crlFile])).stdout);
    const v = await opensslAsync(['verify', '-x509_strict', '-purpose', 'sslclient', '-crl_check', '-CRLfile', pem, '-CAfile', tc.layout.rootCert, '-untrusted', tc.layout.clientCaCert, certFile]);
    assert.notEqual(v.status, 0);
    assert.match(v.stdout + v.stderr, /certificate revoked/);
  } finally {
    if (srv) {
      srv.child.kill('SIGTERM');
      await srv.exited;
    }
    fs.rmSync(tc.dir, { recursive: true, force: true });
  }
}

describe('server/lifecycle: a revocation covers renewals (mutual serve)', () => {
  test('ok/sqlite', (t) => revocationCoversRenewal(t));
  test('ok/postgres', { skip: pgSkip() }, async (t) => {
    const schema = freshSchema();
    try {
      await revocationCoversRenewal(t, { url: pgUrl(), schema });
    } finally {
      await dropSchema(schema);
    }
  });
});

// ------------------------------------------------------------------------------------------------
// Items 5 and 6 in process, with the server's clock injected.

describe('server/lifecycle: lineage bound, rate limit, token lifetimes', () => {
  let s: TestServer;
  let clock = Date.now();
  const now = () => new Date(clock);
  let tls: SendTls;
  let dir: string;

  before(async () => {
    s = await startTestServer({ server: { now } });
    // From here: the intermediates were made a moment ago (their notBefore is then).
    clock = Date.now();
    tls = { ca: s.admin.root, cert: s.admin.cert, key: s.admin.key };
    dir = s.tc.dir;
  });
  after(() => s?.close());

  /** Mints a token over the API, with `extra` fields (certificateTtlSeconds). */
  const token = async (svc: string, extra: Record<string, unknown> = {}) => send(`${s.url}/v1/tokens`, { body: { names: [ID(svc)], ...extra }, tls });
  const enrolled = async (svc: string, extra: Record<string, unknown> = {}) => {
    const t = await token(svc, extra);
    assert.equal(t.status, 201, t.body.toString());
    const r = await enroll({ caUrl: s.url, token: t.json.token, root: s.admin.root });
    return { ...r, keyPem: r.key.export({ type: 'pkcs8', format: 'pem' }) as string };
  };
  const renewAs = (cert: string, key: string) => send(`${s.url}/v1/renew`, { body: {}, tls: { ca: s.admin.root, cert, key } });
  const statusOf = async (serial: string) => {
    const r = await send(`${s.url}/v1/certificates/${serial}`, { tls });
    return `${r.json.status}${r.json.reason ? `/${r.json.reason}` : ''}`;
  };

  test('ok/second-renewal-supersedes-the-first-successor;fail/too-soon', async () => {
    const a = await enrolled('lineage');
    const b1 = await renewAs(a.certificate, a.keyPem);
    assert.equal(b1.status, 201, b1.body.toString());
    // Again at once (a client that lost the answer): the first successor is superseded.
    const retries = [];
    for (let i = 1; i < RENEWALS_PER_WINDOW; i++) {
      const r = await renewAs(a.certificate, a.keyPem);
      assert.equal(r.status, 201, r.body.toString());
      retries.push(r);
    }
    assert.equal(await statusOf(b1.json.serial), 'revoked/superseded');
    // Past the limit: refused, told when to retry; nothing issued.
    const soon = await renewAs(a.certificate, a.keyPem);
    assert.equal(soon.status, 429);
    assert.equal(soon.code, 'RENEWAL_TOO_SOON');
    assert.equal(soon.headers['retry-after'], String(RENEWAL_WINDOW_SECONDS));
    clock += (RENEWAL_WINDOW_SECONDS - 10) * 1000;
    const still = await renewAs(a.certificate, a.keyPem);
    assert.equal(still.code, 'RENEWAL_TOO_SOON');
    assert.equal(still.headers['retry-after'], '10');
    clock += 10_000;
    const b2 = await renewAs(a.certificate, a.keyPem);
    assert.equal(b2.status, 201, b2.body.toString());
    for (const r of retries) assert.equal(await statusOf(r.json.serial), 'revoked/superseded');
    assert.equal(await statusOf(a.serial), 'valid');
    // The superseded successor cannot renew.
    const dead = await renewAs(b1.json.certificate, a.keyPem);
    assert.equal(dead.code, 'CERT_REVOKED');
    // The successor renews: its predecessor A is superseded; B2 and C remain. At most two valid.
    clock += 1000;
    const c = await renewAs(b2.json.certificate, a.keyPem);
    assert.equal(c.status, 201, c.body.toString());
    assert.equal(await statusOf(a.serial), 'revoked/superseded');
    const valid = await send(`${s.url}/v1/certificates?identity=${encodeURIComponent(ID('lineage'))}&status=valid`, { tls });
    assert.deepEqual(valid.json.items.map((i: { serial: string }) => i.serial).sort(), [b2.json.serial, c.json.serial].sort());
  });

  test('fail/holder-of-an-old-certificate-cannot-revoke-the-lineage', async () => {
    const a = await enrolled('old-holder', { certificateTtlSeconds: 3600 });
    clock += 2400 * 1000;
    const b = await renewAs(a.certificate, a.keyPem);
    assert.equal(b.status, 201, b.body.toString());
    const asHolder = (cert: string, serial: string) => send(`${s.url}/v1/revoke`, { body: { serial, reason: 'keyCompromise' }, tls: { ca: s.admin.root, cert, key: a.keyPem } });
    // Expired: the old certificate's holder is no longer a holder (and its revocation would cover B).
    clock += 1300 * 1000;
    const expired = await asHolder(a.certificate, a.serial);
    assert.equal(expired.status, 403, 'fail/expired');
    assert.equal(expired.code, 'AUTH_FORBIDDEN');
    assert.equal(await statusOf(b.json.serial), 'valid');
    // The current certificate's holder may revoke it.
    const own = await asHolder(b.json.certificate, b.json.serial);
    assert.equal(own.status, 200, `ok/valid-holder: ${own.body}`);
  });

  test('fail/enroll-with-days-is-refused-and-the-token-is-not-spent', async () => {
    const t = await token('no-days');
    const { privateKey } = await import('node:crypto').then((c) => c.generateKeyPairSync('ec', { namedCurve: 'P-256' }));
    const { buildCsr } = await import('../../src/core/csr.ts');
    const { toPem } = await import('../../src/core/pem.ts');
    const csr = toPem(buildCsr({ privateKey, commonName: 'no-days', names: { dns: [], ip: [], uri: [ID('no-days')] } }), 'CERTIFICATE REQUEST');
    const cases = [
      { name: 'fail/days', body: { csr, days: 397 } },
      { name: 'fail/days-small', body: { csr, days: 1 } },
      { name: 'fail/ttlSeconds', body: { csr, ttlSeconds: 300 } },
    ];
    for (const c of cases) {
      const r = await send(`${s.url}/v1/enroll`, { body: c.body, headers: { authorization: `Bearer ${t.json.token}` }, tls: { ca: s.admin.root } });
      assert.equal(r.status, 400, c.name);
      assert.equal(r.code, 'ENROLL_LIFETIME_FIXED', c.name);
    }
    const ok = await send(`${s.url}/v1/enroll`, { body: { csr }, headers: { authorization: `Bearer ${t.json.token}` }, tls: { ca: s.admin.root } });
    assert.equal(ok.status, 201, 'ok/the-token-still-works');
  });

  test('ok/token-sets-the-certificate-lifetime;fail/out-of-range', async () => {
    const cases = [
      { name: 'fail/under-5-minutes', ttl: MIN_CERT_LIFETIME_SECONDS - 1, code: 'POLICY_VALIDITY_TOO_SHORT' },
      { name: 'fail/over-the-profile-maximum', ttl: 398 * 86_400, code: 'POLICY_VALIDITY_TOO_LONG' },
      { name: 'fail/not-a-number', ttl: '8h', code: 'REQUEST_MALFORMED' },
      { name: 'fail/fraction', ttl: 300.5, code: 'REQUEST_MALFORMED' },
    ];
    for (const c of cases) {
      const r = await token('ttl-bad', { certificateTtlSeconds: c.ttl });
      assert.equal(r.code, c.code, c.name);
    }
    const eightHours = await enrolled('eight-hours', { certificateTtlSeconds: 8 * 3600 });
    const info = parseCertificate(readPemOrDer(eightHours.certificate, ['CERTIFICATE']));
    assert.equal(info.notAfter.getTime() - Math.floor(clock / 1000) * 1000, 8 * 3600 * 1000, 'ok/8h from the token');
    // Its renewal keeps the lifetime the admin chose (not the profile's 90 days).
    clock += 6 * 3600 * 1000;
    const r = await renewAs(eightHours.certificate, eightHours.keyPem);
    assert.equal(r.status, 201, r.body.toString());
    const next = parseCertificate(readPemOrDer(r.json.certificate, ['CERTIFICATE']));
    assert.equal(next.notAfter.getTime() - Math.floor(clock / 1000) * 1000, 8 * 3600 * 1000, 'ok/renewal keeps 8h');
    const plain = await enrolled('profile-default');
    const p = parseCertificate(readPemOrDer(plain.certificate, ['CERTIFICATE']));
    assert.equal(p.notAfter.getTime() - Math.floor(clock / 1000) * 1000, 90 * 86_400_000, 'ok/no claim: the profile default');
  });

  test('ok/5-minute-certificate-end-to-end', async (t) => {
    if (!requireTool(t, 'openssl')) return;
    // The server's clock is real time here: OpenSSL checks validity against its own clock.
    clock = Date.now();
    const c = await enrolled('five-minutes', { certificateTtlSeconds: MIN_CERT_LIFETIME_SECONDS });
    const info = parseCertificate(readPemOrDer(c.certificate, ['CERTIFICATE']));
    assert.equal(info.notAfter.getTime() - Math.floor(clock / 1000) * 1000, MIN_CERT_LIFETIME_SECONDS * 1000, '5 minutes');
    const certFile = put(dir, 'five.pem', c.certificate);
    const v = await opensslAsync(['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', s.files.root, '-untrusted', s.files.clientCa, certFile]);
    assert.equal(v.status, 0, v.stdout + v.stderr);
    const good = await opensslAsync(['ocsp', '-url', `${s.url}/ocsp`, '-issuer', s.files.clientCa, '-cert', certFile, '-CAfile', s.files.root]);
    assert.match(good.stdout, /: good/, good.stdout + good.stderr);
    // Renewed at 2/3 of its lifetime (200 s), for another 5 minutes.
    clock += (MIN_CERT_LIFETIME_SECONDS * 2 / 3) * 1000;
    const r = await renewAs(c.certificate, c.keyPem);
    assert.equal(r.status, 201, r.body.toString());
    const next = parseCertificate(readPemOrDer(r.json.certificate, ['CERTIFICATE']));
    assert.equal(next.notAfter.getTime() - Math.floor(clock / 1000) * 1000, MIN_CERT_LIFETIME_SECONDS * 1000, 'renewed for 5 minutes');
    // Revoked: the CRL and OCSP say so.
    const rev = await send(`${s.url}/v1/revoke`, { body: { serial: r.json.serial, reason: 'keyCompromise' }, tls });
    assert.equal(rev.status, 200, rev.body.toString());
    const nextFile = put(dir, 'five-next.pem', r.json.certificate);
    const o = await opensslAsync(['ocsp', '-url', `${s.url}/ocsp`, '-issuer', s.files.clientCa, '-cert', nextFile, '-CAfile', s.files.root]);
    assert.match(o.stdout, /: revoked/, o.stdout + o.stderr);
  });
});

