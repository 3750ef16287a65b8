/**
 * `mutual serve` through its API, with real peers as clients: curl for the JSON API and the trust
 * bundles, `openssl ocsp` for the responder (good, revoked with reason and time, unknown, nonce,
 * GET form, unauthorized, malformed), `openssl verify -crl_check_all` with the downloaded CRLs, and
 * the project's own client (ca-client) for tokens, enrollment and renewal. One server on a free
 * port; the CA's configured URL is that server, so the URLs inside certificates point at it.
 */
import { test, before, after } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { enroll, renew, adminCall } from '../../src/sdk/ca-client.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { readPemOrDer, toPem } from '../../src/core/pem.ts';
import { requireTool } from '../helpers/tools.ts';
import { curlTo, opensslAsync, request, startTestServer, waitFor, type TestServer } from '../helpers/server.ts';

const ID = (svc: string) => `spiffe://acme.internal/prod/${svc}`;

let s: TestServer;
let n = 0;
/** A fresh file path in the test's temp folder. */
const tmp = (name: string) => path.join(s.tc.dir, `${n++}-${name}`);

before(async () => {
  s = await startTestServer();
});
after(async () => {
  await s?.close();
});

/** curl with the admin's certificate and the root pinned. */
const asAdmin = (): string[] => ['--cacert', s.files.root, '--cert', s.files.adminCert, '--key', s.files.adminKey];

/** A P-256 key and CSR made by `openssl req`, for the given subjectAltName extension value. */
async function opensslCsr(cn: string, san: string): Promise<{ csr: string; keyFile: string }> {
  const keyFile = tmp('key.pem');
  const csrFile = tmp('req.csr');
  const r = await opensslAsync(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${san}`, '-out', csrFile]);
  assert.equal(r.status, 0, r.stderr);
  return { csr: fs.readFileSync(csrFile, 'utf8'), keyFile };
}

/** POST /v1/sign with curl as the admin. */
async function curlSign(profile: 'server' | 'client', csr: string): Promise<{ status: number; json: any }> {
  const body = tmp('sign.json');
  fs.writeFileSync(body, JSON.stringify({ profile, csr }));
  const out = tmp('sign.out');
  const r = await curlTo([...asAdmin(), '-H', 'content-type: application/json', '--data-binary', `@${body}`, `${s.url}/v1/sign`], out);
  return { status: r.status, json: JSON.parse(r.body) };
}

/** A client certificate enrolled through a token made over the API; cert and key written to files. */
async function enrolled(svc: string): Promise<{ serial: string; cert: string; key: string; certFile: string; keyFile: string }> {
  const tok = (await adminCall({ caUrl: s.url, path: '/v1/tokens', body: { names: [ID(svc)], ttlSeconds: 300 }, ...s.admin })) as { token: string };
  const r = await enroll({ caUrl: s.url, token: tok.token });
  const key = r.key.export({ type: 'pkcs8', format: 'pem' }) as string;
  const certFile = tmp(`${svc}.pem`);
  const keyFile = tmp(`${svc}.key`);
  fs.writeFileSync(certFile, r.certificate);
  fs.writeFileSync(keyFile, key, { mode: 0o600 });
  return { serial: r.serial, cert: r.certificate, key, certFile, keyFile };
}

/** `openssl ocsp` against the server for one certificate (a nonce is sent unless `-no_nonce` is in `extra`). */
const ocspQuery = (certFile: string, extra: string[] = []) =>
  opensslAsync(['ocsp', '-url', `${s.url}/ocsp`, '-issuer', s.files.clientCa, '-cert', certFile, '-CAfile', s.files.root, ...extra]);

/** Downloads a CRL (DER) and converts it to PEM with OpenSSL (which proves it parses); returns the PEM path. */
async function downloadCrl(which: 'root' | 'client' | 'server'): Promise<string> {
  const der = tmp(`${which}.crl`);
  const r = await curlTo(['--cacert', s.files.root, `${s.url}/crl/${which}.crl`], der);
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/pkix-crl');
  const pem = `${der}.pem`;
  const c = await opensslAsync(['crl', '-inform', 'DER', '-in', der, '-out', pem]);
  assert.equal(c.status, 0, c.stderr);
  return pem;
}

/** `openssl crl -text` of a CRL file (PEM). */
const crlText = async (pem: string) => (await opensslAsync(['crl', '-in', pem, '-noout', '-text'])).stdout;

// ------------------------------------------------------------------------------------------------

test('ok/health-ready-metrics', async (t: TestContext) => {
  if (!requireTool(t, 'curl')) return;
  const health = await curlTo(['--cacert', s.files.root, `${s.url}/health`], tmp('health'));
  assert.equal(health.status, 200);
  assert.deepEqual(JSON.parse(health.body), { ok: true });
  const ready = await curlTo(['--cacert', s.files.root, `${s.url}/ready`], tmp('ready'));
  assert.equal(ready.status, 200);
  assert.equal(JSON.parse(ready.body).ready, true);
  const metrics = await curlTo(['--cacert', s.files.root, `${s.url}/metrics`], tmp('metrics'));
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers['content-type'], /^text\/plain/);
  for (const name of ['mutual_certificates_issued_total', 'mutual_certificates_revoked_total', 'mutual_renewals_total', 'mutual_errors_total', 'mutual_ocsp_responses_total', 'mutual_crl_age_seconds', 'mutual_http_request_duration_seconds']) {
    assert.match(metrics.body, new RegExp(`^# TYPE ${name} `, 'm'), name);
  }
  // The server's certificate comes from its own server CA and names the address curl used.
  const chain = await opensslAsync(['s_client', '-connect', `127.0.0.1:${s.srv.port}`, '-CAfile', s.files.root, '-verify_return_error', '-verify_ip', '127.0.0.1'], { input: '' });
  assert.match(chain.stdout, /Verify return code: 0 \(ok\)/);
  assert.match(chain.stdout, /i:O = Acme Test, CN = Acme Test Server CA/);
});

