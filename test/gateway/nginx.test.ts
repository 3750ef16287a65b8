/**
 * A real peer behind the gateway: nginx from Debian as the backend, requiring the gateway's client
 * certificate (`ssl_verify_client on`), started on a free port with a temp config and stopped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startHarness, startNginx } from './harness.ts';
import { names, id, request } from '../sdk/fixtures.ts';
import { freePort, requireTool } from '../helpers/tools.ts';

test('ok/nginx as the backend requires and accepts the gateway\'s client certificate', async (t) => {
  if (!requireTool(t, 'nginx', 'nginx')) return;
  const port = await freePort();
  const h = await startHarness((c) => {
    (c.routes as unknown[]).unshift({ name: 'nginx', pathPrefix: '/nginx', upstream: `https://127.0.0.1:${port}`, allow: [{ identities: [id('prod/*')] }] });
  });
  const cred = await h.pki.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'nginx');
  const clientTrust = h.pki.tc.file('nginx-client-trust.pem', h.pki.root + h.pki.clientCa);
  const nginx = await startNginx(path.join(h.dir, 'nginx'), port, `
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate ${cred.fullchainFile};
    ssl_certificate_key ${cred.keyFile};
    ssl_client_certificate ${clientTrust};
    ssl_verify_client on;
    ssl_verify_depth 2;
    location / {
      default_type text/plain;
      return 200 "nginx verify=$ssl_client_verify dn=$ssl_client_s_dn xfcc=$http_x_forwarded_client_cert\\n";
    }
  }`).catch(async (e) => {
    await h.close();
    throw e;
  });
  try {
    const direct = await request(`https://127.0.0.1:${port}/`, { ca: h.pki.root });
    assert.equal(direct.status, 400, 'nginx itself refuses a caller without a client certificate');
    const r = await request(`${h.gateway.url}/nginx/hello`, { ca: h.pki.root, cert: h.creds.payments.fullchain, key: h.creds.payments.key });
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /^nginx verify=SUCCESS dn=CN=gateway xfcc=By=spiffe:\/\/acme\.internal\/infra\/gateway;Hash=[0-9a-f]{64};Subject="CN=payments";URI=spiffe:\/\/acme\.internal\/prod\/payments/);
  } finally {
    await nginx.close();
    await h.close();
  }
});
