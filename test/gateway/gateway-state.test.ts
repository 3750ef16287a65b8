/**
 * What a gateway request reads (src/gateway/gateway-state.ts): decisions cached per state and
 * bounded, pools made once per origin and TLS setting, and a retired state's pools closing.
 * End to end (reload under load, mTLS upstreams) in reload.test.ts and rotation.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMutualError } from '../../src/core/errors.ts';
import { validateGatewayConfig } from '../../src/gateway/config.ts';
import { MAX_CACHED_DECISIONS, buildState, decide, poolFor, retire } from '../../src/gateway/gateway-state.ts';

const config = () => validateGatewayConfig({
  tls: { cert: 'c', key: 'k' }, trust: { ca: 'a', clientCas: 'b' },
  routes: [
    { name: 'api', pathPrefix: '/api/', upstream: 'http://127.0.0.1:1', allow: [{ identities: ['spiffe://acme.internal/prod/*'], methods: ['GET'] }] },
    { name: 'same-origin', pathPrefix: '/other/', upstream: 'http://127.0.0.1:1', allow: [{ identities: ['*'] }] },
    { name: 'elsewhere', pathPrefix: '/', upstream: 'http://127.0.0.1:2', allow: [{ identities: ['*'] }] },
  ],
});
const material = { upstreamIdentity: undefined, upstreamCa: '' };

const decisions: { name: string; method: string; identity: string | undefined; allowed: boolean }[] = [
  { name: 'ok/a matching identity and method', method: 'GET', identity: 'spiffe://acme.internal/prod/payments', allowed: true },
  { name: 'fail/a method the rule does not name', method: 'DELETE', identity: 'spiffe://acme.internal/prod/payments', allowed: false },
  { name: 'fail/another trust domain', method: 'GET', identity: 'spiffe://evil.internal/prod/payments', allowed: false },
  { name: 'fail/no SPIFFE ID', method: 'GET', identity: undefined, allowed: false },
];

for (const c of decisions) {
  test(`${c.name}: decided as authorize does, and the same answer from the cache`, () => {
    const s = buildState(config(), undefined);
    const route = s.router.match(undefined, '/api/x')!;
    assert.equal(route.name, 'api');
    const first = decide(s, route, c.method, c.identity);
    assert.equal(first.allowed, c.allowed);
    assert.equal(decide(s, route, c.method, c.identity), first, 'cached');
  });
}

test('ok/the decision cache starts over past MAX_CACHED_DECISIONS instead of growing', () => {
  const s = buildState(config(), undefined);
  const route = s.router.match(undefined, '/api/x')!;
  for (let i = 0; i < MAX_CACHED_DECISIONS + 5; i++) decide(s, route, 'GET', `spiffe://acme.internal/prod/s${i}`);
  const cached = s.decisions.get(route)!;
  assert.ok(cached.size <= MAX_CACHED_DECISIONS, `${cached.size} cached`);
  assert.equal(cached.size, 5);
});

test('ok/one pool per origin and TLS setting, shared by routes; a retired state\'s pools close', () => {
  const s = buildState(config(), undefined);
  const [api, same, other] = ['/api/x', '/other/x', '/x'].map((p) => s.router.match(undefined, p)!);
  const p1 = poolFor(s, api, material);
  assert.equal(poolFor(s, api, material), p1);
  assert.equal(poolFor(s, same, material), p1, 'same origin, same pool');
  assert.notEqual(poolFor(s, other, material), p1);
  assert.equal(s.pools.size, 2);
  const closed: string[] = [];
  for (const [key, pool] of s.pools) {
    const close = pool.close.bind(pool);
    pool.close = () => (closed.push(key), close());
  }
  retire(s);
  assert.equal(s.retired, true);
  assert.deepEqual(closed.sort(), [...s.pools.keys()].sort());
});

test('fail/an mTLS route without an upstream client certificate: CONFIG_INVALID when its pool is made', () => {
  // The config check refuses this first; the pool check stands if the certificate is ever missing.
  const c = validateGatewayConfig({
    tls: { cert: 'c', key: 'k' }, trust: { ca: 'a', clientCas: 'b' },
    routes: [{ name: 'm', upstream: 'https://127.0.0.1:1', mtls: false, allow: [{ identities: ['*'] }] }],
  });
  const s = buildState(c, undefined);
  const route = { ...s.router.match(undefined, '/x')!, mtls: true };
  assert.throws(() => poolFor(s, route, material), (e) => isMutualError(e) && e.code === 'CONFIG_INVALID');
});