test('ok/trust-bundles-and-crls', async (t: TestContext) => {
  if (!requireTool(t, 'curl') || !requireTool(t, 'openssl')) return;
  const roots = await curlTo(['--cacert', s.files.root, `${s.url}/roots.pem`], tmp('roots.pem'));
  assert.equal(roots.status, 200);
  assert.equal(roots.body, s.tc.init.rootPem);
  const serverCa = await curlTo(['--cacert', s.files.root, `${s.url}/ca/server.pem`], tmp('server-ca.pem'));
  assert.equal(serverCa.body, s.tc.init.serverCaPem);
  const clientCa = await curlTo(['--cacert', s.files.root, `${s.url}/ca/client.pem`], tmp('client-ca.pem'));
  assert.equal(clientCa.body, s.tc.init.clientCaPem);

  // The AIA caIssuers form: DER, as application/pkix-cert (RFC 5280 4.2.2.1).
  const crtFile = tmp('client-ca.crt');
  const crt = await curlTo(['--cacert', s.files.root, `${s.url}/ca/client.crt`], crtFile);
  assert.equal(crt.status, 200);
  assert.equal(crt.headers['content-type'], 'application/pkix-cert');
  assert.ok(fs.readFileSync(crtFile).equals(readPemOrDer(s.tc.init.clientCaPem, ['CERTIFICATE'])));
  const x = await opensslAsync(['x509', '-inform', 'DER', '-in', crtFile, '-noout', '-subject']);
  assert.equal(x.status, 0, x.stderr);
  assert.match(x.stdout, /CN = Acme Test Client CA/);

  // CRLs in DER and PEM, each signed by its CA (OpenSSL checks the signature).
  for (const which of ['client', 'server'] as const) {
    const pem = await downloadCrl(which);
    const v = await opensslAsync(['crl', '-in', pem, '-noout', '-CAfile', which === 'client' ? s.files.clientCa : s.files.serverCa]);
    assert.match(v.stderr, /verify OK/, `${which} CRL`);
    const asPem = await curlTo(['--cacert', s.files.root, `${s.url}/crl/${which}.pem`], tmp(`${which}-crl.pem`));
    assert.equal(asPem.status, 200);
    assert.match(asPem.body, /^-----BEGIN X509 CRL-----\n/);
    assert.equal(asPem.body, fs.readFileSync(pem, 'utf8'));
  }
  const rootCrl = await downloadCrl('root');
  assert.match((await opensslAsync(['crl', '-in', rootCrl, '-noout', '-CAfile', s.files.root])).stderr, /verify OK/);
});

