/**
 * Every CLI command that opens keys on a token ends its token sessions and finalizes the module
 * before it returns (closeKeyStores), whatever it ran or however it failed; `mutual serve` that
 * fails to start as well. Each command runs in a fresh process (hsm-close-child.ts), which reports
 * the module's state after run() returned.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { runAsync } from '../helpers/tools.ts';
import { closeKeyStores } from '../../src/keys/index.ts';
import { makeToken } from '../helpers/softhsm.ts';
import { makeTestCa } from '../helpers/test-ca.ts';

test('ok/commands close the token sessions they opened', async (t) => {
  const tok = makeToken(t);
  if (!tok) return;
  const tc = await makeTestCa({ keyStore: { kind: 'pkcs11', uri: tok.tokenUri }, keysConfig: { enrollmentTokenKey: 'store', ocspResponderKeys: 'store' } });
  await tc.ca.close();
  await closeKeyStores();
  const busy = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => busy.once('listening', r));
  t.after(async () => {
    busy.close();
    await closeKeyStores();
    await tc.close();
  });
  const child = path.join(import.meta.dirname, 'hsm-close-child.ts');
  const out = (name: string) => path.join(tc.dir, name);
  const cases: [string, string[]][] = [
    ['token', ['token', 'spiffe://acme.internal/prod/x', '--out', out('tok')]],
    ['issue', ['issue', 'server', 'api.acme.internal', '--out', out('api')]],
    ['crl', ['crl', '--issuer', 'client', '--out', out('client.crl')]],
    ['keys', ['keys']],
    ['intermediate csr --new-key', ['intermediate', 'csr', '--role', 'client', '--new-key', '--out', out('client.csr')]],
    ['demo (on this CA)', ['demo']],
    ['fail/serve on a port in use', ['serve', '--listen', `127.0.0.1:${(busy.address() as net.AddressInfo).port}`]],
  ];
  for (const [name, args] of cases) {
    await t.test(name, async () => {
      const r = await runAsync(process.execPath, [child, tok.module, '--home', tc.home, ...args], { env: { ...tok.env, MUTUAL_CA_PASSPHRASE: '' } });
      assert.match(r.stdout, /module-up: (true|false)\n$/, r.stdout + r.stderr);
      assert.match(r.stdout, /module-up: false\n$/, `${name} left the token module initialized\n${r.stdout}${r.stderr}`);
    });
  }
});
