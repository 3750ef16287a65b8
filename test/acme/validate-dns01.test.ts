/**
 * dns-01 validation against a real DNS server (test/helpers/dns-server.ts, UDP) through node:dns's
 * resolver: each answer a zone might give, right or wrong, and a resolver that fails or says nothing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.ts';
import { validateDns01 } from '../../src/ca/acme/validate-dns01.ts';
import { dnsDigest, keyAuthorization } from '../../src/ca/acme/key-authorization.ts';
import type { ValidationOptions } from '../../src/ca/acme/validation-options.ts';
import { MAX_CNAME_CHAIN } from '../../src/ca/acme/validation-options.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';

let dns: DnsServer;
let o: ValidationOptions;
const ka = keyAuthorization('evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA', 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
const digest = dnsDigest(ka);

before(async () => {
  dns = await startDnsServer();
  o = { httpPort: 80, tlsAlpnPort: 443, dnsServers: [`${dns.address}:${dns.port}`], timeoutMs: 2_000 };
});
after(() => dns.close());

/** Asserts that `p` rejects with `code` and returns the error's detail. */
async function rejects(p: Promise<unknown>, code: ErrorCode): Promise<string> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  assert.ok(isMutualError(e, code), `expected ${code}, got ${String(e)}`);
  return String(e.fields.detail);
}

test('ok/key authorization and digest as RFC 8555 sections 8.1 and 8.4 define them', () => {
  assert.equal(keyAuthorization('tok', 'thumb'), 'tok.thumb');
  assert.equal(dnsDigest(ka), crypto.createHash('sha256').update(ka).digest('base64url'));
  assert.match(digest, /^[A-Za-z0-9_-]{43}$/);
});

test('ok/dns-01: the TXT record is the digest', async () => {
  dns.set('_acme-challenge.right.test', 'TXT', [digest]);
  await validateDns01({ type: 'dns', value: 'right.test' }, ka, o);
  assert.ok(dns.queries.some((q) => q.name === '_acme-challenge.right.test' && q.type === 'TXT'), 'asked the configured resolver');
});

test('ok/dns-01: one of several TXT records is the digest (other orders, other values)', async () => {
  dns.set('_acme-challenge.several.test', 'TXT', ['v=spf1 -all', crypto.randomBytes(32).toString('base64url'), digest, 'x'.repeat(300)]);
  await validateDns01({ type: 'dns', value: 'several.test' }, ka, o);
});

test('ok/dns-01: a wildcard is validated at the base name (RFC 8555 section 7.1.3)', async () => {
  dns.set('_acme-challenge.wild.test', 'TXT', [digest]);
  await validateDns01({ type: 'dns', value: '*.wild.test' }, ka, o);
});

test('ok/dns-01: a CNAME-delegated _acme-challenge is followed to its TXT record', async () => {
  dns.set('_acme-challenge.delegated.test', 'CNAME', ['hop.validation.test']);
  dns.set('hop.validation.test', 'CNAME', ['delegated.acme-zone.test']);
  dns.set('delegated.acme-zone.test', 'TXT', [digest]);
  await validateDns01({ type: 'dns', value: 'delegated.test' }, ka, o);
});

test('fail/dns-01: a wrong TXT record is ACME_INCORRECT_RESPONSE naming the record, resolver, expected and seen', async () => {
  dns.set('_acme-challenge.wrong.test', 'TXT', ['not-the-digest\u0001']);
  const detail = await rejects(validateDns01({ type: 'dns', value: 'wrong.test' }, ka, o), 'ACME_INCORRECT_RESPONSE');
  for (const part of ['TXT _acme-challenge.wrong.test', `${dns.address}:${dns.port}`, digest, 'not-the-digest\\u0001']) assert.ok(detail.includes(part), `${part} in ${detail}`);
});

