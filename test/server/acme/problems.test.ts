/**
 * ACME problem documents: the code -> type table (ACME codes and the issuance pipeline's), the
 * status each code is registered with, subproblems, nothing of a 5xx's cause in its body, and the
 * headers (Retry-After, Location, Link, the Replay-Nonce set before) on a real node:http answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ERRORS, MutualError, type ErrorCode } from '../../../src/core/errors.ts';
import { acmeErrorType, acmeProblem, acmeTypeOfCode, sendAcmeProblem } from '../../../src/server/acme/problems.ts';

test('ok/code to ACME type', (t) => {
  const cases: [ErrorCode, string][] = [
    ['ACME_MALFORMED', 'malformed'],
    ['ACME_UNSUPPORTED_MEDIA_TYPE', 'malformed'],
    ['ACME_BAD_NONCE', 'badNonce'],
    ['ACME_BAD_SIGNATURE_ALGORITHM', 'badSignatureAlgorithm'],
    ['ACME_BAD_SIGNATURE', 'malformed'],
    ['ACME_BAD_PUBLIC_KEY', 'badPublicKey'],
    ['ACME_ACCOUNT_DOES_NOT_EXIST', 'accountDoesNotExist'],
    ['ACME_ACCOUNT_DEACTIVATED', 'unauthorized'],
    ['ACME_UNAUTHORIZED', 'unauthorized'],
    ['ACME_NOT_FOUND', 'malformed'],
    ['ACME_TERMS_NOT_AGREED', 'userActionRequired'],
    ['ACME_EXTERNAL_ACCOUNT_REQUIRED', 'externalAccountRequired'],
    ['ACME_EAB_INVALID', 'unauthorized'],
    ['ACME_KEY_IN_USE', 'malformed'],
    ['ACME_REJECTED_IDENTIFIER', 'rejectedIdentifier'],
    ['ACME_UNSUPPORTED_IDENTIFIER', 'unsupportedIdentifier'],
    ['ACME_RATE_LIMITED', 'rateLimited'],
    ['ACME_ORDER_NOT_READY', 'orderNotReady'],
    ['ACME_BAD_CSR', 'badCSR'],
    ['ACME_BAD_REVOCATION_REASON', 'badRevocationReason'],
    ['ACME_CONNECTION', 'connection'],
    ['ACME_DNS', 'dns'],
    ['ACME_INCORRECT_RESPONSE', 'incorrectResponse'],
    ['ACME_TLS', 'tls'],
    ['ACME_COMPOUND', 'compound'],
    ['ACME_DISABLED', 'malformed'],
    ['POLICY_NAME_NOT_ALLOWED', 'rejectedIdentifier'],
    ['CSR_MALFORMED', 'badCSR'],
    ['CSR_BAD_SIGNATURE', 'badCSR'],
    ['CSR_FORBIDDEN_EXTENSION', 'badCSR'],
    ['CSR_UNSUPPORTED_ALGORITHM', 'badCSR'],
    ['KEY_WEAK', 'badCSR'],
    ['CERT_ALREADY_REVOKED', 'alreadyRevoked'],
    ['INPUT_TOO_LARGE', 'malformed'],
    ['METHOD_NOT_ALLOWED', 'malformed'],
    ['RATE_LIMITED', 'rateLimited'],
    ['STORE_FAILED', 'serverInternal'],
    ['LINT_FAILED', 'serverInternal'],
    ['STORE_UNAVAILABLE', 'serverInternal'],
  ];
  for (const [code, type] of cases) {
    t.test(`ok/${code}`, () => {
      assert.equal(acmeErrorType(new MutualError(code)), type);
      assert.equal(acmeTypeOfCode(code), type);
      const p = acmeProblem(new MutualError(code), 'r1');
      assert.equal(p.type, `urn:ietf:params:acme:error:${type}`);
      assert.equal(p.status, ERRORS[code].status);
    });
  }
});

/** ACME codes of mutual as a client (the agent): the server never answers with them. */
const CLIENT_SIDE = new Set(['ACME_CLIENT_FAILED']);

test('ok/every ACME_* code the server answers with has a 4xx status and a type other than serverInternal', () => {
  for (const code of Object.keys(ERRORS).filter((c) => c.startsWith('ACME_') && !CLIENT_SIDE.has(c)) as ErrorCode[]) {
    assert.ok(ERRORS[code].status < 500, code);
    assert.notEqual(acmeErrorType(new MutualError(code)), 'serverInternal', code);
  }
});

