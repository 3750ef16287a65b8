/**
 * The verifier's CRL cache on its own (sdk/crl-cache.ts): which CA a CRL goes to, what is refused,
 * an older CRL number, the URLs it learns and fetches, and a failed fetch. CRLs are the test CA's
 * own; the fetcher is scripted (the HTTP path is test/sdk/verifier.test.ts's, against `mutual serve`).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { X509Certificate } from 'node:crypto';
import { makePki, names, id, type Pki } from './fixtures.ts';
import { CrlCache, crlStatus, throwIfRevokedByCrl, MAX_LEARNED_CRL_URLS } from '../../src/sdk/crl-cache.ts';
import type { FetchBytes } from '../../src/sdk/fetch-bytes.ts';
import { trustedCa, type TrustedCa } from '../../src/sdk/peer-path.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { isMutualError } from '../../src/core/errors.ts';

let pki: Pki;
let other: Pki;
let NOW: Date;

before(async () => {
  pki = await makePki();
  other = await makePki({ name: 'Other CA' });
  NOW = new Date(pki.tc.ca.client.info.notBefore.getTime() + 3_600_000);
});
after(async () => {
  await pki.close();
  await other.close();
});

const derOf = (pem: string): Buffer => new X509Certificate(pem).raw;

/** A cache over the test CA's client CA, with a fixed clock, counting its callbacks. */
function cacheOf(o: { crlUrls?: string[]; fetch?: FetchBytes; now?: Date } = {}) {
  const cas: TrustedCa[] = [trustedCa(parseCertificate(derOf(pki.clientCa)), [])];
  const calls = { change: 0, revocations: 0 };
  const cache = new CrlCache({
    crlUrls: o.crlUrls ?? [], refreshMs: 60_000, now: () => o.now ?? NOW, cas: () => cas,
    fetch: o.fetch ?? (async () => ({ status: 404, body: Buffer.alloc(0) })),
    onChange: () => calls.change++, onRevocations: () => calls.revocations++,
  });
  return { cache, cas, calls };
}

const codeOf = (f: () => unknown): string => {
  try {
    f();
    return 'ok';
  } catch (e) {
    return isMutualError(e) ? e.code : String(e);
  }
};

test('ok/a CRL goes to the CA that signed it, and the verifier hears of it once', async () => {
  const { cache, cas, calls } = cacheOf();
  const ca = cache.load(await pki.tc.ca.buildCrl('client', NOW), 'test');
  assert.equal(ca, cas[0]);
  assert.deepEqual(calls, { change: 1, revocations: 1 });
  const st = crlStatus(ca, NOW.getTime());
  assert.equal(st.fresh, true);
  assert.equal(st.source, 'test');
  assert.equal(st.entries, 0);
});

test('ok/a revoked serial in the loaded CRL is CERT_REVOKED, another serial passes', async () => {
  const revoked = await pki.issue('client', names({ uri: [id('prod/revoked-by-crl')] }), 'revoked-by-crl');
  const kept = await pki.issue('client', names({ uri: [id('prod/kept')] }), 'kept');
  await pki.tc.ca.revoke({ serial: revoked.serial, now: NOW });
  const { cache } = cacheOf();
  const ca = cache.load(await pki.tc.ca.buildCrl('client', NOW), 'test');
  assert.equal(codeOf(() => throwIfRevokedByCrl(ca.crl!, parseCertificate(derOf(revoked.cert)))), 'CERT_REVOKED');
  assert.equal(codeOf(() => throwIfRevokedByCrl(ca.crl!, parseCertificate(derOf(kept.cert)))), 'ok');
});

test('ok/an older CRL number than the one loaded is ignored', async () => {
  const older = await pki.tc.ca.buildCrl('client', NOW);
  const newer = await pki.tc.ca.buildCrl('client', NOW);
  const { cache, cas, calls } = cacheOf();
  cache.load(newer, 'newer');
  cache.load(older, 'older');
  assert.equal(cas[0].crlSource, 'newer');
  assert.deepEqual(calls, { change: 1, revocations: 1 });
});

test('fail/a CRL of a CA that is not configured -> CRL_BAD_SIGNATURE, nothing changes', async () => {
  const { cache, cas, calls } = cacheOf();
  assert.equal(codeOf(() => cache.load(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]), 'junk')), 'CRL_MALFORMED');
  const crl = await other.tc.ca.buildCrl('client', NOW);
  assert.equal(codeOf(() => cache.load(crl, 'other')), 'CRL_BAD_SIGNATURE');
  assert.equal(cas[0].crl, undefined);
  assert.deepEqual(calls, { change: 0, revocations: 0 });
});

test('fail/a CRL from well in the future -> CRL_MALFORMED', async () => {
  const crl = await pki.tc.ca.buildCrl('client', new Date(NOW.getTime() + 3_600_000));
  const { cache } = cacheOf();
  assert.equal(codeOf(() => cache.load(crl, 'future')), 'CRL_MALFORMED');
});

test('ok/without configured URLs the cache learns at most MAX_LEARNED_CRL_URLS and fetches them', async () => {
  const asked: string[] = [];
  const { cache } = cacheOf({ fetch: async (url) => (asked.push(url), { status: 404, body: Buffer.alloc(0) }) });
  const urls = Array.from({ length: MAX_LEARNED_CRL_URLS + 4 }, (_, i) => `http://127.0.0.1:1/${i}.crl`);
  cache.learn(urls, true);
  assert.deepEqual(asked, [], 'not started: nothing is fetched as it is learned');
  await cache.refresh();
  assert.deepEqual(asked.sort(), urls.slice(0, MAX_LEARNED_CRL_URLS).sort());
  cache.close();
});

test('ok/configured URLs are the only ones fetched; a learned one is ignored', async () => {
  const asked: string[] = [];
  const { cache } = cacheOf({ crlUrls: ['http://127.0.0.1:1/configured.crl'], fetch: async (url) => (asked.push(url), { status: 404, body: Buffer.alloc(0) }) });
  cache.learn(['http://127.0.0.1:1/learned.crl'], true);
  await cache.refresh();
  assert.deepEqual(asked, ['http://127.0.0.1:1/configured.crl']);
});

test('ok/a fetched CRL is loaded under its URL; a failed fetch is published and keeps the loaded CRL', async () => {
  let answer = { status: 200, body: await pki.tc.ca.buildCrl('client', NOW) };
  const url = 'http://127.0.0.1:1/client.crl';
  const { cache, cas } = cacheOf({ crlUrls: [url], fetch: async () => answer });
  await cache.start();
  assert.equal(cas[0].crlSource, url);
  const failures: unknown[] = [];
  const onFailed = (m: unknown) => failures.push(m);
  diagnostics.subscribe('mutual:verifier:crl-failed', onFailed);
  try {
    answer = { status: 503, body: Buffer.alloc(0) };
    await cache.refresh();
  } finally {
    diagnostics.unsubscribe('mutual:verifier:crl-failed', onFailed);
    cache.close();
  }
  assert.equal(failures.length, 1);
  assert.equal(crlStatus(cas[0], NOW.getTime()).fresh, true, 'the CRL loaded before stays in use');
});