test('ok/sign-with-curl-and-openssl-csr', async (t: TestContext) => {
  if (!requireTool(t, 'curl') || !requireTool(t, 'openssl')) return;
  const cases = [
    { name: 'ok/server', profile: 'server' as const, cn: 'api.acme.internal', san: 'DNS:api.acme.internal,IP:127.0.0.1', purpose: 'sslserver', ca: s.files.serverCa, which: 'server' },
    { name: 'ok/client', profile: 'client' as const, cn: 'api', san: `URI:${ID('api')}`, purpose: 'sslclient', ca: s.files.clientCa, which: 'client' },
  ];
  for (const c of cases) {
    const { csr } = await opensslCsr(c.cn, c.san);
    const r = await curlSign(c.profile, csr);
    assert.equal(r.status, 201, `${c.name}: ${JSON.stringify(r.json)}`);
    assert.match(r.json.serial, /^[0-9a-f]+$/);
    assert.equal(r.json.fullchain, r.json.certificate + r.json.chain);
    const certFile = tmp('signed.pem');
    fs.writeFileSync(certFile, r.json.certificate);
    const v = await opensslAsync(['verify', '-x509_strict', '-purpose', c.purpose, '-CAfile', s.files.root, '-untrusted', c.ca, certFile]);
    assert.equal(v.status, 0, `${c.name}: ${v.stdout}${v.stderr}`);
    // The distribution points name this server (the CA's configured URL).
    const text = (await opensslAsync(['x509', '-in', certFile, '-noout', '-text'])).stdout;
    // They name the issuing key (`<ca>.<16 hex of its key id>`), so they stay right after a key rotation.
    const keyed = `${c.which}\\.[0-9a-f]{16}`;
    const crlUrl = new RegExp(`URI:(${s.url.replace(/[.]/g, '\\.')}/crl/${keyed}\\.crl)`).exec(text)?.[1];
    assert.ok(crlUrl, `${c.name}: CRL DP\n${text}`);
    assert.ok(text.includes(`OCSP - URI:${s.url}/ocsp`), `${c.name}: AIA OCSP`);
    const caUrl = new RegExp(`CA Issuers - URI:(${s.url.replace(/[.]/g, '\\.')}/ca/${keyed}\\.crt)`).exec(text)?.[1];
    assert.ok(caUrl, `${c.name}: AIA caIssuers\n${text}`);
    // ...and those URLs answer: the issuer's certificate, and its CRL, with which OpenSSL checks the certificate.
    const [aiaFile, dpFile, plainFile] = [tmp('aia.crt'), tmp('dp.crl'), tmp('plain.crl')];
    const aia = await curlTo(['--cacert', s.files.root, caUrl], aiaFile);
    assert.equal(aia.status, 200);
    assert.ok(fs.readFileSync(aiaFile).equals(new crypto.X509Certificate(fs.readFileSync(c.ca)).raw), 'the issuing intermediate');
    const dp = await curlTo(['--cacert', s.files.root, crlUrl], dpFile);
    assert.equal(dp.status, 200);
    const plain = await curlTo(['--cacert', s.files.root, `${s.url}/crl/${c.which}.crl`], plainFile);
    assert.equal(plain.status, 200);
    assert.ok(fs.readFileSync(dpFile).equals(fs.readFileSync(plainFile)), 'the keyed name serves the current CRL');
    const withCrl = await opensslAsync(['verify', '-x509_strict', '-purpose', c.purpose, '-crl_check', '-CRLfile', dpFile, '-CAfile', s.files.root, '-untrusted', c.ca, certFile]);
    assert.equal(withCrl.status, 0, `${c.name}: ${withCrl.stdout}${withCrl.stderr}`);
  }
});

