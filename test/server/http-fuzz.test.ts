/**
 * A bounded fuzz target for the HTTP request paths of `mutual serve` (issue 13, "How it is
 * checked"): the real CLI in its own process, both listeners (HTTPS without a client certificate,
 * and the plain-HTTP public one), fed mutations of the valid requests in test/fuzz-corpus/http/
 * (request line, target, headers, framing, JSON and binary bodies, byte-level damage, requests
 * spliced together) from a fixed seed for a few seconds. Every input is unauthenticated: the token
 * in the corpus has a valid signature but was spent before the run.
 *
 * Asserted: no 5xx answer but the documented 503 (`/ready`), the process neither exits nor logs an
 * error, `mutual_errors_total{code="INTERNAL"}` stays absent, both listeners still answer /health,
 * and the inventory is unchanged (nothing issued, nothing revoked).
 *
 * MUTUAL_FUZZ_MS (default 4000) and MUTUAL_FUZZ_SEED (default 13) run it longer or elsewhere; a
 * failure prints the seed, the input number and the input's first bytes.
 */
import { test, before, after } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { toPem } from '../../src/core/pem.ts';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';
import { requireTool } from '../helpers/tools.ts';
import { freePort, opensslAsync, send, spawnServe, type Running, type SendTls } from '../helpers/server.ts';
import { prng } from '../helpers/prng.ts';

/** How long inputs are sent (the last ones in flight are then awaited). */
const FUZZ_MS = Number(process.env.MUTUAL_FUZZ_MS ?? 4000);
const SEED = Number(process.env.MUTUAL_FUZZ_SEED ?? 13);
/** The shorter run with the admin's certificate. */
const ADMIN_FUZZ_MS = Math.round(FUZZ_MS / 2);
/** Connections in flight at once. */
const CONCURRENCY = 12;
/** How long one input waits for its answers before the connection is dropped. */
const ANSWER_MS = 1500;
const CORPUS_DIR = path.resolve(import.meta.dirname, '../fuzz-corpus/http');

type Listener = 'https' | 'public';
interface Seed {
  name: string;
  listeners: Listener[];
  bytes: Buffer;
}

let tc: TestCa;
let srv: Running;
let publicUrl: string;
let admin: SendTls;
let victimSerial = '';
const seeds: Seed[] = [];


/** Reads a corpus file and fills its placeholders (see test/fuzz-corpus/http/README.md). */
function loadSeed(file: string, values: Record<string, string | Buffer>): Seed {
  let text = fs.readFileSync(path.join(CORPUS_DIR, file), 'latin1');
  let listeners: Listener[] = ['https', 'public'];
  const meta = /^# listeners: ([a-z ]+)\n/.exec(text);
  if (meta) {
    listeners = meta[1].split(' ').filter((x): x is Listener => x === 'https' || x === 'public');
    text = text.slice(meta[0].length);
  }
  const split = text.indexOf('\n\n');
  const headText = text.slice(0, split);
  // Placeholders in the body may be binary (the OCSP request): build it as bytes.
  const bodyParts = text.slice(split + 2).split(/(\{\{[A-Z_]+\}\})/);
  let body = Buffer.concat(bodyParts.map((p) => {
    const m = /^\{\{([A-Z_]+)\}\}$/.exec(p);
    if (!m) return Buffer.from(p, 'latin1');
    const v = values[m[1]];
    assert.ok(v !== undefined, `${file}: unknown placeholder ${p}`);
    return Buffer.isBuffer(v) ? v : Buffer.from(v, 'utf8');
  }));
  if (/^transfer-encoding: chunked$/im.test(headText)) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < body.length; i += 1000) {
      const c = body.subarray(i, i + 1000);
      chunks.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
    }
    body = Buffer.concat([...chunks, Buffer.from('0\r\n\r\n')]);
  }
  const head = headText.replace(/\{\{([A-Z_]+)\}\}/g, (_, k: string) => (k === 'LENGTH' ? String(body.length) : String(values[k])));
  return { name: file, listeners, bytes: Buffer.concat([Buffer.from(`${head.split('\n').join('\r\n')}\r\n\r\n`, 'latin1'), body]) };
}

