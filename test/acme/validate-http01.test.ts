/**
 * http-01 validation against real HTTP servers on loopback, names resolved by a real DNS server
 * (test/helpers/dns-server.ts): the right answer, each wrong one, redirects within and outside
 * the rules, a body too large, a server too slow, nothing listening, IPv6 first and IPv4 after.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.ts';
import { freePort } from '../helpers/tools.ts';
import { validateHttp01 } from '../../src/ca/acme/validate-http01.ts';
import { keyAuthorization } from '../../src/ca/acme/key-authorization.ts';
import { MAX_HTTP01_BODY_BYTES, MAX_HTTP01_REDIRECTS, type ValidationOptions } from '../../src/ca/acme/validation-options.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';

const token = 'LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0';
const ka = keyAuthorization(token, '9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI');
const challengePath = `/.well-known/acme-challenge/${token}`;

interface Seen {
  path: string;
  host: string;
  remote: string;
}

/** A real HTTP server whose answers the tests script per path; records every request. */
interface TestHttpServer {
  port: number;
  seen: Seen[];
  routes: Map<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>;
  close(): Promise<void>;
}

async function startHttp(host: string): Promise<TestHttpServer> {
  const seen: Seen[] = [];
  const routes = new Map<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>();
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    seen.push({ path: req.url ?? '', host: req.headers.host ?? '', remote: req.socket.remoteAddress ?? '' });
    const route = routes.get(req.url ?? '');
    if (route) route(req, res);
    else res.writeHead(404).end('not here');
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    routes,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

let dns: DnsServer;
let web: TestHttpServer;
let o: ValidationOptions;

before(async () => {
  dns = await startDnsServer();
  web = await startHttp('127.0.0.1');
  o = { httpPort: web.port, tlsAlpnPort: 443, dnsServers: [`${dns.address}:${dns.port}`], timeoutMs: 3_000 };
  for (const name of ['site.test', 'other.test']) dns.set(name, 'A', ['127.0.0.1']);
});
after(async () => {
  await web.close();
  await dns.close();
});

/** Asserts that `p` rejects with `code` and returns the error's detail. */
async function rejects(p: Promise<unknown>, code: ErrorCode): Promise<string> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  assert.ok(isMutualError(e, code), `expected ${code}, got ${String(e)}`);
  return String(e.fields.detail);
}

const answer = (status: number, body: string) => (_req: http.IncomingMessage, res: http.ServerResponse) => res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
const redirect = (status: number, location: string) => (_req: http.IncomingMessage, res: http.ServerResponse) => res.writeHead(status, { location }).end();

test('ok/http-01: the key authorization at the well-known path, the name resolved by the configured resolver, Host the identifier', async () => {
  web.routes.set(challengePath, answer(200, ka));
  const before = web.seen.length;
  await validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, o);
  assert.deepEqual(web.seen.slice(before), [{ path: challengePath, host: `site.test:${web.port}`, remote: '127.0.0.1' }]);
  assert.ok(dns.queries.some((q) => q.name === 'site.test' && q.type === 'A'));
});

test('ok/http-01: trailing whitespace after the key authorization is ignored (RFC 8555 section 8.3)', async () => {
  web.routes.set(challengePath, answer(200, `${ka} \r\n\t\n`));
  await validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, o);
});

test('ok/http-01: redirects are followed, to another path and another name, Host following them', async () => {
  web.routes.set(challengePath, redirect(302, '/moved'));
  web.routes.set('/moved', redirect(301, `http://other.test:${web.port}/final?x=1`));
  web.routes.set('/final?x=1', answer(200, ka));
  const before = web.seen.length;
  await validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, o);
  assert.deepEqual(web.seen.slice(before).map((s) => `${s.host}${s.path}`), [`site.test:${web.port}${challengePath}`, `site.test:${web.port}/moved`, `other.test:${web.port}/final?x=1`]);
});

test('ok/http-01: an IP identifier connects to the IP, Host the IP (RFC 8738 section 3)', async () => {
  web.routes.set(challengePath, answer(200, ka));
  const before = web.seen.length;
  await validateHttp01({ type: 'ip', value: '127.0.0.1' }, token, ka, { ...o, dnsServers: undefined });
  assert.deepEqual(web.seen.slice(before), [{ path: challengePath, host: `127.0.0.1:${web.port}`, remote: '127.0.0.1' }]);
});

test('ok/http-01: hostOverride connects there, Host stays the identifier', async () => {
  web.routes.set(challengePath, answer(200, ka));
  const before = web.seen.length;
  await validateHttp01({ type: 'dns', value: 'unresolvable.test' }, token, ka, { ...o, hostOverride: '127.0.0.1' });
  assert.equal(web.seen.slice(before)[0].host, `unresolvable.test:${web.port}`);
});

test('ok/http-01: IPv6 is tried first (AAAA), IPv4 after when IPv6 refuses the connection', async () => {
  const v6 = await startHttp('::1');
  try {
    v6.routes.set(challengePath, answer(200, ka));
    web.routes.set(challengePath, answer(200, ka));
    dns.set('dual.test', 'A', ['127.0.0.1']);
    dns.set('dual.test', 'AAAA', ['::1']);
    await validateHttp01({ type: 'dns', value: 'dual.test' }, token, ka, { ...o, httpPort: v6.port });
    assert.deepEqual(v6.seen.map((s) => s.remote), ['::1']);
    // Nothing on [::1]:web.port: the IPv4 address answers.
    const before = web.seen.length;
    await validateHttp01({ type: 'dns', value: 'dual.test' }, token, ka, o);
    assert.equal(web.seen.slice(before)[0].remote, '127.0.0.1');
  } finally {
    await v6.close();
  }
});