test('ok/list-and-get-certificates', async (t: TestContext) => {
  if (!requireTool(t, 'curl') || !requireTool(t, 'openssl')) return;
  const { csr } = await opensslCsr('list', `URI:${ID('list')}`);
  const signed = await curlSign('client', csr);
  assert.equal(signed.status, 201);
  const serial: string = signed.json.serial;

  const all = await curlTo([...asAdmin(), `${s.url}/v1/certificates?limit=1000`], tmp('list.json'));
  assert.equal(all.status, 200);
  const items: any[] = JSON.parse(all.body).items;
  const row = items.find((i) => i.serial === serial);
  assert.ok(row, 'the new certificate is listed');
  assert.equal(row.identity, ID('list'));
  assert.equal(row.status, 'valid');
  assert.equal(row.role, 'client');

  const cases = [
    { name: 'ok/by-identity', q: `identity=${encodeURIComponent(ID('list'))}`, expect: (xs: any[]) => xs.length === 1 && xs[0].serial === serial },
    { name: 'ok/by-role-server', q: 'role=server', expect: (xs: any[]) => xs.length > 0 && xs.every((x) => x.role === 'server') },
    { name: 'ok/by-status-revoked', q: 'status=revoked', expect: (xs: any[]) => xs.every((x) => x.status === 'revoked') },
    { name: 'ok/limit', q: 'limit=1', expect: (xs: any[]) => xs.length === 1 },
  ];
  for (const c of cases) {
    const r = await curlTo([...asAdmin(), `${s.url}/v1/certificates?${c.q}`], tmp('q.json'));
    assert.equal(r.status, 200, c.name);
    assert.ok(c.expect(JSON.parse(r.body).items), c.name);
  }

  const one = await curlTo([...asAdmin(), `${s.url}/v1/certificates/${serial}`], tmp('one.json'));
  assert.equal(one.status, 200);
  const got = JSON.parse(one.body);
  assert.equal(got.serial, serial);
  assert.equal(got.certificate, signed.json.certificate);

  const missing = await curlTo([...asAdmin(), `${s.url}/v1/certificates/${'ab'.repeat(16)}`], tmp('missing.json'));
  assert.equal(missing.status, 404);
  assert.equal(JSON.parse(missing.body).code, 'CERT_NOT_FOUND');
  assert.match(missing.headers['content-type'], /^application\/problem\+json/);
});

test('ok/tokens-and-enroll', async (t: TestContext) => {
  if (!requireTool(t, 'curl') || !requireTool(t, 'openssl')) return;
  // A token made with curl, redeemed by the project's client (which pins the root named in the token).
  const body = tmp('token.json');
  fs.writeFileSync(body, JSON.stringify({ names: ['web.acme.internal', '127.0.0.1'], ttlSeconds: 120 }));
  const made = await curlTo([...asAdmin(), '-H', 'content-type: application/json', '--data-binary', `@${body}`, `${s.url}/v1/tokens`], tmp('token.out'));
  assert.equal(made.status, 201, made.body);
  const { token, expiresAt } = JSON.parse(made.body);
  assert.ok(Date.parse(expiresAt) > Date.now() + 100_000);
  const r = await enroll({ caUrl: s.url, token });
  assert.equal(r.root, s.tc.init.rootPem);
  const info = parseCertificate(readPemOrDer(r.certificate, ['CERTIFICATE']));
  assert.deepEqual(info.names.dns, ['web.acme.internal']);
  assert.deepEqual(info.names.ip, ['127.0.0.1']);
  // The key was made by the client and matches the certificate.
  assert.ok(crypto.createPublicKey(r.key).export({ type: 'spki', format: 'der' }).equals(info.spki));
  const certFile = tmp('web.pem');
  fs.writeFileSync(certFile, r.certificate);
  const v = await opensslAsync(['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', s.files.root, '-untrusted', s.files.serverCa, certFile]);
  assert.equal(v.status, 0, v.stdout + v.stderr);

  // An identity token gives a client certificate.
  const c = await enrolled('payments');
  const v2 = await opensslAsync(['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', s.files.root, '-untrusted', s.files.clientCa, c.certFile]);
  assert.equal(v2.status, 0, v2.stdout + v2.stderr);
  const row = (await adminCall({ caUrl: s.url, path: `/v1/certificates/${c.serial}`, ...s.admin })) as any;
  assert.equal(row.identity, ID('payments'));
  assert.match(row.issuedBy, /^token:/);
});

