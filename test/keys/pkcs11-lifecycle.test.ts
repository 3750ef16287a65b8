/**
 * Token keys nobody wants are destroyed, not left on the token (issue 18): a generated key that was
 * never saved is discarded (private and public objects: pkcs11-tool, another process, sees neither),
 * never while the key reference it was saved to exists; an ephemeral key (a session object) is
 * released, and signs nothing afterwards. An ephemeral key made while every session of the pool is
 * busy outlives the extra session it was made in (PKCS#11 destroys a session object with the
 * session that made it).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { closeKeyStores, generateSigner } from '../../src/keys/index.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { makeToken, privateKeyLabels, type SoftHsmToken } from '../helpers/softhsm.ts';
import { requireTool, run } from '../helpers/tools.ts';
import { tempDir } from '../helpers/test-ca.ts';

const dir = tempDir('mutual-p11-life-');
fs.chmodSync(dir, 0o700);
after(async () => {
  await closeKeyStores();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** pkcs11-tool's listing of every object on the token, as another process sees it. */
function objects(tok: SoftHsmToken): string {
  const r = run('pkcs11-tool', ['--module', tok.module, '--token-label', tok.label, '--login', '--pin', tok.pin, '-O'], { env: tok.env });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

/** Makes a key and returns it with the label it got (the one new private key label this process sees). */
async function made(tok: SoftHsmToken, o: { ephemeral?: boolean; poolSize?: number } = {}) {
  const before = new Set(await privateKeyLabels(tok));
  const key = generateSigner('p256', { store: { kind: 'pkcs11', uri: tok.tokenUri }, purpose: 'server-ca', ...o });
  const label = (await privateKeyLabels(tok)).find((l) => !before.has(l))!;
  assert.ok(label, 'a new key');
  return { key, label };
}

test('token keys: discard and release', async (t) => {
  const tok = makeToken(t);
  if (!tok || !requireTool(t, 'pkcs11-tool', 'opensc')) return;

  await t.test('ok/a key never saved is discarded: private and public objects', async () => {
    const { key, label } = await made(tok);
    assert.equal(objects(tok).split(label).length - 1, 2, 'a private and a public key object');
    await key.discard();
    assert.ok(!objects(tok).includes(label));
    await key.discard();
    await assert.rejects(async () => key.sign(Buffer.from('x')), (e) => isMutualError(e, 'HSM_KEY_NOT_FOUND'));
  });

  await t.test('fail/a key whose reference exists is not discarded: TypeError, the key stays', async () => {
    const { key, label } = await made(tok);
    const ref = path.join(dir, 'saved.key.pem');
    key.save(ref, '');
    await assert.rejects(async () => key.discard(), TypeError);
    assert.ok(objects(tok).includes(label));
    fs.rmSync(ref);
    await key.discard();
    assert.ok(!objects(tok).includes(label));
  });

  await t.test('ok/an ephemeral key is released; a persistent one is not (TypeError)', async () => {
    const { key, label } = await made(tok, { ephemeral: true });
    await key.sign(Buffer.from('x'));
    await key.release();
    assert.ok(!(await privateKeyLabels(tok)).includes(label));
    // Its health says so without asking the token: a missing key there would mark the module down.
    assert.equal((await key.health!()).available, false);
    const other = await made(tok);
    assert.deepEqual(await other.key.health!(), { available: true });
    await other.key.discard();
    const persistent = await made(tok);
    await assert.rejects(async () => persistent.key.release(), TypeError);
    await persistent.key.discard();
  });

  await t.test('ok/a key in memory: discard and release have nothing to do', async () => {
    const key = generateSigner('p256');
    await key.discard();
    await key.release();
  });
});

test('ok/an ephemeral key made while the pool is busy outlives the extra session', async (t) => {
  // Its own token: the pool size is set by the first opener of a token.
  const tok = makeToken(t);
  if (!tok) return;
  // SoftHSM2 lists its tokens at C_Initialize: this one was made after the module was.
  await closeKeyStores();
  const busy = generateSigner('p256', { store: { kind: 'pkcs11', uri: tok.tokenUri }, purpose: 'server-ca', poolSize: 1 });
  // The one session is taken now, synchronously, for the signature running on libuv's pool.
  const running = busy.sign(Buffer.from('busy'));
  const eph = generateSigner('p256', { store: { kind: 'pkcs11', uri: tok.tokenUri }, purpose: 'ocsp', ephemeral: true });
  await running;
  assert.ok((await eph.sign(Buffer.from('still here'))).length > 0);
  await eph.release();
  await busy.discard();
});
