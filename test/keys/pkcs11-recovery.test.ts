/**
 * A token that disappears under load and comes back (issue 18): the token folder is renamed away in
 * the middle of 200 concurrent signatures (what SoftHSM2 shows as a removed token, see
 * test/helpers/softhsm.ts). Every signature is either valid or HSM_UNAVAILABLE, nothing is rejected
 * unhandled, and after the folder is back and the (injected) clock passes the reconnect pacing, the
 * same key signs again. Its own file: a removal takes away every token of the test file.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { spkiDer } from '../../src/core/algorithms.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { RECONNECT_INTERVAL_MS, closeKeyStores, generateSigner, keyLocation } from '../../src/keys/index.ts';
import { makeToken } from '../helpers/softhsm.ts';
import { requireTool, run } from '../helpers/tools.ts';

after(() => closeKeyStores());

const DATA = Buffer.from('a TBSCertificate, as far as the token knows');

test('a token removed mid-burst gives HSM_UNAVAILABLE, never a crash, and comes back without a restart', async (t) => {
  const tok = makeToken(t);
  if (!tok) return;
  let now = 1_000_000;
  const signer = generateSigner('p256', { store: { kind: 'pkcs11', uri: tok.tokenUri }, purpose: 'server-ca', now: () => now });
  const firstKey = spkiDer(signer.publicKey);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => void unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  t.after(() => process.off('unhandledRejection', onUnhandled));

  let done = 0;
  const burst = Array.from({ length: 200 }, () =>
    Promise.resolve(signer.sign(DATA)).finally(() => {
      // The token goes after the 20th signature: the rest are queued for a session or in flight.
      if (++done === 20) tok.remove();
    }),
  );
  const results = await Promise.allSettled(burst);
  let valid = 0;
  let unavailable = 0;
  for (const r of results) {
    if (r.status === 'fulfilled') {
      assert.ok(crypto.verify('sha256', DATA, signer.publicKey, r.value), 'a signature made is a valid one');
      valid++;
    } else {
      assert.ok(isMutualError(r.reason, 'HSM_UNAVAILABLE'), String(r.reason));
      // The detail names what the token said (a CKR), for the operator.
      assert.match(String(r.reason.fields.ckr), /^CKR_/);
      unavailable++;
    }
  }
  t.diagnostic(`${valid} valid, ${unavailable} HSM_UNAVAILABLE`);
  assert.ok(valid >= 20, `${valid} valid`);
  assert.ok(unavailable > 0, 'the removal was noticed');

  // Down, and no reconnect is due: refused at once, without touching the module.
  await assert.rejects(Promise.resolve(signer.sign(DATA)), (e) => isMutualError(e, 'HSM_UNAVAILABLE'));
  assert.equal((await signer.health!()).available, false);

  // Due, but the token is still gone: the attempt fails and the next is paced again.
  now += RECONNECT_INTERVAL_MS;
  const stillGone = await signer.health!();
  assert.equal(stillGone.available, false);
  assert.match(stillGone.detail ?? '', /^HSM_UNAVAILABLE/);

  tok.restore();
  assert.equal((await signer.health!()).available, false, 'the attempt after a failed one waits for the pacing');
  now += RECONNECT_INTERVAL_MS;
  assert.deepEqual(await signer.health!(), { available: true });
  const sig = await signer.sign(DATA);
  assert.ok(crypto.verify('sha256', DATA, signer.publicKey, sig));
  assert.deepEqual(spkiDer(signer.publicKey), firstKey);
  // Signing in parallel works again through the re-opened pool.
  const again = await Promise.all(Array.from({ length: 20 }, () => signer.sign(DATA)));
  for (const s of again) assert.ok(crypto.verify('sha256', DATA, signer.publicKey, s));
  assert.deepEqual(unhandled, []);

  // Taken away while idle: health() notices by itself, before any signature fails.
  tok.remove();
  const idle = await signer.health!();
  assert.equal(idle.available, false, 'health() checks the token, not a flag');
  tok.restore();
  now += RECONNECT_INTERVAL_MS;
  assert.deepEqual(await signer.health!(), { available: true });
});

test('fail/after a reconnect, another key under the same label and id signs nothing', async (t) => {
  const tok = makeToken(t);
  if (!tok || !requireTool(t, 'pkcs11-tool', 'opensc')) return;
  await closeKeyStores();
  let now = 1_000_000;
  const signer = generateSigner('p256', { store: { kind: 'pkcs11', uri: tok.tokenUri }, purpose: 'root', now: () => now });
  const ref = path.join(tok.dir, 'swap.key.pem');
  signer.save(ref, '');
  const loc = keyLocation(ref);
  assert.ok(loc.kind === 'pkcs11');
  const label = /object=([^;?]+)/.exec(loc.uri)![1];
  const id = /id=([^;?]+)/.exec(loc.uri)![1].replace(/%/g, '');
  await signer.sign(DATA);
  // Another process replaces the key: same label, same id, another key pair.
  const tool = (args: string[]) => {
    const r = run('pkcs11-tool', ['--module', tok.module, '--token-label', tok.label, '--login', '--pin', tok.pin, ...args], { env: tok.env });
    assert.equal(r.status, 0, r.stderr);
  };
  tool(['--delete-object', '--type', 'privkey', '--label', label]);
  tool(['--delete-object', '--type', 'pubkey', '--label', label]);
  tool(['--keypairgen', '--key-type', 'EC:prime256v1', '--label', label, '--id', id, '--sensitive']);
  const first = await Promise.allSettled([signer.sign(DATA)]);
  if (first[0].status === 'fulfilled') assert.fail('the old key handle signed after the key was deleted');
  assert.ok(isMutualError(first[0].reason, 'HSM_UNAVAILABLE'), String(first[0].reason));
  now += RECONNECT_INTERVAL_MS;
  await assert.rejects(Promise.resolve(signer.sign(DATA)), (e) => isMutualError(e, 'HSM_UNAVAILABLE') && /another public key/.test(String(e.fields.detail)));
  assert.equal((await signer.health!()).available, false);
});

test('ok/closeKeyStores lets the process exit', async (t) => {
  const tok = makeToken(t);
  if (!tok) return;
  const keys = path.resolve(import.meta.dirname, '../../src/keys/index.ts');
  const script = `
    import { generateSigner, closeKeyStores } from ${JSON.stringify(keys)};
    const s = generateSigner('p256', { store: { kind: 'pkcs11', uri: process.env.TOKEN_URI }, ephemeral: true });
    await s.sign(Buffer.from('x'));
    await closeKeyStores();
    console.log('signed');
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...tok.env, TOKEN_URI: tok.tokenUri }, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.signal, null, 'the process ended by itself');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'signed');
});
