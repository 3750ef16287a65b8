/**
 * The bounded fetcher (CRLs, OCSP, webhooks) against a raw `net` server: each way it gives up is
 * a MutualError FETCH_FAILED whose `reason` names the cause, and the monitor's CRL loader reports
 * the same failures under its own source code.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createFetchBytes } from '../../src/sdk/fetch-bytes.ts';
import { crlFromUrl } from '../../src/monitor/scan-crls.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';

let server: net.Server;
let base: string;
const sockets = new Set<net.Socket>();

before(async () => {
  server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.once('data', (d) => {
      const path = d.toString('latin1').split(' ')[1];
      // /silent never answers; /big sends more than the caller's limit; /gone answers 404.
      if (path === '/big') s.end(`HTTP/1.1 200 OK\r\ncontent-length: 4096\r\n\r\n${'x'.repeat(4096)}`);
      else if (path === '/gone') s.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
      else if (path === '/ok') s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
});

after(() => {
  for (const s of sockets) s.destroy();
  server.close();
});

const rejection = async (p: Promise<unknown>): Promise<{ code: ErrorCode; reason: unknown }> => {
  const e = await p.then(() => assert.fail('expected a rejection'), (x: unknown) => x);
  assert.ok(isMutualError(e), `a MutualError, not ${String(e)}`);
  return { code: e.code, reason: e.fields.reason };
};

const cases: [string, string, number, string][] = [
  ['fail/no answer within the deadline', '/silent', 1024, 'ETIMEDOUT'],
  ['fail/answer larger than the limit', '/big', 1024, 'EFBIG'],
];

for (const [name, path, maxBytes, reason] of cases) {
  test(`sdk ${name}`, async () => {
    assert.deepEqual(await rejection(createFetchBytes({ timeoutMs: 300 })(`${base}${path}`, { maxBytes })), { code: 'FETCH_FAILED', reason });
  });
  // The CRL loader's own limit is far above /big's 4 KiB, so only the deadline applies there.
  if (reason !== 'EFBIG') test(`monitor ${name}`, async () => {
    assert.deepEqual(await rejection(crlFromUrl(`${base}${path}`, { timeoutMs: 300 }).load()), { code: 'MONITOR_SOURCE_UNREADABLE', reason });
  });
}

test('sdk fail/unsupported URL scheme', async () => {
  assert.deepEqual(await rejection(createFetchBytes()('ftp://127.0.0.1/x.crl', { maxBytes: 1024 })), { code: 'FETCH_FAILED', reason: 'EPROTO' });
});

test('monitor fail/not a 2xx answer', async () => {
  assert.deepEqual(await rejection(crlFromUrl(`${base}/gone`, { timeoutMs: 5000 }).load()), { code: 'MONITOR_SOURCE_UNREADABLE', reason: 'EHTTP' });
});

test('ok/a small answer is returned', async () => {
  assert.equal((await crlFromUrl(`${base}/ok`, { timeoutMs: 5000 }).load()).toString(), 'ok');
});