// ---- mutations
const METHODS = ['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT', 'PATCH', 'PRI', 'get', 'P0ST', ''];
const VERSIONS = ['HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/1.1x', 'HTTP/9.9', 'http/1.1', ''];
const TARGET_EDITS: ((p: string) => string)[] = [
  (p) => `/x/..${p}`, (p) => `/.${p}`, (p) => `/${p}`, (p) => `${p}/`, (p) => p.replace('/', '/%2e%2e/'), (p) => p.toUpperCase(),
  (p) => p.replace(/[a-z]/, (c) => `%${c.charCodeAt(0).toString(16)}`), (p) => `${p}?a=1&b=%zz`, (p) => `${p}#frag`, (p) => `http://127.0.0.1${p}`,
  () => '*', (p) => p.replace(/\//g, '\\'), (p) => `${p}${'a'.repeat(5000)}`, (p) => p.replace('/v1/', '/v1//'), (p) => `/ocsp/..${p}`,
  (p) => p.replace('/', '/ocsp/'), (p) => `${p}%00`, (p) => `${p};x=1`, () => '/v1/certificates/00', () => '/crl/../../etc/passwd',
];
const HEADERS = [
  'Transfer-Encoding: chunked', 'Transfer-Encoding: gzip, chunked', 'Transfer-Encoding: identity', 'Content-Length: 0', 'Content-Length: 99999999999',
  'Content-Length: -1', 'Content-Length: 1, 2', 'Content-Length: 70000', 'Expect: 100-continue', 'Expect: 200-ok', 'Connection: keep-alive',
  'Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA', 'Host:', 'Host: a\r\nHost: b', 'Authorization: Bearer x',
  'Authorization: Basic YWRtaW46YWRtaW4=', 'Authorization: Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', 'Content-Type: text/plain',
  'Content-Type: application/json; charset=utf-16', 'X-Forwarded-For: 10.0.0.1', 'X-Forwarded-Client-Cert: Hash=1;URI=spiffe://acme.internal/admin/x',
  'Client-Cert: :MIIB:', `X-Long: ${'a'.repeat(9000)}`, ' folded: continuation', 'Bad Header: x', 'X-Nul: \x00', 'X-Latin: \xff\xfe',
];
const JSON_VALUES = ['null', 'true', '0', '-1', '1e309', '1.5', '""', '"x"', '[]', '{}', `"${'A'.repeat(70_000)}"`, `${'['.repeat(5000)}${']'.repeat(5000)}`,
  '{"__proto__": {"admin": true}}', '"\\ud800"', '"-----BEGIN CERTIFICATE REQUEST-----\\nAAAA\\n-----END CERTIFICATE REQUEST-----\\n"'];
const BYTES = ['\r\n', '\r\n\r\n', '\n', '\r', '\x00', '%', '/../', '\\', ' ', ':', '\xff', '{', '"', '\t', '0\r\n\r\n', 'GET / HTTP/1.1\r\n\r\n'];

/** Applies 1-4 mutations to a seed (another seed may be spliced in). */
function mutate(input: Buffer, rnd: () => number, other: () => Buffer): Buffer {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  let b = Buffer.from(input);
  const n = 1 + Math.floor(rnd() * 4);
  for (let i = 0; i < n; i++) {
    const text = b.toString('latin1');
    const headEnd = text.indexOf('\r\n\r\n');
    const lineEnd = text.indexOf('\r\n');
    const [method, target, version] = text.slice(0, lineEnd < 0 ? text.length : lineEnd).split(' ');
    const rest = lineEnd < 0 ? '' : text.slice(lineEnd);
    let body = headEnd < 0 ? '' : text.slice(headEnd + 4);
    const head = headEnd < 0 ? text : text.slice(0, headEnd);
    const fixLength = (h: string, bd: string) => (rnd() < 0.7 ? h.replace(/^content-length: *\d+$/im, `Content-Length: ${Buffer.byteLength(bd, 'latin1')}`) : h);
    switch (Math.floor(rnd() * 11)) {
      case 0: // request line: method
        b = Buffer.from(`${pick(METHODS)} ${target ?? '/'} ${version ?? ''}${rest}`, 'latin1');
        break;
      case 1: // request line: target
        b = Buffer.from(`${method} ${pick(TARGET_EDITS)(target ?? '/')} ${version ?? ''}${rest}`, 'latin1');
        break;
      case 2: // request line: version
        b = Buffer.from(`${method} ${target} ${pick(VERSIONS)}${rest}`, 'latin1');
        break;
      case 3: { // add a header
        if (headEnd < 0) break;
        b = Buffer.from(`${head}\r\n${pick(HEADERS)}\r\n\r\n${body}`, 'latin1');
        break;
      }
      case 4: { // drop a header
        const lines = head.split('\r\n');
        if (lines.length > 1) lines.splice(1 + Math.floor(rnd() * (lines.length - 1)), 1);
        b = Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body}`, 'latin1');
        break;
      }
      case 5: { // replace a JSON value in the body (and usually fix Content-Length)
        const values = [...body.matchAll(/: ?("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|\[[^\]]*\]|true|false|null)/g)];
        if (values.length === 0 || headEnd < 0) break;
        const v = pick(values);
        body = body.slice(0, v.index + v[0].length - v[1].length) + pick(JSON_VALUES) + body.slice(v.index + v[0].length);
        b = Buffer.from(`${fixLength(head, body)}\r\n\r\n${body}`, 'latin1');
        break;
      }
      case 6: { // flip bits in the body (binary bodies: the OCSP request) or anywhere
        const from = headEnd >= 0 && body.length > 0 && rnd() < 0.7 ? headEnd + 4 : 0;
        for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) {
          const at = from + Math.floor(rnd() * Math.max(1, b.length - from));
          if (at < b.length) b[at] ^= 1 << Math.floor(rnd() * 8);
        }
        break;
      }
      case 7: { // insert bytes
        const at = Math.floor(rnd() * (b.length + 1));
        b = Buffer.concat([b.subarray(0, at), Buffer.from(pick(BYTES), 'latin1'), b.subarray(at)]);
        break;
      }
      case 8: { // delete or truncate
        const at = Math.floor(rnd() * b.length);
        b = rnd() < 0.5 ? b.subarray(0, at) : Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + Math.floor(rnd() * 16)))]);
        break;
      }
      case 9: // splice another request after this one (pipelining, smuggling shapes)
        b = Buffer.concat([b, other()]);
        break;
      default: { // duplicate a range
        const at = Math.floor(rnd() * b.length);
        const len = Math.floor(rnd() * 64);
        b = Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
      }
    }
  }
  return b;
}

/** Sends raw bytes on a fresh connection (HTTPS: as the admin if asked) and returns the status codes of the answers seen. */
function exchange(listener: Listener, bytes: Buffer, asAdmin = false, waitMs = ANSWER_MS): Promise<number[]> {
  return new Promise((resolve) => {
    const port = listener === 'https' ? Number(new URL(srv.url).port) : Number(new URL(publicUrl).port);
    const chunks: Buffer[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      resolve([...text.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1])));
    };
    const socket: net.Socket = listener === 'https'
      ? tls.connect({ host: '127.0.0.1', port, ca: tc.init.rootPem, servername: 'localhost', ...(asAdmin ? { cert: admin.cert, key: admin.key } : {}) }, () => socket.write(bytes))
      : net.connect({ host: '127.0.0.1', port }, () => socket.write(bytes));
    const timer = setTimeout(finish, waitMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', finish);
    socket.on('close', finish);
  });
}

/** The inventory as the admin sees it: serial -> status. */
async function inventory(): Promise<Map<string, string>> {
  const r = await send(`${srv.url}/v1/certificates?all=1&limit=100000`, { tls: admin });
  assert.equal(r.status, 200);
  return new Map(r.json.items.map((i: { serial: string; status: string }) => [i.serial, i.status]));
}

before(async () => {
  tc = await makeTestCa();
  const pubPort = await freePort();
  srv = await spawnServe(tc, undefined, ['--public-listen', `127.0.0.1:${pubPort}`]);
  publicUrl = `http://127.0.0.1:${pubPort}`;
  admin = { ca: tc.init.rootPem, cert: tc.init.admin.certificatePem, key: tc.init.admin.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
});
after(async () => {
  if (srv && srv.child.exitCode === null) {
    srv.child.kill('SIGTERM');
    await srv.exited;
  }
  if (tc) await tc.close();
  if (tc) fs.rmSync(tc.dir, { recursive: true, force: true });
});

test('ok/fuzzed-requests-on-both-listeners', async (t: TestContext) => {
  if (!requireTool(t, 'openssl')) return;
  // The values the corpus needs: a spent token, a CSR, a valid certificate, an OCSP request for it.
  const { privateKey } = generateKeyPair('p256');
  const csr = toPem(buildCsr({ privateKey, commonName: 'fuzz', names: { dns: [], ip: [], uri: ['spiffe://acme.internal/prod/fuzz'] } }), 'CERTIFICATE REQUEST');
  const tok = await send(`${srv.url}/v1/tokens`, { body: { names: ['spiffe://acme.internal/prod/fuzz'], ttlSeconds: 3600 }, tls: admin });
  assert.equal(tok.status, 201);
  const enrolled = await send(`${srv.url}/v1/enroll`, { body: { csr }, headers: { authorization: `Bearer ${tok.json.token}` }, tls: { ca: tc.init.rootPem } });
  assert.equal(enrolled.status, 201, enrolled.body.toString());
  victimSerial = enrolled.json.serial;
  const leaf = path.join(tc.dir, 'fuzz-leaf.pem');
  const reqFile = path.join(tc.dir, 'fuzz-ocsp.der');
  fs.writeFileSync(leaf, enrolled.json.certificate);
  const o = await opensslAsync(['ocsp', '-issuer', tc.layout.clientCaCert, '-cert', leaf, '-no_nonce', '-reqout', reqFile]);
  assert.equal(o.status, 0, o.stderr);
  const ocspDer = fs.readFileSync(reqFile);
  const values: Record<string, string | Buffer> = {
    CSR: JSON.stringify(csr), TOKEN: tok.json.token, SERIAL: victimSerial, CLIENT_KEYED: tc.ca.keyedName(tc.ca.client),
    OCSP_DER: ocspDer, OCSP_PATH: encodeURIComponent(ocspDer.toString('base64')),
  };
  for (const f of fs.readdirSync(CORPUS_DIR).filter((x) => x.endsWith('.http')).sort()) seeds.push(loadSeed(f, values));
  assert.ok(seeds.length >= 15, 'the corpus is there');

  // The seeds themselves are valid: answered without a 5xx on every listener they name.
  for (const sd of seeds) {
    for (const l of sd.listeners) {
      // Valid requests get their answer however loaded the machine is.
      const statuses = await exchange(l, sd.bytes, false, 20_000);
      assert.ok(statuses.length === 1 && statuses[0] < 500, `seed ${sd.name} on ${l}: ${statuses}`);
    }
  }
  const before = await inventory();

  await t.test('ok/unauthenticated', async (tt) => {
    await fuzz(tt, SEED, FUZZ_MS, false);
    // Nothing issued or revoked without authentication.
    const afterward = await inventory();
    assert.deepEqual([...afterward.keys()].filter((s) => !before.has(s)), [], 'certificates issued by fuzzed requests');
    assert.equal(afterward.get(victimSerial), 'valid', 'the corpus certificate was revoked');
  });
  // The same inputs with the admin's certificate reach the handlers' deeper paths (CSR parsing,
  // lint, revocation); they may issue and revoke, but never fail with a 5xx or an error log.
  await t.test('ok/as-admin', (tt) => fuzz(tt, SEED + 1, ADMIN_FUZZ_MS, true));
});

/** One fuzz run: mutated seeds from `seed` for `ms`, then the server's health and logs checked. */
async function fuzz(t: TestContext, seed: number, ms: number, asAdmin: boolean): Promise<void> {
  const rnd = prng(seed);
  const failures: string[] = [];
  const seen = new Map<number, number>();
  let sent = 0;
  const deadline = Date.now() + ms;
  const worker = async () => {
    while (Date.now() < deadline && failures.length < 10) {
      const i = sent++;
      const sd = seeds[Math.floor(rnd() * seeds.length)];
      const listener = asAdmin ? 'https' : sd.listeners[Math.floor(rnd() * sd.listeners.length)];
      const input = mutate(sd.bytes, rnd, () => seeds[Math.floor(rnd() * seeds.length)].bytes);
      const statuses = await exchange(listener, input, asAdmin);
      for (const st of statuses) seen.set(st, (seen.get(st) ?? 0) + 1);
      const bad = statuses.filter((st) => st >= 500 && st !== 503);
      if (bad.length) failures.push(`seed ${seed} input ${i} (${sd.name} on ${listener}${asAdmin ? ' as admin' : ''}) -> ${bad}: ${JSON.stringify(input.subarray(0, 300).toString('latin1'))}`);
      if (srv.child.exitCode !== null) failures.push(`the server exited after input ${i}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  t.diagnostic(`${sent} inputs in ${ms} ms (seed ${seed}); answers: ${[...seen].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}x${v}`).join(' ')}`);
  assert.deepEqual(failures, []);

  // Alive on both listeners, nothing logged as an error, no INTERNAL error counted.
  assert.equal(srv.child.exitCode, null, srv.output());
  assert.equal((await send(`${srv.url}/health`, { tls: { ca: tc.init.rootPem } })).status, 200);
  assert.equal((await fetch(`${publicUrl}/health`)).status, 200);
  const metrics = (await send(`${srv.url}/metrics`, { tls: { ca: tc.init.rootPem } })).body.toString('utf8');
  assert.doesNotMatch(metrics, /mutual_errors_total\{code="INTERNAL"\}/);
  const errors = srv.output().split('\n').filter((l) => /"level":(50|60)/.test(l));
  assert.deepEqual(errors, []);
}