test('ok/subproblems keep each identifier with its own type', () => {
  const e = new MutualError('ACME_COMPOUND', {
    subproblems: [
      { code: 'ACME_REJECTED_IDENTIFIER', detail: 'outside the permitted names', identifier: { type: 'dns', value: 'evil.test' } },
      { code: 'ACME_UNSUPPORTED_IDENTIFIER', detail: 'wildcards are off', identifier: { type: 'dns', value: '*.a.test' } },
    ],
  });
  const p = acmeProblem(e, 'r1');
  assert.equal(p.type, 'urn:ietf:params:acme:error:compound');
  assert.equal(p.status, 403);
  assert.deepEqual(p.subproblems, [
    { type: 'urn:ietf:params:acme:error:rejectedIdentifier', detail: 'outside the permitted names', identifier: { type: 'dns', value: 'evil.test' } },
    { type: 'urn:ietf:params:acme:error:unsupportedIdentifier', detail: 'wildcards are off', identifier: { type: 'dns', value: '*.a.test' } },
  ]);
});

test('fail/a server failure says nothing of its cause', (t) => {
  const secret = 'password=hunter2 at /var/lib/mutual/ca.db';
  for (const e of [new Error(secret), new MutualError('STORE_FAILED', { detail: secret }), new TypeError(secret)]) {
    t.test(`fail/${e.constructor.name}`, () => {
      const p = acmeProblem(e, 'req-9');
      assert.equal(p.type, 'urn:ietf:params:acme:error:serverInternal');
      assert.ok(p.status >= 500);
      assert.ok(!JSON.stringify(p).includes('hunter2'));
      assert.match(p.detail, /req-9/);
    });
  }
});

test('ok/answers on a real server: status, type, headers set before kept, Retry-After, Location, Link', async (t) => {
  let next: unknown;
  const server = http.createServer((req, res) => {
    res.setHeader('replay-nonce', 'fresh-nonce');
    res.setHeader('link', '<https://ca.test/acme/directory>;rel="index"');
    sendAcmeProblem(res, next, 'req-1', { accountUrl: (id) => `https://ca.test/acme/acct/${id}`, termsOfService: 'https://ca.test/tos' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const get = (): Promise<{ status: number; headers: http.IncomingHttpHeaders; json: any }> => new Promise((resolve, reject) => {
    http.get({ port, host: '127.0.0.1', path: '/' }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, json: JSON.parse(Buffer.concat(parts).toString()) }));
    }).on('error', reject);
  });
  await t.test('ok/rate-limited-with-retry-after', async () => {
    next = new MutualError('ACME_RATE_LIMITED', { retryAfter: 3600 });
    const r = await get();
    assert.equal(r.status, 429);
    assert.equal(r.headers['content-type'], 'application/problem+json');
    assert.equal(r.headers['retry-after'], '3600');
    assert.equal(r.headers['replay-nonce'], 'fresh-nonce');
    assert.equal(r.json.type, 'urn:ietf:params:acme:error:rateLimited');
    assert.equal(r.json.status, 429);
  });
  await t.test('ok/key-in-use-names-the-account', async () => {
    next = new MutualError('ACME_KEY_IN_USE', { accountId: 'acc7' });
    const r = await get();
    assert.equal(r.status, 409);
    assert.equal(r.headers.location, 'https://ca.test/acme/acct/acc7');
  });
  await t.test('ok/terms-link-added-to-index', async () => {
    next = new MutualError('ACME_TERMS_NOT_AGREED');
    const r = await get();
    assert.equal(r.json.type, 'urn:ietf:params:acme:error:userActionRequired');
    assert.match(String(r.headers.link), /rel="index".*<https:\/\/ca\.test\/tos>;rel="terms-of-service"/);
  });
  await t.test('ok/bad-nonce-carries-the-fresh-nonce', async () => {
    next = new MutualError('ACME_BAD_NONCE');
    const r = await get();
    assert.equal(r.status, 400);
    assert.equal(r.json.type, 'urn:ietf:params:acme:error:badNonce');
    assert.equal(r.headers['replay-nonce'], 'fresh-nonce');
  });
  await t.test('fail/unknown-error-is-500-serverInternal', async () => {
    next = new Error('boom at /secret/path');
    const r = await get();
    assert.equal(r.status, 500);
    assert.equal(r.json.type, 'urn:ietf:params:acme:error:serverInternal');
    assert.ok(!JSON.stringify(r.json).includes('/secret/path'));
  });
});
