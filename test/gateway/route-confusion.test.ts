/**
 * Route confusion (issue 13, item 7): a caller must not reach, through a catch-all route, what a
 * backend serves under a route whose policy denies it. Real backends that read paths and hosts
 * more loosely than a prefix match: nginx (decodes `%61`, merges `//`, drops a host's trailing
 * dot for its server_name), Express (matches paths in any case) and Fastify (decodes `%61`).
 * Each is behind an admin-only route and a catch-all, and each attempt, over HTTP/1.1 and HTTP/2,
 * is refused or lands on the route whose policy applies.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { startHarness, startNginx, type Harness } from './harness.ts';
import { request, request2, id, type Reply } from '../sdk/fixtures.ts';
import { freePort, hasTool } from '../helpers/tools.ts';

const ADMIN = id('prod/admin-tool');
let h: Harness;
let nginx: { close(): Promise<void> } | undefined;
let expressServer: http.Server;
let fastify: FastifyInstance;

before(async () => {
  const app = express();
  app.use('/admin', (req, res) => void res.type('text/plain').send(`express admin ${req.originalUrl}`));
  app.use((req, res) => void res.type('text/plain').send(`express public ${req.originalUrl}`));
  expressServer = http.createServer(app);
  await new Promise<void>((r) => expressServer.listen(0, '127.0.0.1', r));
  fastify = Fastify();
  fastify.get('/admin/*', async (req) => `fastify admin ${req.url}`);
  fastify.get('/*', async (req) => `fastify public ${req.url}`);
  await fastify.listen({ port: 0, host: '127.0.0.1' });
  const expressUrl = `http://127.0.0.1:${(expressServer.address() as AddressInfo).port}`;
  const fastifyUrl = `http://127.0.0.1:${(fastify.server.address() as AddressInfo).port}`;
  const nginxPort = await freePort();
  const adminOnly = [{ identities: [ADMIN] }];
  const anyone = [{ identities: ['*'] }];
  h = await startHarness((c) => {
    c.routes = [
      { name: 'nginx-admin-vhost', host: 'admin.acme.internal', upstream: `http://127.0.0.1:${nginxPort}`, allow: adminOnly },
      { name: 'express-admin', host: 'express.test', pathPrefix: '/admin', caseInsensitive: true, upstream: expressUrl, allow: adminOnly },
      { name: 'express', host: 'express.test', upstream: expressUrl, allow: anyone },
      { name: 'fastify-admin', host: 'fastify.test', pathPrefix: '/admin', upstream: fastifyUrl, allow: adminOnly },
      { name: 'fastify', host: 'fastify.test', upstream: fastifyUrl, allow: anyone },
      { name: 'nginx-admin', pathPrefix: '/admin', upstream: `http://127.0.0.1:${nginxPort}`, allow: adminOnly },
      { name: 'nginx', upstream: `http://127.0.0.1:${nginxPort}`, allow: anyone },
    ];
  });
  if (hasTool('nginx')) {
    nginx = await startNginx(path.join(h.dir, 'nginx'), nginxPort, `
  default_type text/plain;
  server {
    listen 127.0.0.1:${nginxPort} default_server;
    server_name _;
    location /admin/ { return 200 "nginx admin $uri"; }
    location / { return 200 "nginx public $uri"; }
  }
  server {
    listen 127.0.0.1:${nginxPort};
    server_name admin.acme.internal;
    location / { return 200 "nginx admin-vhost $uri"; }
  }`);
  }
});

after(async () => {
  await nginx?.close();
  await h.close();
  await new Promise<void>((r) => expressServer.close(() => r()));
  await fastify.close();
});

interface Case {
  name: string;
  backend: 'nginx' | 'express' | 'fastify';
  host?: string;
  path: string;
  as: 'payments' | 'admin';
  status: number;
  code?: string;
  /** What the backend answered (the route that served it, and the path it got). */
  body?: RegExp;
}