test('ok/renew-over-mtls', async () => {
  const cases = [
    { name: 'ok/same-key', newKey: false },
    { name: 'ok/new-key', newKey: true },
  ];
  for (const c of cases) {
    const cur = await enrolled(`renew-${c.newKey ? 'new' : 'same'}`);
    const r = await renew({ caUrl: s.url, certificate: cur.cert, key: cur.key, root: s.admin.root, newKey: c.newKey });
    assert.notEqual(r.serial, cur.serial, c.name);
    const before = parseCertificate(readPemOrDer(cur.cert, ['CERTIFICATE']));
    const after = parseCertificate(readPemOrDer(r.certificate, ['CERTIFICATE']));
    assert.deepEqual(after.names, before.names, c.name);
    assert.equal(after.spki.equals(before.spki), !c.newKey, `${c.name}: key`);
    if (c.newKey) assert.ok(crypto.createPublicKey(r.key!).export({ type: 'spki', format: 'der' }).equals(after.spki), c.name);
    else assert.equal(r.key, undefined, c.name);
    const row = (await adminCall({ caUrl: s.url, path: `/v1/certificates/${r.serial}`, ...s.admin })) as any;
    assert.equal(row.renewedFrom, cur.serial, c.name);
    assert.equal(row.identity, before.names.uri[0], c.name);
    assert.equal(row.issuedBy, `renew:${cur.serial}`, c.name);
    // The renewed certificate renews in turn (a chain of renewals).
    const again = await renew({ caUrl: s.url, certificate: r.certificate, key: r.key ?? cur.key, root: s.admin.root });
    const row2 = (await adminCall({ caUrl: s.url, path: `/v1/certificates/${again.serial}`, ...s.admin })) as any;
    assert.equal(row2.renewedFrom, r.serial, c.name);
  }
});

test('ok/revoke-then-ocsp-and-crl-say-revoked', async (t: TestContext) => {
  if (!requireTool(t, 'curl') || !requireTool(t, 'openssl')) return;
  const cases = [
    { name: 'ok/by-admin', svc: 'rev-admin', reason: 'keyCompromise', byHolder: false },
    { name: 'ok/by-holder', svc: 'rev-holder', reason: 'superseded', byHolder: true },
  ];
  for (const c of cases) {
    const leaf = await enrolled(c.svc);
    // Before: good over OCSP (with a nonce, and without one: that answer is cached), and the
    // chain passes a full CRL check.
    for (const extra of [[], ['-no_nonce'], ['-no_nonce']]) {
      const good = await ocspQuery(leaf.certFile, extra);
      assert.match(good.stdout, new RegExp(`${escape(leaf.certFile)}: good`), `${c.name}: ${good.stdout}${good.stderr}`);
    }
    const crlsBefore = [await downloadCrl('root'), await downloadCrl('client')];
    const ok = await opensslAsync(['verify', '-crl_check_all', '-CAfile', s.files.root, '-untrusted', s.files.clientCa, ...crlsBefore.flatMap((f) => ['-CRLfile', f]), leaf.certFile]);
    assert.equal(ok.status, 0, `${c.name}: ${ok.stdout}${ok.stderr}`);

    let res: Awaited<ReturnType<typeof request>>;
    if (c.byHolder) {
      // The holder proves possession over mTLS with the very certificate it revokes.
      res = await request(`${s.url}/v1/revoke`, { body: { serial: leaf.serial, reason: c.reason }, tls: { ca: s.admin.root, cert: leaf.cert, key: leaf.key } });
    } else {
      const body = tmp('revoke.json');
      fs.writeFileSync(body, JSON.stringify({ serial: leaf.serial, reason: c.reason }));
      const r = await curlTo([...asAdmin(), '-H', 'content-type: application/json', '--data-binary', `@${body}`, `${s.url}/v1/revoke`], tmp('revoke.out'));
      res = { status: r.status, body: Buffer.from(r.body), json: JSON.parse(r.body) };
    }
    assert.equal(res.status, 200, `${c.name}: ${res.body}`);
    assert.equal(res.json.status, 'revoked');
    assert.equal(res.json.reason, c.reason);
    const revokedAt = new Date(res.json.revokedAt);

    // OCSP: revoked, with reason and time, signed for a nonce and from the cache (whose `good`
    // answer was dropped).
    for (const extra of [[], ['-no_nonce']]) {
      const o = await ocspQuery(leaf.certFile, extra);
      const what = `${c.name} ${extra.join(' ')}`;
      assert.match(o.stderr, /Response verify OK/, what);
      assert.match(o.stdout, new RegExp(`${escape(leaf.certFile)}: revoked`), `${what}: ${o.stdout}`);
      assert.match(o.stdout, new RegExp(`Reason: ${c.reason}`), what);
      const when = /Revocation Time: (.+)/.exec(o.stdout);
      assert.ok(when, what);
      assert.equal(new Date(when[1]).getTime(), revokedAt.getTime(), what);
    }

    // CRL: the client CA's CRL lists the serial within seconds; a full check then fails with "revoked".
    const crl = await waitFor('the CRL to list the serial', 3000, async () => {
      const f = await downloadCrl('client');
      return (await crlText(f)).includes(`Serial Number: ${leaf.serial.toUpperCase()}`) ? f : undefined;
    });
    const v = await opensslAsync(['verify', '-crl_check_all', '-CAfile', s.files.root, '-untrusted', s.files.clientCa, '-CRLfile', await downloadCrl('root'), '-CRLfile', crl, leaf.certFile]);
    assert.notEqual(v.status, 0, c.name);
    assert.match(v.stdout + v.stderr, /error 23 at 0 depth lookup: certificate revoked/, c.name);

    // A second revocation is refused with its own code.
    const twice = await request(`${s.url}/v1/revoke`, { body: { serial: leaf.serial }, tls: { ca: s.admin.root, cert: s.admin.cert, key: s.admin.key } });
    assert.equal(twice.code, 'CERT_ALREADY_REVOKED', c.name);
  }
});