test('fail/http-01: a wrong body is ACME_INCORRECT_RESPONSE naming URL, address, expected and seen', async () => {
  web.routes.set(challengePath, answer(200, 'hello\u0000world'));
  const detail = await rejects(validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, o), 'ACME_INCORRECT_RESPONSE');
  for (const part of [`http://site.test:${web.port}${challengePath}`, 'address 127.0.0.1', ka, 'hello\\u0000world']) assert.ok(detail.includes(part), `${part} in ${detail}`);
});

test('fail/http-01: 404 is ACME_INCORRECT_RESPONSE with the status', async () => {
  web.routes.delete(challengePath);
  const detail = await rejects(validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, o), 'ACME_INCORRECT_RESPONSE');
  assert.match(detail, /status 404/);
});

test('fail/http-01: a redirect loop is ACME_CONNECTION', async () => {
  web.routes.set(challengePath, redirect(302, '/loop-a'));
  web.routes.set('/loop-a', redirect(307, '/loop-b'));
  web.routes.set('/loop-b', redirect(308, '/loop-a'));
  const detail = await rejects(validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, o), 'ACME_CONNECTION');
  assert.match(detail, /redirect loop/);
});

test(`fail/http-01: more than ${MAX_HTTP01_REDIRECTS} redirects is ACME_CONNECTION`, async () => {
  web.routes.set(challengePath, redirect(302, '/hop/0'));
  for (let i = 0; i < 20; i++) web.routes.set(`/hop/${i}`, redirect(302, `/hop/${i + 1}`));
  const before = web.seen.length;
  const detail = await rejects(validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, o), 'ACME_CONNECTION');
  assert.match(detail, new RegExp(`more than ${MAX_HTTP01_REDIRECTS} redirects`));
  assert.equal(web.seen.length - before, MAX_HTTP01_REDIRECTS + 1);
});

test('fail/http-01: a redirect to a port other than 80, 443 or the configured one is ACME_CONNECTION, not followed', async () => {
  const other = await startHttp('127.0.0.1');
  try {
    other.routes.set(challengePath, answer(200, ka));
    web.routes.set(challengePath, redirect(302, `http://site.test:${other.port}${challengePath}`));
    const detail = await rejects(validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, o), 'ACME_CONNECTION');
    assert.match(detail, /only ports 80, 443/);
    assert.equal(other.seen.length, 0);
  } finally {
    await other.close();
  }
});

test('fail/http-01: a redirect to another scheme is ACME_CONNECTION', async () => {
  web.routes.set(challengePath, redirect(302, 'ftp://site.test/x'));
  const detail = await rejects(validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, o), 'ACME_CONNECTION');
  assert.match(detail, /only http and https/);
});

test('fail/http-01: a huge body is ACME_INCORRECT_RESPONSE after reading at most the limit', async () => {
  let written = 0;
  let closed: (early: boolean) => void;
  const closedEarly = new Promise<boolean>((resolve) => (closed = resolve));
  web.routes.set(challengePath, (_req, res) => {
    res.writeHead(200);
    const chunk = Buffer.alloc(64 * 1024, ka);
    const pump = () => {
      while (written < 64 * 1024 * 1024) {
        written += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    res.on('close', () => closed(!res.writableFinished));
    pump();
  });
  const detail = await rejects(validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, o), 'ACME_INCORRECT_RESPONSE');
  assert.match(detail, new RegExp(`over ${MAX_HTTP01_BODY_BYTES} bytes`));
  assert.ok(await closedEarly, 'the validator hung up instead of reading it all');
  assert.ok(written < 64 * 1024 * 1024);
});

test('fail/http-01: a server slower than the deadline is ACME_CONNECTION within it', async () => {
  web.routes.set(challengePath, (_req, res) => {
    res.writeHead(200);
    res.write(ka.slice(0, 10));
  });
  const t0 = performance.now();
  const detail = await rejects(validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, { ...o, timeoutMs: 300 }), 'ACME_CONNECTION');
  assert.ok(performance.now() - t0 < 2_000);
  assert.match(detail, /within the validation's 300 ms/);
});

test('fail/http-01: nothing listening is ACME_CONNECTION (connection refused)', async () => {
  const port = await freePort();
  const detail = await rejects(validateHttp01({ type: 'dns', value: 'site.test' }, token, ka, { ...o, httpPort: port }), 'ACME_CONNECTION');
  assert.match(detail, /ECONNREFUSED/);
});

test('fail/http-01: a name that does not resolve is ACME_DNS', async () => {
  const detail = await rejects(validateHttp01({ type: 'dns', value: 'nowhere.test' }, token, ka, o), 'ACME_DNS');
  assert.match(detail, /NXDOMAIN/);
});

test('fail/http-01: a wildcard is ACME_MALFORMED (RFC 8555 section 7.1.3)', async () => {
  await rejects(validateHttp01({ type: 'dns', value: '*.site.test' }, token, ka, o), 'ACME_MALFORMED');
});