const cases: Case[] = [
  // nginx
  { name: 'ok/nginx: the catch-all serves anyone', backend: 'nginx', path: '/public/x', as: 'payments', status: 200, body: /^nginx public \/public\/x$/ },
  { name: 'ok/nginx: the admin route serves the admin', backend: 'nginx', path: '/admin/x', as: 'admin', status: 200, body: /^nginx admin \/admin\/x$/ },
  { name: 'fail/nginx: the admin route denies others', backend: 'nginx', path: '/admin/x', as: 'payments', status: 403, code: 'ACCESS_DENIED' },
  { name: 'fail/nginx: /%61dmin is /admin (decoded, then denied)', backend: 'nginx', path: '/%61dmin/x', as: 'payments', status: 403, code: 'ACCESS_DENIED' },
  { name: 'ok/nginx: /%61dmin reaches the admin route, forwarded decoded', backend: 'nginx', path: '/%61dmin/x', as: 'admin', status: 200, body: /^nginx admin \/admin\/x$/ },
  { name: 'fail/nginx: /%2561dmin (decoded twice by some) is refused', backend: 'nginx', path: '/%2561dmin/x', as: 'payments', status: 400, code: 'PATH_AMBIGUOUS' },
  { name: 'fail/nginx: //admin (nginx merges slashes) is refused', backend: 'nginx', path: '//admin/x', as: 'payments', status: 400, code: 'PATH_AMBIGUOUS' },
  { name: 'fail/nginx: /x/../admin is refused', backend: 'nginx', path: '/x/../admin/x', as: 'payments', status: 400, code: 'PATH_AMBIGUOUS' },
  { name: 'fail/nginx: /x/%2e%2e/admin is refused', backend: 'nginx', path: '/x/%2e%2e/admin/x', as: 'payments', status: 400, code: 'PATH_AMBIGUOUS' },
  { name: 'fail/nginx: /x%2f..%2fadmin is refused', backend: 'nginx', path: '/x%2f..%2fadmin/x', as: 'payments', status: 400, code: 'PATH_AMBIGUOUS' },
  { name: 'fail/nginx: Host with a trailing dot is the admin vhost (denied)', backend: 'nginx', host: 'admin.acme.internal.', path: '/x', as: 'payments', status: 403, code: 'ACCESS_DENIED' },
  { name: 'fail/nginx: Host in capitals with a trailing dot and port (denied)', backend: 'nginx', host: 'ADMIN.Acme.Internal.:8443', path: '/x', as: 'payments', status: 403, code: 'ACCESS_DENIED' },
  { name: 'ok/nginx: the admin vhost serves the admin, by its normalized name', backend: 'nginx', host: 'admin.acme.internal.', path: '/x', as: 'admin', status: 200, body: /^nginx admin-vhost \/x$/ },
  { name: 'fail/nginx: a malformed Host is refused', backend: 'nginx', host: 'admin.acme.internal..', path: '/x', as: 'payments', status: 400, code: 'HOST_INVALID' },
  // Express: case-insensitive routing; the route says so with caseInsensitive: true
  { name: 'ok/express: the catch-all serves anyone', backend: 'express', host: 'express.test', path: '/public', as: 'payments', status: 200, body: /^express public \/public$/ },
  { name: 'fail/express: /ADMIN is the admin route (denied)', backend: 'express', host: 'express.test', path: '/ADMIN/x', as: 'payments', status: 403, code: 'ACCESS_DENIED' },
  { name: 'fail/express: /aDmIn is the admin route (denied)', backend: 'express', host: 'express.test', path: '/aDmIn', as: 'payments', status: 403, code: 'ACCESS_DENIED' },
  { name: 'fail/express: /%41DMIN is the admin route (denied)', backend: 'express', host: 'express.test', path: '/%41DMIN/x', as: 'payments', status: 403, code: 'ACCESS_DENIED' },
  { name: 'ok/express: /ADMIN serves the admin', backend: 'express', host: 'express.test', path: '/ADMIN/x', as: 'admin', status: 200, body: /^express admin \/ADMIN\/x$/ },
  { name: 'fail/express: /admin;x (path parameter) is refused', backend: 'express', host: 'express.test', path: '/admin;x/y', as: 'payments', status: 400, code: 'PATH_AMBIGUOUS' },
  // Fastify: decodes percent-encoded paths before routing
  { name: 'fail/fastify: /%61dmin is the admin route (denied)', backend: 'fastify', host: 'fastify.test', path: '/%61dmin/x', as: 'payments', status: 403, code: 'ACCESS_DENIED' },
  { name: 'ok/fastify: /%61dmin serves the admin, forwarded decoded', backend: 'fastify', host: 'fastify.test', path: '/%61dmin/x', as: 'admin', status: 200, body: /^fastify admin \/admin\/x$/ },
  { name: 'ok/fastify: encoded unreserved characters arrive decoded', backend: 'fastify', host: 'fastify.test', path: '/%7Euser?q=%61', as: 'payments', status: 200, body: /^fastify public \/~user\?q=%61$/ },
  { name: 'fail/fastify: Host fastify.test. is the same routes (denied on admin)', backend: 'fastify', host: 'FASTIFY.test.', path: '/%61dmin/x', as: 'payments', status: 403, code: 'ACCESS_DENIED' },
];

const call = (proto: 'h1' | 'h2', c: Case): Promise<Reply> => {
  const cred = h.creds[c.as];
  const o = { ca: h.pki.root, cert: cred.fullchain, key: cred.key, path: c.path };
  if (proto === 'h2') return request2(h.gateway.url, { ...o, ...(c.host ? { headers: { ':authority': c.host } } : {}) });
  return request(h.gateway.url, { ...o, servername: 'localhost', ...(c.host ? { headers: { host: c.host } } : {}) });
};

for (const proto of ['h1', 'h2'] as const) {
  for (const c of cases) {
    test(`${c.name} (${proto})`, async (t) => {
      if (c.backend === 'nginx' && !nginx) return void t.skip('nginx is not installed');
      const r = await call(proto, c);
      assert.equal(r.status, c.status, r.body);
      if (c.code) assert.equal(r.json?.code, c.code);
      if (c.body) assert.match(r.body, c.body);
    });
  }
}

test('fail/HTTP/2: a Host field naming another host than :authority is refused', async () => {
  const cred = h.creds.payments;
  const r = await request2(h.gateway.url, { ca: h.pki.root, cert: cred.fullchain, key: cred.key, path: '/x', headers: { ':authority': 'gw.acme.internal', host: 'admin.acme.internal' } });
  assert.equal(r.status, 400);
  assert.equal(r.json?.code, 'HOST_INVALID');
});

test('fail/HTTP/1.1: two Host fields are refused', async () => {
  const tls = await import('node:tls');
  const cred = h.creds.payments;
  const s = tls.connect({ port: h.gateway.port, host: '127.0.0.1', servername: 'localhost', ca: h.pki.root, cert: cred.fullchain, key: cred.key, ALPNProtocols: ['http/1.1'] });
  s.on('error', () => {});
  let text = '';
  s.on('data', (b: Buffer) => (text += b.toString('latin1')));
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  s.write('GET /x HTTP/1.1\r\nHost: gw.acme.internal\r\nHost: admin.acme.internal\r\nConnection: close\r\n\r\n');
  await closed;
  assert.match(text, /^HTTP\/1\.1 400/);
  assert.match(text, /"code":"HOST_INVALID"/);
});
