/**
 * The service-to-service example of docs/sdk.md, run as written (only `mutual/sdk` is pointed at
 * the source), with the certificate files the doc's commands make.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makePki, names, id, runAsync } from './fixtures.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('ok/the service-to-service example of docs/sdk.md runs', async () => {
  const doc = fs.readFileSync(path.join(root, 'docs/sdk.md'), 'utf8');
  const m = /```ts\n(\/\/ example: service-to-service\n[\s\S]*?)```/.exec(doc);
  assert.ok(m, 'the example block is in docs/sdk.md');
  const pki = await makePki();
  try {
    const certs = path.join(pki.tc.dir, 'certs');
    const put = (f: string, data: string | Buffer) => {
      fs.mkdirSync(path.dirname(path.join(certs, f)), { recursive: true });
      fs.writeFileSync(path.join(certs, f), data);
    };
    const orders = await pki.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'orders');
    const payments = await pki.issue('client', names({ uri: [id('prod/payments')] }), 'payments');
    put('orders/fullchain.pem', orders.fullchain);
    put('orders/key.pem', orders.key);
    put('payments/fullchain.pem', payments.fullchain);
    put('payments/key.pem', payments.key);
    put('root.pem', pki.root);
    put('client-ca.pem', pki.clientCa);
    put('server-ca.pem', pki.serverCa);
    put('client.crl', await pki.crl());
    const file = path.join(pki.tc.dir, 'example.ts');
    fs.writeFileSync(file, m[1].replace("'mutual/sdk'", JSON.stringify(path.join(root, 'src/sdk/index.ts'))));
    const r = await runAsync(process.execPath, [file], { env: { ...process.env, CERTS: certs } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), `200 hello ${id('prod/payments')}`);
  } finally {
    await pki.close();
  }
});