test('ok/ocsp-good-unknown-nonce-unauthorized', async (t: TestContext) => {
  if (!requireTool(t, 'openssl')) return;
  const leaf = await enrolled('ocsp-good');
  const cases = [
    {
      name: 'ok/good-with-nonce-echoed', args: ['-cert', leaf.certFile, '-resp_text'],
      check: (out: string, err: string) => {
        assert.match(out, new RegExp(`${escape(leaf.certFile)}: good`));
        // openssl sends a nonce by default; the answer echoes it (RFC 8954), so no warning.
        assert.match(out, /OCSP Nonce:/);
        assert.doesNotMatch(out + err, /WARNING: no nonce in response|nonce verify error/i);
        assert.match(err, /Response verify OK/);
      },
    },
    {
      name: 'ok/good-without-nonce', args: ['-cert', leaf.certFile, '-no_nonce'],
      check: (out: string, err: string) => {
        assert.match(out, /: good/);
        assert.match(err, /Response verify OK/);
      },
    },
    {
      // A serial this CA never issued.
      name: 'ok/unknown-serial', args: ['-serial', '0x4a0123456789abcdef0123456789abcd'],
      check: (out: string, err: string) => {
        assert.match(out, /0x4a0123456789abcdef0123456789abcd: unknown/);
        assert.match(err, /Response verify OK/);
      },
    },
  ];
  for (const c of cases) {
    const r = await opensslAsync(['ocsp', '-url', `${s.url}/ocsp`, '-issuer', s.files.clientCa, '-CAfile', s.files.root, ...c.args]);
    assert.equal(r.status, 0, `${c.name}: ${r.stdout}${r.stderr}`);
    c.check(r.stdout, r.stderr);
  }
  // An issuer the responder does not serve: the root (asking about the client CA certificate).
  const u = await opensslAsync(['ocsp', '-url', `${s.url}/ocsp`, '-issuer', s.files.root, '-cert', s.files.clientCa, '-CAfile', s.files.root]);
  assert.match(u.stdout, /Responder Error: unauthorized \(6\)/);
  // A certificate of the server CA is answered by the server CA's responder.
  const sv = await opensslAsync(['ocsp', '-url', `${s.url}/ocsp`, '-issuer', s.files.serverCa, '-serial', '0x4a00', '-CAfile', s.files.root]);
  assert.match(sv.stdout, /0x4a00: unknown/);
  assert.match(sv.stderr, /Response verify OK/);
});