test('fail/dns-01: a name without TXT records (NODATA) is ACME_INCORRECT_RESPONSE', async () => {
  dns.set('_acme-challenge.nodata.test', 'A', ['192.0.2.1']);
  const detail = await rejects(validateDns01({ type: 'dns', value: 'nodata.test' }, ka, o), 'ACME_INCORRECT_RESPONSE');
  assert.match(detail, /no TXT records/);
});

test('fail/dns-01: a CNAME loop is ACME_DNS naming the chain', async () => {
  dns.set('_acme-challenge.loop.test', 'CNAME', ['a.loop.test']);
  dns.set('a.loop.test', 'CNAME', ['b.loop.test']);
  dns.set('b.loop.test', 'CNAME', ['a.loop.test']);
  const detail = await rejects(validateDns01({ type: 'dns', value: 'loop.test' }, ka, o), 'ACME_DNS');
  assert.match(detail, /CNAME loop/);
  assert.ok(detail.includes('a.loop.test -> b.loop.test -> a.loop.test'), detail);
});

test('fail/dns-01: a CNAME chain longer than the limit is ACME_DNS', async () => {
  const hop = (i: number) => (i === 0 ? '_acme-challenge.long.test' : `h${i}.long.test`);
  for (let i = 0; i <= MAX_CNAME_CHAIN; i++) dns.set(hop(i), 'CNAME', [hop(i + 1)]);
  dns.set(hop(MAX_CNAME_CHAIN + 1), 'TXT', [digest]);
  const detail = await rejects(validateDns01({ type: 'dns', value: 'long.test' }, ka, o), 'ACME_DNS');
  assert.match(detail, new RegExp(`longer than ${MAX_CNAME_CHAIN}`));
});

test('fail/dns-01: NXDOMAIN is ACME_DNS naming the record and the resolver', async () => {
  const detail = await rejects(validateDns01({ type: 'dns', value: 'missing.test' }, ka, o), 'ACME_DNS');
  assert.match(detail, /NXDOMAIN/);
  assert.ok(detail.includes('TXT _acme-challenge.missing.test') && detail.includes(`${dns.address}:${dns.port}`), detail);
});

test('fail/dns-01: a CNAME to a name that does not exist is ACME_DNS naming the chain', async () => {
  dns.set('_acme-challenge.dangling.test', 'CNAME', ['gone.test']);
  const detail = await rejects(validateDns01({ type: 'dns', value: 'dangling.test' }, ka, o), 'ACME_DNS');
  assert.ok(detail.includes('_acme-challenge.dangling.test -> gone.test') && /NXDOMAIN/.test(detail), detail);
});

test('fail/dns-01: SERVFAIL is ACME_DNS', async () => {
  dns.set('_acme-challenge.servfail.test', 'TXT', [digest]);
  dns.setMode('servfail');
  try {
    const detail = await rejects(validateDns01({ type: 'dns', value: 'servfail.test' }, ka, o), 'ACME_DNS');
    assert.match(detail, /SERVFAIL/);
  } finally {
    dns.setMode('answer');
  }
});

test('fail/dns-01: a resolver that never answers is ACME_DNS within the deadline', async () => {
  dns.set('_acme-challenge.silent.test', 'TXT', [digest]);
  dns.setMode('silent');
  try {
    const t0 = performance.now();
    const detail = await rejects(validateDns01({ type: 'dns', value: 'silent.test' }, ka, { ...o, timeoutMs: 400 }), 'ACME_DNS');
    assert.ok(performance.now() - t0 < 2_000, 'gave up near the deadline');
    assert.ok(/no answer/.test(detail) && detail.includes(`${dns.address}:${dns.port}`), detail);
  } finally {
    dns.setMode('answer');
  }
});

test('fail/dns-01: an IP identifier is ACME_MALFORMED (RFC 8738 section 7)', async () => {
  await rejects(validateDns01({ type: 'ip', value: '192.0.2.1' }, ka, o), 'ACME_MALFORMED');
});
