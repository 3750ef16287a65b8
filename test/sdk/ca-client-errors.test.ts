/**
 * The CA client's failures are coded: an answer over the size limit is CA_ANSWER_INVALID (the CA
 * was reached, its answer is unusable), an unreadable token TOKEN_INVALID.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import type net from 'node:net';
import { call, readTokenClaims, MAX_RESPONSE_BYTES } from '../../src/sdk/ca-client.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { makePki, names, type Pki } from './fixtures.ts';

let pki: Pki;
let server: https.Server;
let base: string;

before(async () => {
  pki = await makePki();
  const cred = await pki.issue('server', names({ dns: ['localhost'] }), 'ca-client-server');
  server = https.createServer({ cert: cred.fullchain, key: cred.key }, (req, res) => {
    if (req.url === '/big') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.alloc(MAX_RESPONSE_BYTES + 1024));
    } else res.end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `https://localhost:${(server.address() as net.AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  server.close();
  await pki.close();
});

test('fail/an answer larger than MAX_RESPONSE_BYTES is CA_ANSWER_INVALID', async () => {
  const e = await call(`${base}/big`, { tls: { ca: pki.root }, raw: true }).then(() => assert.fail('expected a rejection'), (x: unknown) => x);
  assert.ok(isMutualError(e, 'CA_ANSWER_INVALID'), String(e));
});

test('ok/a small answer is returned', async () => {
  assert.equal((await call(`${base}/ok`, { tls: { ca: pki.root }, raw: true })).status, 200);
});

test('fail/token claims without names are TOKEN_INVALID', () => {
  const token = `x.${Buffer.from(JSON.stringify({ sha: 'ab' })).toString('base64url')}.y`;
  assert.throws(() => readTokenClaims(token), (e: unknown) => isMutualError(e, 'TOKEN_INVALID'));
});
