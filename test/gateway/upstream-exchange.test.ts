/**
 * The upstream client's request writer (src/gateway/upstream-exchange.ts): what may be forwarded
 * and the head written for it. End to end, against a scripted raw upstream, in upstream.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { isMutualError } from '../../src/core/errors.ts';
import { requestHead, validateRequest, type UpstreamRequest } from '../../src/gateway/upstream-exchange.ts';

const req = (over: Partial<UpstreamRequest>): UpstreamRequest => ({ method: 'GET', path: '/a?b=1', headers: [], body: null, maxBodyBytes: 1024, ...over });

const refused: { name: string; r: UpstreamRequest }[] = [
  { name: 'fail/a space in the target (a second request line)', r: req({ path: '/a HTTP/1.1\r\nGET /admin' }) },
  { name: 'fail/a control character in the target', r: req({ path: '/a\x7f' }) },
  { name: 'fail/a method that is not a token', r: req({ method: 'GET /x' }) },
  { name: 'fail/a field name that is not a token', r: req({ headers: ['x a', '1'] }) },
  { name: 'fail/CR LF in a field value (header injection)', r: req({ headers: ['x-a', '1\r\nx-admin: yes'] }) },
  { name: 'fail/NUL in a field value', r: req({ headers: ['x-a', '1\0'] }) },
];

for (const c of refused) {
  test(c.name, () => {
    const e = validateRequest(c.r);
    assert.ok(isMutualError(e));
    assert.equal(e.code, 'REQUEST_MALFORMED');
  });
}

test('ok/ordinary methods, targets and values (tabs included) are forwarded', () => {
  assert.equal(validateRequest(req({ method: 'PATCH', path: '/a/%20b?c=d&e', headers: ['x-a', 'b\tc', 'Accept', '*/*'] })), undefined);
});

const heads: { name: string; r: UpstreamRequest; head: string }[] = [
  { name: 'ok/no Host: the origin\'s is added', r: req({ headers: ['accept', '*/*'] }), head: 'GET /a?b=1 HTTP/1.1\r\naccept: */*\r\nhost: up:8080\r\n\r\n' },
  { name: 'ok/the request\'s Host is kept, in any case, and not doubled', r: req({ headers: ['HOST', 'api'] }), head: 'GET /a?b=1 HTTP/1.1\r\nHOST: api\r\n\r\n' },
  { name: 'ok/a known length is sent as Content-Length', r: req({ method: 'POST', body: Readable.from([]), contentLength: 3 }), head: 'POST /a?b=1 HTTP/1.1\r\nhost: up:8080\r\ncontent-length: 3\r\n\r\n' },
  { name: 'ok/no body and a length of 0: content-length: 0', r: req({ method: 'POST', contentLength: 0 }), head: 'POST /a?b=1 HTTP/1.1\r\nhost: up:8080\r\ncontent-length: 0\r\n\r\n' },
  { name: 'ok/a body of unknown length goes chunked', r: req({ method: 'PUT', body: Readable.from([]) }), head: 'PUT /a?b=1 HTTP/1.1\r\nhost: up:8080\r\ntransfer-encoding: chunked\r\n\r\n' },
];

for (const c of heads) {
  test(c.name, () => {
    assert.equal(requestHead(c.r, 'up:8080'), c.head);
  });
}
