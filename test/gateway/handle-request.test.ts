/**
 * The host a request is routed on (src/gateway/handle-request.ts requestHost). The request path
 * end to end (bounds, peer, route, authorize, forward) is gateway.test.ts, limits.test.ts and
 * route-confusion.test.ts, against real servers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMutualError } from '../../src/core/errors.ts';
import { requestHost } from '../../src/gateway/handle-request.ts';

const cases: { name: string; headers: Record<string, string>; h2: boolean; hostFields?: number; host?: string; code?: string }[] = [
  { name: 'ok/HTTP/1.1 Host, normalized (lower case, no trailing dot, the port kept)', headers: { host: 'API.Acme.Internal.:8443' }, h2: false, host: 'api.acme.internal:8443' },
  { name: 'ok/no Host', headers: {}, h2: false, hostFields: 0, host: undefined },
  { name: 'ok/HTTP/2 :authority', headers: { ':authority': 'api.acme.internal' }, h2: true, hostFields: 0, host: 'api.acme.internal' },
  { name: 'ok/HTTP/2 Host alone', headers: { host: 'api.acme.internal' }, h2: true, host: 'api.acme.internal' },
  { name: 'ok/HTTP/2 Host and :authority naming the same host', headers: { ':authority': 'api.acme.internal', host: 'API.acme.internal.' }, h2: true, host: 'api.acme.internal' },
  { name: 'ok/HTTP/1.1 ignores a pseudo-header field', headers: { host: 'a.internal', ':authority': 'b.internal' }, h2: false, host: 'a.internal' },
  { name: 'fail/HTTP/2 Host and :authority differ', headers: { ':authority': 'api.acme.internal', host: 'admin.acme.internal' }, h2: true, code: 'HOST_INVALID' },
  { name: 'fail/several Host fields', headers: { host: 'a.internal' }, h2: false, hostFields: 2, code: 'HOST_INVALID' },
  { name: 'fail/a malformed host', headers: { host: 'a b' }, h2: false, code: 'HOST_INVALID' },
];

for (const c of cases) {
  test(c.name, () => {
    const run = () => requestHost({ headers: c.headers }, c.h2, c.hostFields ?? 1);
    if (c.code) assert.throws(run, (e) => isMutualError(e) && e.code === c.code);
    else assert.equal(run(), c.host);
  });
}
