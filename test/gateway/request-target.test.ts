/**
 * The normalized request target and host the gateway routes on and forwards (docs/gateway.md,
 * "Paths and hosts"): every form a backend could read as another path or host is either
 * normalized to the form it means or refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeHost, normalizeTarget, MAX_TARGET_BYTES } from '../../src/gateway/request-target.ts';
import { Router } from '../../src/gateway/router.ts';
import { validateGatewayConfig } from '../../src/gateway/config.ts';
import { isMutualError } from '../../src/core/errors.ts';

const targets: { name: string; in: string; path?: string; query?: string }[] = [
  { name: 'ok/plain path as it is', in: '/api/orders', path: '/api/orders' },
  { name: 'ok/query kept as sent', in: '/a?x=%2F..&y=/', path: '/a', query: '?x=%2F..&y=/' },
  { name: 'ok/encoded unreserved letters decoded (RFC 3986 2.3)', in: '/%61dmin/x', path: '/admin/x' },
  { name: 'ok/encoded upper-case letters decoded', in: '/%41DMIN/%7euser', path: '/ADMIN/~user' },
  { name: 'ok/encoded digits, "-", "_" decoded', in: '/v%31/a%2Db%5Fc', path: '/v1/a-b_c' },
  { name: 'ok/other escapes kept, hex in upper case', in: '/a%3ab%20c%c3%a9', path: '/a%3Ab%20c%C3%A9' },
  { name: 'ok/encoded ";" stays encoded', in: '/a%3Bb', path: '/a%3Bb' },
  { name: 'ok/dots inside names', in: '/a.b/..c/.../.x', path: '/a.b/..c/.../.x' },
  { name: 'ok/sub-delims, ":" and "@"', in: "/a:b@c!$&'()*+,=", path: "/a:b@c!$&'()*+,=" },
  { name: 'ok/root', in: '/', path: '/' },
  { name: 'fail/not absolute', in: 'admin/x' },
  { name: 'fail/absolute-form URL', in: 'http://admin.acme.internal/x' },
  { name: 'fail/asterisk-form', in: '*' },
  { name: 'fail/dot-dot segment', in: '/api/../admin' },
  { name: 'fail/dot-dot at the end', in: '/api/x/..' },
  { name: 'fail/dot segment', in: '/./admin' },
  { name: 'fail/dot at the end', in: '/api/.' },
  { name: 'fail/encoded dot-dot (decoded, then a dot segment)', in: '/api/%2e%2E/admin' },
  { name: 'fail/half-encoded dot-dot', in: '/api/.%2e/admin' },
  { name: 'fail/empty segment (nginx merges slashes)', in: '//admin/x' },
  { name: 'fail/encoded slash', in: '/x%2F..%2Fadmin' },
  { name: 'fail/encoded backslash', in: '/x%5cadmin' },
  { name: 'fail/backslash', in: '/x\\..\\admin' },
  { name: 'fail/encoded percent (double decoding)', in: '/%2561dmin' },
  { name: 'fail/encoded NUL', in: '/admin%00.json' },
  { name: 'fail/overlong UTF-8 dot (%c0%ae)', in: '/%c0%ae%c0%ae/admin' },
  { name: 'fail/encoded CR LF', in: '/a%0d%0aX-Injected:%201' },
  { name: 'fail/bad escape', in: '/a%zz' },
  { name: 'fail/truncated escape', in: '/a%4' },
  { name: 'fail/path parameter (Tomcat drops ";x" from segments)', in: '/admin;x/users' },
  { name: 'fail/raw space', in: '/a b' },
  { name: 'fail/raw non-ASCII', in: '/caf\u00e9' },
  { name: 'fail/fragment', in: '/a#b' },
  { name: 'fail/too long', in: '/' + 'a'.repeat(MAX_TARGET_BYTES) },
];
for (const c of targets) {
  test(`target ${c.name}`, () => {
    if (c.path === undefined) {
      assert.throws(() => normalizeTarget(c.in), (e) => isMutualError(e) && e.code === 'PATH_AMBIGUOUS');
      return;
    }
    const t = normalizeTarget(c.in);
    assert.equal(t.path, c.path);
    assert.equal(t.query, c.query ?? '');
  });
}

const hosts: { name: string; in: string; out?: string }[] = [
  { name: 'ok/lower case', in: 'Admin.ACME.internal', out: 'admin.acme.internal' },
  { name: 'ok/trailing dot of an absolute name dropped', in: 'admin.acme.internal.', out: 'admin.acme.internal' },
  { name: 'ok/trailing dot before the port', in: 'admin.acme.internal.:8443', out: 'admin.acme.internal:8443' },
  { name: 'ok/port kept', in: 'localhost:8443', out: 'localhost:8443' },
  { name: 'ok/IPv4', in: '127.0.0.1:8443', out: '127.0.0.1:8443' },
  { name: 'ok/IPv6 literal', in: '[::1]:8443', out: '[::1]:8443' },
  { name: 'ok/underscore in a label', in: 'my_svc.internal', out: 'my_svc.internal' },
  { name: 'fail/two trailing dots', in: 'admin.acme.internal..' },
  { name: 'fail/empty label', in: 'admin..acme.internal' },
  { name: 'fail/leading dot', in: '.acme.internal' },
  { name: 'fail/empty', in: '' },
  { name: 'fail/userinfo', in: 'user@admin.acme.internal' },
  { name: 'fail/percent-encoded', in: '%61dmin.acme.internal' },
  { name: 'fail/two hosts', in: 'a.internal, admin.acme.internal' },
  { name: 'fail/non-ASCII (A-labels only)', in: 'b\u00fccher.internal' },
  { name: 'fail/port out of range', in: 'localhost:70000' },
  { name: 'fail/empty port', in: 'localhost:' },
  { name: 'fail/path in the host', in: 'admin.acme.internal/x' },
];
for (const c of hosts) {
  test(`host ${c.name}`, () => {
    if (c.out === undefined) assert.throws(() => normalizeHost(c.in), (e) => isMutualError(e) && e.code === 'HOST_INVALID');
    else assert.equal(normalizeHost(c.in), c.out);
  });
}

const route = (o: Record<string, unknown>) => ({ upstream: 'http://127.0.0.1:1', pathPrefix: '/', mtls: false, stripPrefix: false, caseInsensitive: false, allow: [], ...o }) as never;

test('ok/caseInsensitive routes match the prefix in any case, on segment boundaries; others do not', () => {
  const r = new Router([route({ name: 'admin', pathPrefix: '/Admin', caseInsensitive: true }), route({ name: 'api', pathPrefix: '/api' }), route({ name: 'all', pathPrefix: '/' })]);
  const name = (p: string) => r.match('gw.acme.internal', p)?.name;
  assert.equal(name('/admin/x'), 'admin');
  assert.equal(name('/ADMIN/x'), 'admin');
  assert.equal(name('/aDmIn'), 'admin');
  assert.equal(name('/adminx'), 'all');
  assert.equal(name('/API/x'), 'all', 'a case-sensitive route stays case-sensitive');
  assert.equal(name('/api/x'), 'api');
});

test('ok/route hosts match normalized request hosts, any port', () => {
  const r = new Router([route({ name: 'admin', host: 'Admin.Acme.Internal.' }), route({ name: 'wild', host: '*.acme.internal' }), route({ name: 'all' })]);
  assert.equal(r.match(normalizeHost('ADMIN.acme.internal.:8443'), '/x')?.name, 'admin');
  assert.equal(r.match(normalizeHost('x.acme.internal.'), '/x')?.name, 'wild');
  assert.equal(r.match(normalizeHost('example.org'), '/x')?.name, 'all');
});

test('fail/config: a pathPrefix or host requests can never carry is CONFIG_INVALID', () => {
  const base = { tls: { cert: 'c', key: 'k' }, trust: { ca: 'a', clientCas: 'b' } };
  for (const bad of [{ pathPrefix: '/a/../admin' }, { pathPrefix: '/a;b' }, { pathPrefix: '/a%2fb' }, { pathPrefix: '/a?x' }, { host: 'a..b' }, { host: 'a.b:8443' }, { host: '[::1]:8443' }]) {
    assert.throws(() => validateGatewayConfig({ ...base, routes: [{ upstream: 'http://127.0.0.1:1', ...bad }] }), (e) => isMutualError(e) && e.code === 'CONFIG_INVALID', JSON.stringify(bad));
  }
  for (const host of ['[::1]', '*.Acme.Internal.', '10.0.0.1']) assert.equal(validateGatewayConfig({ ...base, routes: [{ upstream: 'http://127.0.0.1:1', host }] }).routes.length, 1, host);
  const ok = validateGatewayConfig({ ...base, routes: [{ upstream: 'http://127.0.0.1:1', pathPrefix: '/%61dmin/', host: 'Admin.acme.internal.', caseInsensitive: true }] });
  const r = new Router(ok.routes);
  assert.equal(r.routes[0].pathPrefix, '/admin');
  assert.equal(r.routes[0].host, 'admin.acme.internal');
  assert.equal(r.routes[0].caseInsensitive, true);
});