test('ok/ocsp-get-form-and-cache-control', async (t: TestContext) => {
  if (!requireTool(t, 'curl') || !requireTool(t, 'openssl')) return;
  const leaf = await enrolled('ocsp-get');
  const reqFile = tmp('ocsp.req');
  const made = await opensslAsync(['ocsp', '-issuer', s.files.clientCa, '-cert', leaf.certFile, '-no_nonce', '-reqout', reqFile]);
  assert.equal(made.status, 0, made.stderr);
  const b64 = fs.readFileSync(reqFile).toString('base64');
  // RFC 6960 A.1: GET {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}.
  for (const c of [{ name: 'ok/get', args: [`${s.url}/ocsp/${encodeURIComponent(b64)}`] }, { name: 'ok/post', args: ['-H', 'content-type: application/ocsp-request', '--data-binary', `@${reqFile}`, `${s.url}/ocsp`] }]) {
    // Twice: the second answer comes from the cache and must be the same bytes.
    const answers: Buffer[] = [];
    for (let i = 0; i < 2; i++) {
      const respFile = tmp('ocsp.resp');
      const r = await curlTo(['--cacert', s.files.root, ...c.args], respFile);
      assert.equal(r.status, 200, c.name);
      assert.equal(r.headers['content-type'], 'application/ocsp-response', c.name);
      const maxAge = /max-age=(\d+)/.exec(r.headers['cache-control'] ?? '');
      assert.ok(maxAge, `${c.name}: cache-control ${r.headers['cache-control']}`);
      assert.ok(Number(maxAge[1]) > 0 && Number(maxAge[1]) <= 3600, c.name);
      const v = await opensslAsync(['ocsp', '-respin', respFile, '-issuer', s.files.clientCa, '-cert', leaf.certFile, '-CAfile', s.files.root, '-no_nonce']);
      assert.match(v.stdout, /: good/, `${c.name}: ${v.stdout}${v.stderr}`);
      assert.match(v.stderr, /Response verify OK/, c.name);
      // max-age runs to the answer's nextUpdate (RFC 5019 6.2), not beyond.
      const next = /Next Update: (.+)/.exec(v.stdout);
      assert.ok(next, c.name);
      const untilNext = (new Date(next[1]).getTime() - Date.now()) / 1000;
      assert.ok(Number(maxAge[1]) <= untilNext + 1 && Number(maxAge[1]) >= untilNext - 5, `${c.name}: max-age ${maxAge[1]}, nextUpdate in ${untilNext} s`);
      answers.push(fs.readFileSync(respFile));
    }
    assert.ok(answers[0].equals(answers[1]), `${c.name}: cached answer`);
  }
  // A nonce makes the answer one request's own: not to be cached.
  const nonceReq = tmp('nonce.req');
  await opensslAsync(['ocsp', '-issuer', s.files.clientCa, '-cert', leaf.certFile, '-reqout', nonceReq]);
  const r = await curlTo(['--cacert', s.files.root, '-H', 'content-type: application/ocsp-request', '--data-binary', `@${nonceReq}`, `${s.url}/ocsp`], tmp('nonce.resp'));
  assert.equal(r.status, 200);
  assert.doesNotMatch(r.headers['cache-control'] ?? '', /max-age=[1-9]/);
});

