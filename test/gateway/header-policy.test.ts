/**
 * The fields a backend gets (src/gateway/header-policy.ts): what callers may not say for themselves
 * is dropped, what the gateway vouches for is set anew. End to end, over HTTP/1.1 and HTTP/2, in
 * gateway.test.ts ("forwarding headers from callers are replaced or dropped").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeaderPolicy } from '../../src/gateway/header-policy.ts';
import type { PeerIdentity } from '../../src/sdk/verifier.ts';

const peer = { fingerprint: 'ab'.repeat(32), subject: 'CN=payments', spiffeId: 'spiffe://acme.internal/prod/payments', uris: [], dns: [], der: Buffer.from([1, 2, 3]) } as unknown as PeerIdentity;

const cases: { name: string; sent: [string, string][]; kept: string[]; dropped: string[] }[] = [
  { name: 'ok/ordinary fields pass as sent', sent: [['Accept', 'a/b'], ['X-Request-Id', '1'], ['Cookie', 'c=1']], kept: ['Accept', 'X-Request-Id', 'Cookie'], dropped: [] },
  { name: 'fail/identity fields are the gateway\'s alone', sent: [['X-Forwarded-Client-Cert', 'URI=x'], ['Client-Cert', ':AA:'], ['Client-Cert-Chain', ':AA:']], kept: [], dropped: ['x-forwarded-client-cert', 'client-cert', 'client-cert-chain'] },
  { name: 'fail/forwarding fields: Forwarded, X-Real-IP and kin, every x-forwarded-*', sent: [['Forwarded', 'for=1.2.3.4'], ['X-Real-IP', '1.2.3.4'], ['True-Client-IP', '1.2.3.4'], ['CF-Connecting-IP', '1.2.3.4'], ['X-Forwarded-Host', 'admin'], ['X-Forwarded-Port', '1'], ['X-Forwarded-Prefix', '/admin']], kept: [], dropped: ['forwarded', 'x-real-ip', 'true-client-ip', 'cf-connecting-ip', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix'] },
  { name: 'fail/overrides of the request the policy allowed', sent: [['X-HTTP-Method-Override', 'DELETE'], ['X-Method-Override', 'DELETE'], ['X-HTTP-Method', 'DELETE'], ['X-Original-URL', '/admin'], ['X-Rewrite-URL', '/admin']], kept: [], dropped: ['x-http-method-override', 'x-method-override', 'x-http-method', 'x-original-url', 'x-rewrite-url'] },
  { name: 'fail/hop-by-hop fields and those named by Connection', sent: [['Connection', 'keep-alive, X-Secret'], ['X-Secret', '1'], ['Keep-Alive', '5'], ['TE', 'trailers'], ['Upgrade', 'h2c'], ['Host', 'evil'], [':path', '/x']], kept: [], dropped: ['connection', 'x-secret', 'keep-alive', 'te', 'upgrade', ':path'] },
  { name: 'fail/configured strip names, exact and prefix-*, any case', sent: [['X-Client-Verified', 'SUCCESS'], ['X-Internal', '1'], ['X-Internal-Role', 'admin']], kept: [], dropped: ['x-client-verified', 'x-internal'] },
];

for (const c of cases) {
  test(c.name, () => {
    const policy = new HeaderPolicy({ strip: ['x-client-*', 'X-Internal'], xfcc: true, clientCert: false, by: 'spiffe://acme.internal/infra/gateway' });
    const rawHeaders = c.sent.flat();
    const connection = c.sent.find(([n]) => n.toLowerCase() === 'connection')?.[1];
    const out = policy.fields({ rawHeaders, headers: { connection } }, peer, '192.0.2.1', 'api.acme.internal', () => []);
    const names: string[] = out.filter((_, i) => i % 2 === 0);
    for (const k of c.kept) assert.ok(names.includes(k), `${k} kept`);
    // Dropped: the caller's value is nowhere (the gateway may set the field itself, as XFCC).
    for (const d of c.dropped) {
      const sent = c.sent.find(([n]) => n.toLowerCase() === d)![1];
      assert.ok(!out.some((x, i) => i % 2 === 0 && x.toLowerCase() === d && out[i + 1] === sent), `${d} dropped`);
    }
    const value = (n: string): string | undefined => {
      const i = out.findIndex((x, k) => k % 2 === 0 && x.toLowerCase() === n);
      return i < 0 ? undefined : out[i + 1];
    };
    assert.equal(names.filter((n) => n.toLowerCase() === 'host').length, 1, 'one host');
    assert.equal(value('host'), 'api.acme.internal', 'the normalized host');
    assert.equal(value('x-forwarded-for'), '192.0.2.1', 'the caller\'s address, set anew');
    assert.equal(value('x-forwarded-proto'), 'https');
    assert.match(String(value('x-forwarded-client-cert')), /^By=spiffe:\/\/acme\.internal\/infra\/gateway;Hash=(ab){32};Subject="CN=payments";URI=spiffe:\/\/acme\.internal\/prod\/payments$/);
    assert.equal(names.includes('X-Internal-Role'), c.sent.some(([n]) => n === 'X-Internal-Role'), 'an exact strip name is not a prefix');
  });
}
