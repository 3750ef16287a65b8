/**
 * Bounded fuzzing of the request-target and host normalizers (untrusted input read on every
 * request), from the corpus in test/fuzz-corpus/gateway. A seeded generator keeps runs repeatable; a
 * time budget keeps the test bounded on a loaded machine. For every input the normalizer either
 * refuses it with its code or returns a form that is stable and that a loose backend (one that
 * decodes every escape, as nginx and Fastify do, and matches in any case, as Express does) reads
 * as the same segments, so it routes the same way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import tls from 'node:tls';
import { normalizeHost, normalizeTarget } from '../../src/gateway/request-target.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { startHarness, type Echo } from './harness.ts';
import { prng } from '../helpers/prng.ts';

/** Inputs tried per normalizer at most, and the time allowed for them. */
const ITERATIONS = 40_000;
const BUDGET_MS = 3000;

const corpus = (name: string): string[] => fs.readFileSync(new URL(`../fuzz-corpus/gateway/${name}`, import.meta.url), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as string);


const TOKENS = ['/', '.', '..', '%', '%2e', '%2E', '%2f', '%5c', '%25', '%61', '%41', '%7e', '%c0', '%ae', '%00', '%0a', '%3b', '\\', ';', '?', '#', 'a', 'A', 'admin', 'ADMIN', ':', '@', ' ', '\u00e9', '-', '_', '~', '%zz', '%4'];

function mutate(seed: string, rnd: () => number): string {
  let s = seed;
  const n = 1 + Math.floor(rnd() * 4);
  for (let i = 0; i < n; i++) {
    const at = Math.floor(rnd() * (s.length + 1));
    const op = rnd();
    if (op < 0.5) s = s.slice(0, at) + TOKENS[Math.floor(rnd() * TOKENS.length)] + s.slice(at);
    else if (op < 0.75) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rnd() * 3));
    else s = s.slice(0, at) + String.fromCharCode(Math.floor(rnd() * 256)) + s.slice(at);
  }
  return s;
}

/** What a loose backend reads: every escape decoded (bytes as latin1), any case. */
const decodeAll = (p: string): string => p.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
const onPrefix = (p: string, prefix: string): boolean => p === prefix || p.startsWith(prefix + '/');

test('ok/fuzz: normalizeTarget refuses with PATH_AMBIGUOUS or returns a form loose backends route the same way', () => {
  const seeds = corpus('targets.jsonl');
  const rnd = prng(0x6a7e);
  const t0 = performance.now();
  let accepted = 0;
  let i = 0;
  for (; i < ITERATIONS && performance.now() - t0 < BUDGET_MS; i++) {
    const input = i < seeds.length ? seeds[i] : mutate(seeds[Math.floor(rnd() * seeds.length)], rnd);
    let path: string;
    try {
      path = normalizeTarget(input).path;
    } catch (e) {
      assert.ok(isMutualError(e) && e.code === 'PATH_AMBIGUOUS', `${JSON.stringify(input)}: ${String(e)}`);
      continue;
    }
    accepted++;
    const why = JSON.stringify(input);
    assert.equal(normalizeTarget(path).path, path, `${why}: stable`);
    const loose = decodeAll(path);
    assert.ok(!loose.includes('%'), `${why}: a second decoding changes nothing`);
    assert.ok(!/[\\\x00-\x1f\x7f]/.test(loose), `${why}: no backslash or control character once decoded`);
    const segments = path.split('/');
    const looseSegments = loose.split('/');
    assert.equal(looseSegments.length, segments.length, `${why}: decoding adds no segment boundary`);
    // The last segment is empty after a trailing slash; no other may be.
    assert.ok(!looseSegments.slice(1).some((s, k, all) => (s === '' && k < all.length - 1) || s === '.' || s === '..'), `${why}: no empty or dot segment once decoded`);
    for (const prefix of ['/admin', '/api/admin']) {
      assert.equal(onPrefix(loose, prefix), onPrefix(path, prefix), `${why}: ${prefix} matches alike`);
      assert.equal(onPrefix(loose.toLowerCase(), prefix), onPrefix(path.toLowerCase(), prefix), `${why}: ${prefix} matches alike in any case`);
    }
  }
  assert.ok(i >= seeds.length && accepted > 0, `ran ${i} inputs, ${accepted} accepted`);
});

