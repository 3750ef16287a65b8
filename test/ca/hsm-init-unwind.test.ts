/**
 * `initCa` that fails after making keys on a token leaves none behind (issue 18): here a write of
 * a public file is refused (its path is a folder), after every key was made and saved. The key
 * references it wrote are removed and the token keys destroyed, so pkcs11-tool (another process)
 * lists no mutual-* object on either token, and init can be run again once the cause is gone.
 * Before, the keys stayed on the tokens, named by nothing, and the references blocked a new init.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { initCa } from '../../src/ca/init-ca.ts';
import { homeLayout } from '../../src/ca/home.ts';
import { closeKeyStores } from '../../src/keys/index.ts';
import { makeToken, type SoftHsmToken } from '../helpers/softhsm.ts';
import { tempDir, TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { requireTool, run } from '../helpers/tools.ts';

function objects(tok: SoftHsmToken): string {
  const r = run('pkcs11-tool', ['--module', tok.module, '--token-label', tok.label, '--login', '--pin', tok.pin, '-O'], { env: tok.env });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('fail/init refused a write after making token keys: no key is left on the tokens', async (t) => {
  const tok = makeToken(t, { label: 'online' });
  const rootTok = makeToken(t, { label: 'root' });
  if (!tok || !rootTok || !requireTool(t, 'pkcs11-tool', 'opensc')) return;
  const dir = tempDir();
  t.after(async () => {
    await closeKeyStores();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const home = path.join(dir, 'home');
  const offlineDir = path.join(dir, 'offline');
  const l = homeLayout(home);
  // The server CA certificate cannot be written: a folder holds its name.
  fs.mkdirSync(l.serverCaCert, { recursive: true });
  const o = {
    home, offlineDir, trustDomain: 'acme.internal', name: 'Acme', passphrase: TEST_PASSPHRASE,
    keyStore: { kind: 'pkcs11' as const, uri: tok.tokenUri }, rootKeyStore: { kind: 'pkcs11' as const, uri: rootTok.tokenUri },
    keysConfig: { enrollmentTokenKey: 'store' as const },
  };
  await assert.rejects(initCa(o));
  assert.doesNotMatch(objects(tok), /mutual-/, 'no key left on the online token');
  assert.doesNotMatch(objects(rootTok), /mutual-/, 'no key left on the root token');
  for (const f of [l.serverCaKey, l.clientCaKey, path.join(l.keysDir, 'token.key.pem'), path.join(offlineDir, 'root.key.pem')]) {
    assert.ok(!fs.existsSync(f), `${f} was removed`);
  }
  assert.ok(!fs.existsSync(l.config));

  // The cause gone, init runs again.
  fs.rmSync(l.serverCaCert, { recursive: true });
  const r = await initCa(o);
  assert.ok(r.serverCaPem);
  assert.equal(objects(tok).match(/Private Key Object/g)?.length, 3, 'server CA, client CA, enrollment token key');
  assert.equal(objects(rootTok).match(/Private Key Object/g)?.length, 1);
});
