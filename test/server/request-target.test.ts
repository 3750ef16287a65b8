/**
 * Issue 13, item 8: the request target is checked before routing, on both listeners of
 * `mutual serve`. Before, `POST /x/../v1/enroll` enrolled over the plain-HTTP public listener (201)
 * and `/./metrics` answered 200 there: the "HTTPS only" rule tested the raw target while the router
 * matched the target as resolved by `new URL`. curl (`--path-as-is`, `--request-target`) sends the
 * hostile targets byte for byte, over HTTP/1.1 and with `--http2` (serve speaks HTTP/1.1 only:
 * ALPN falls back, and an h2c preface on the plain listener is dropped).
 */
import { test, before, after } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { toPem } from '../../src/core/pem.ts';
import { parseRequestTarget } from '../../src/server/request-target.ts';
import { requireTool } from '../helpers/tools.ts';
import { curl, send, startTestServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
let pub: string;
let n = 0;
const tmp = (name: string) => path.join(s.tc.dir, `${n++}-${name}`);

before(async () => {
  s = await startTestServer({ server: { publicPort: 0 } });
  pub = s.srv.publicUrl!;
});
after(async () => {
  await s?.close();
});

/** One curl call; status 0 when no HTTP answer came. */
async function curlCall(url: string, args: string[] = []): Promise<{ status: number; version: string; type: string; code?: string; exit: number }> {
  const r = await curl(['--path-as-is', '--cacert', s.files.root, '-o', '-', '-w', '\n%{http_code} %{http_version} %{content_type}', ...args, url]);
  const lines = r.stdout.split('\n');
  const [status, version, type] = lines.pop()!.split(' ');
  let code: string | undefined;
  try {
    code = JSON.parse(lines.join('\n')).code;
  } catch {
    code = undefined;
  }
  return { status: Number(status), version, type: type ?? '', code, exit: r.status };
}

/** A PEM CSR for a client identity (fresh P-256 key). */
function clientCsr(svc: string): string {
  const { privateKey } = generateKeyPair('p256');
  return toPem(buildCsr({ privateKey, commonName: svc, names: { dns: [], ip: [], uri: [`spiffe://acme.internal/prod/${svc}`] } }), 'CERTIFICATE REQUEST');
}

/** Certificates in the inventory. */
const inventoryCount = async () => (await s.tc.ca.list({ limit: 1_000_000 })).length;

test('ok/canonical-targets', () => {
  const cases = [
    { name: 'ok/root', raw: '/', path: '/', query: '' },
    { name: 'ok/api', raw: '/v1/enroll', path: '/v1/enroll', query: '' },
    { name: 'ok/query', raw: '/v1/certificates?status=valid&limit=5', path: '/v1/certificates', query: '?status=valid&limit=5' },
    { name: 'ok/query-escapes', raw: '/v1/certificates?identity=spiffe%3A%2F%2Facme.internal%2Fprod%2Fx', path: '/v1/certificates', query: '?identity=spiffe%3A%2F%2Facme.internal%2Fprod%2Fx' },
    { name: 'ok/keyed-crl', raw: '/crl/client.0123456789abcdef.crl', path: '/crl/client.0123456789abcdef.crl', query: '' },
    { name: 'ok/dots-inside-a-segment', raw: '/ca/server.prev-0123456789abcdef.pem', path: '/ca/server.prev-0123456789abcdef.pem', query: '' },
  ];
  for (const c of cases) assert.deepEqual(parseRequestTarget(c.raw), { path: c.path, query: c.query }, c.name);
  const refused = [
    '/x/../v1/enroll', '/./metrics', '/..', '/v1/.', '//v1/enroll', '/v1//enroll', '/health/', '/v1/%65nroll', '/%2e%2e/v1/enroll',
    '/v1\\enroll', 'http://x/v1/enroll', '*', '', '/v1/en roll', '/v1/enröll', '/health?a=<b>', '/health#x', `/${'a'.repeat(5000)}`,
  ];
  for (const raw of refused) {
    assert.throws(() => parseRequestTarget(raw), (e) => isMutualError(e) && e.code === 'PATH_NOT_CANONICAL', `fail/${raw.slice(0, 40)}`);
  }
});

test('fail/non-canonical-targets-on-both-listeners', async (t: TestContext) => {
  if (!requireTool(t, 'curl')) return;
  const admin = ['--cert', s.files.adminCert, '--key', s.files.adminKey];
  const json = (body: object) => {
    const f = tmp('body.json');
    fs.writeFileSync(f, JSON.stringify(body));
    return ['-H', 'content-type: application/json', '--data-binary', `@${f}`];
  };
  const tok = await send(`${s.url}/v1/tokens`, { body: { names: ['spiffe://acme.internal/prod/dotted'] }, tls: { ca: s.admin.root, cert: s.admin.cert, key: s.admin.key } });
  assert.equal(tok.status, 201);
  const enroll = [...json({ csr: clientCsr('dotted') }), '-H', `authorization: Bearer ${tok.json.token}`];
  const before = await inventoryCount();
  type Case = { name: string; target: string; args?: string[]; status: number; code?: string; type?: string; listeners?: ('https' | 'public')[] };
  const cases: Case[] = [
    { name: 'fail/dot-dot-enroll', target: '/x/../v1/enroll', args: enroll, status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/dot-dot-sign-as-admin', target: '/x/../v1/sign', args: [...admin, ...json({ profile: 'client', csr: clientCsr('dotted-sign') })], status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/dot-metrics', target: '/./metrics', status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/dot-dot-at-the-root', target: '/../metrics', status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/encoded-dot-dot', target: '/crl/%2e%2e/v1/certificates', args: admin, status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/percent-encoded-letter', target: '/v1/%65nroll', args: enroll, status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/percent-encoded-metrics', target: '/%6detrics', status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/double-slash-as-host', target: '//x/v1/certificates', args: admin, status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/double-slash-inside', target: '/v1//certificates', args: admin, status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/backslash', target: '/v1\\certificates', args: admin, status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/trailing-slash', target: '/metrics/', status: 400, code: 'PATH_NOT_CANONICAL' },
    { name: 'fail/absolute-form', target: '', args: ['--request-target', 'http://x/v1/certificates', ...admin], status: 400, code: 'PATH_NOT_CANONICAL' },
    // Routes are exact and case-sensitive: another case is another (unknown) path.
    { name: 'fail/mixed-case-enroll', target: '/V1/enroll', args: enroll, status: 404, code: 'NOT_FOUND' },
    { name: 'fail/mixed-case-metrics', target: '/Metrics', status: 404, code: 'NOT_FOUND' },
    // The API and metrics are HTTPS only, whatever the query string.
    { name: 'fail/metrics-with-query-on-public', target: '/metrics?x=1', status: 404, code: 'NOT_FOUND', listeners: ['public'] },
    { name: 'fail/api-on-public', target: '/v1/enroll', args: enroll, status: 404, code: 'NOT_FOUND', listeners: ['public'] },
    { name: 'ok/metrics-with-query-on-https', target: '/metrics?x=1', status: 200, listeners: ['https'] },
    // What follows /ocsp/ is an OCSP request for the responder alone: garbage there is an OCSP
    // malformedRequest answer (RFC 6960 2.3, HTTP 200), never the route the dots point at.
    { name: 'ok/ocsp-dot-dot-is-ocsp-data', target: '/ocsp/../metrics', status: 200, type: 'application/ocsp-response' },
    { name: 'ok/ocsp-dot-dot-api-is-ocsp-data', target: '/ocsp/../v1/enroll', args: enroll, status: 405 },
    // What relying parties fetch keeps working on both.
    { name: 'ok/health-with-query', target: '/health?probe=1', status: 200 },
    { name: 'ok/client-crl', target: '/crl/client.crl', status: 200 },
    { name: 'ok/keyed-client-crl', target: `/crl/${s.tc.ca.keyedName(s.tc.ca.client)}.crl`, status: 200 },
    { name: 'ok/client-ca', target: '/ca/client.pem', status: 200 },
    { name: 'ok/roots', target: '/roots.pem', status: 200 },
  ];
  for (const c of cases) {
    for (const listener of c.listeners ?? ['public', 'https']) {
      const base = listener === 'https' ? s.url : pub;
      // HTTPS also offers h2 over ALPN: serve answers over HTTP/1.1, with the same verdict.
      for (const http2 of listener === 'https' ? [false, true] : [false]) {
        const name = `${c.name}/${listener}${http2 ? '/h2-offered' : ''}`;
        await t.test(name, async () => {
          const r = await curlCall(`${base}${c.target}`, [...(http2 ? ['--http2'] : []), ...(c.args ?? [])]);
          assert.equal(r.status, c.status, `${name}: ${r.status} ${r.code}`);
          if (c.code) assert.equal(r.code, c.code, name);
          if (c.type) assert.equal(r.type, c.type, name);
          assert.equal(r.version, '1.1', name);
        });
      }
    }
  }
  // Nothing was issued, and the token was not spent: it still enrolls, on the right path, once.
  assert.equal(await inventoryCount(), before);
  const ok = await curlCall(`${s.url}/v1/enroll`, enroll);
  assert.equal(ok.status, 201);
});

test('ok/h2c-preface-on-the-public-listener-is-dropped', async (t: TestContext) => {
  if (!requireTool(t, 'curl')) return;
  const r = await curlCall(`${pub}/./metrics`, ['--http2-prior-knowledge']);
  assert.equal(r.status, 0, 'no HTTP answer to an HTTP/2 preface');
  assert.equal((await curlCall(`${pub}/health`)).status, 200);
});