test('ok/fuzz: normalizeHost refuses with HOST_INVALID or returns a lower-case name without trailing dot', () => {
  const seeds = corpus('hosts.jsonl');
  const rnd = prng(0x4057);
  const t0 = performance.now();
  let i = 0;
  for (; i < ITERATIONS && performance.now() - t0 < BUDGET_MS; i++) {
    const input = i < seeds.length ? seeds[i] : mutate(seeds[Math.floor(rnd() * seeds.length)], rnd);
    let host: string;
    try {
      host = normalizeHost(input);
    } catch (e) {
      assert.ok(isMutualError(e) && e.code === 'HOST_INVALID', `${JSON.stringify(input)}: ${String(e)}`);
      continue;
    }
    const why = JSON.stringify(input);
    assert.equal(normalizeHost(host), host, `${why}: stable`);
    assert.match(host, /^(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/, why);
  }
  assert.ok(i >= seeds.length);
});

/** Requests sent through a running gateway at most, and the time allowed for them. */
const LIVE_REQUESTS = 300;
const LIVE_BUDGET_MS = 15_000;

test('ok/fuzz through the gateway: no 5xx; what the backend gets is the normalized target the policy saw', async () => {
  const h = await startHarness();
  const seeds = corpus('targets.jsonl').map((t) => (t.startsWith('/') ? `/api${t}` : t));
  const rnd = prng(0x11fe);
  const cred = h.creds.payments;
  /** One request on its own connection, bytes as they are (a client library would refuse or fix most of these). */
  const send = (target: string) => new Promise<string>((resolve, reject) => {
    const s = tls.connect({ port: h.gateway.port, host: '127.0.0.1', servername: 'localhost', ca: h.pki.root, cert: cred.fullchain, key: cred.key, ALPNProtocols: ['http/1.1'] }, () => {
      s.write(Buffer.from(`GET ${target} HTTP/1.1\r\nHost: gw.acme.internal\r\nConnection: close\r\n\r\n`, 'latin1'));
    });
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('close', () => resolve(Buffer.concat(parts).toString('latin1')));
    s.on('error', reject);
  });
  try {
    const t0 = performance.now();
    let i = 0;
    const seen = new Set<number>();
    for (; i < LIVE_REQUESTS && performance.now() - t0 < LIVE_BUDGET_MS; i++) {
      // No spaces or line ends: those split the request line itself, which is Node's parser's business.
      const target = (i < seeds.length ? seeds[i] : mutate(seeds[Math.floor(rnd() * seeds.length)], rnd)).replace(/[ \r\n]/g, '');
      const answer = await send(target);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
      const body = answer.slice(answer.indexOf('\r\n\r\n') + 4);
      const why = `${JSON.stringify(target)} -> ${answer.slice(0, 300)}`;
      seen.add(status);
      assert.ok(status >= 200 && status < 500, why);
      let expected: ReturnType<typeof normalizeTarget> | undefined;
      try {
        expected = normalizeTarget(target);
      } catch {
        // Refused by the normalizer (or by Node's parser first, with a bare 400).
        assert.equal(status, 400, why);
        continue;
      }
      const p = expected.path;
      if (p === '/api/admin' || p.startsWith('/api/admin/')) assert.equal(status, 403, why);
      else if (p === '/api' || p.startsWith('/api/')) {
        if (status === 400) continue; // Node's parser refused a byte the normalizer would accept
        assert.equal(status, 200, why);
        assert.equal((JSON.parse(body) as Echo).url, p + expected.query, why);
      }
    }
    assert.ok(i >= seeds.length && seen.has(200) && seen.has(400) && seen.has(403), `ran ${i} requests, statuses ${[...seen].join(',')}`);
  } finally {
    await h.close();
  }
});