test('fail/ocsp-malformed-requests', async (t: TestContext) => {
  if (!requireTool(t, 'curl') || !requireTool(t, 'openssl')) return;
  const leaf = await enrolled('ocsp-malformed');
  const reqFile = tmp('ocsp.req');
  await opensslAsync(['ocsp', '-issuer', s.files.clientCa, '-cert', leaf.certFile, '-no_nonce', '-reqout', reqFile]);
  const good = fs.readFileSync(reqFile);
  const post = (name: string, bytes: Buffer) => ({ name, args: ['-H', 'content-type: application/ocsp-request', '--data-binary', `@${writeTmp(bytes)}`, `${s.url}/ocsp`] });
  const cases = [
    post('fail/garbage', Buffer.from('this is not DER')),
    post('fail/empty', Buffer.alloc(0)),
    post('fail/truncated', good.subarray(0, good.length - 3)),
    post('fail/trailing-bytes', Buffer.concat([good, Buffer.from([0, 0])])),
    post('fail/wrong-outer-tag', Buffer.concat([Buffer.from([0x31]), good.subarray(1)])),
    post('fail/oversized', Buffer.alloc(9 * 1024, 0x30)),
    { name: 'fail/get-not-base64', args: [`${s.url}/ocsp/%%%zz`] },
    { name: 'fail/get-base64-of-garbage', args: [`${s.url}/ocsp/${encodeURIComponent(Buffer.from('garbage!').toString('base64'))}`] },
  ];
  for (const c of cases) {
    const respFile = tmp('bad.resp');
    const r = await curlTo(['--cacert', s.files.root, ...c.args], respFile);
    assert.equal(r.status, 200, `${c.name}: OCSP errors are OCSPResponses (RFC 6960 2.3)`);
    const v = await opensslAsync(['ocsp', '-respin', respFile, '-resp_text']);
    assert.match(v.stdout, /Responder Error: malformedRequest \(1\)/i, `${c.name}: ${v.stdout}${v.stderr}`);
  }
  // The responder still answers properly, and so does the rest of the server.
  const after = await ocspQuery(leaf.certFile);
  assert.match(after.stdout, /: good/);
  const h = await curlTo(['--cacert', s.files.root, `${s.url}/health`], tmp('health'));
  assert.equal(h.status, 200);
});

test('ok/graceful-close-finishes-in-flight-requests', async () => {
  const other = await s.another();
  const u = `https://127.0.0.1:${other.port}`;
  const IN_FLIGHT = 6;
  let arrived = 0;
  const allArrived = new Promise<void>((resolve) => other.server.on('request', () => ++arrived === IN_FLIGHT && resolve()));
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const csr = toPem(buildCsr({ privateKey, commonName: 'drain', names: { dns: ['drain.acme.internal'], ip: [], uri: [] } }), 'CERTIFICATE REQUEST');
  const calls = Array.from({ length: IN_FLIGHT }, () => request(`${u}/v1/sign`, { body: { profile: 'server', csr }, tls: { ca: s.admin.root, cert: s.admin.cert, key: s.admin.key } }));
  await allArrived;
  const closing = other.close();
  const answers = await Promise.all(calls);
  await closing;
  assert.deepEqual(answers.map((a) => a.status), Array(IN_FLIGHT).fill(201));
  // Closed: no new connections.
  await assert.rejects(request(`${u}/health`, { tls: { ca: s.admin.root } }), (e: { code?: string }) => e.code === 'CA_UNAVAILABLE');
});

test('ok/metrics-count-what-happened', async () => {
  const text = (await request(`${s.url}/metrics`, { tls: { ca: s.admin.root }, raw: true })).body.toString('utf8');
  const value = (series: string): number => {
    const m = new RegExp(`^${series.replace(/[{}"]/g, (ch) => `\\${ch}`)} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };
  assert.ok(value('mutual_certificates_issued_total{role="client"}') >= 10);
  assert.ok(value('mutual_certificates_revoked_total') >= 2);
  assert.ok(value('mutual_renewals_total') >= 4);
  // openssl sends nonces; answers to those are signed per request and counted by their status.
  assert.ok(value('mutual_ocsp_responses_total{status="good"}') >= 4);
  assert.ok(value('mutual_ocsp_responses_total{status="revoked"}') >= 1);
  assert.ok(value('mutual_ocsp_responses_total{status="cached"}') >= 2);
  assert.ok(value('mutual_ocsp_responses_total{status="malformed"}') >= 8);
  assert.ok(value('mutual_ocsp_responses_total{status="unauthorized"}') >= 1);
  assert.ok(value('mutual_errors_total{code="CERT_ALREADY_REVOKED"}') >= 2);
  assert.match(text, /^mutual_crl_age_seconds\{ca="client"\} /m);
  assert.match(text, /^mutual_http_request_duration_seconds_count\{route="\/v1\/enroll"\} [1-9]/m);
});

// ------------------------------------------------------------------------------------------------

/** Escapes a string for a RegExp. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Writes bytes to a fresh temp file and returns its path. */
function writeTmp(bytes: Buffer): string {
  const f = tmp('bytes');
  fs.writeFileSync(f, bytes);
  return f;
}
