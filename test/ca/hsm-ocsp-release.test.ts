/**
 * OCSP responder keys made on the token (`keys.ocspResponderKeys: store`, session objects) do not
 * pile up in a long-lived server: a rotation's replaced key is destroyed once no request holds its
 * responder (a request that took it before the swap still signs with it), and closing the
 * responders destroys the rest. Counted with this process's own view of the token, since session
 * objects are invisible to pkcs11-tool. Before keys were released, every rotation left one more.
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { OcspResponders, RESPONDER_CERT_SECONDS } from '../../src/ca/ocsp-responders.ts';
import { buildOcspRequest, encodeCertId, ocspIssuerHashes, parseOcspRequest } from '../../src/core/ocsp.ts';
import { closeKeyStores } from '../../src/keys/index.ts';
import { makeToken, privateKeyLabels } from '../helpers/softhsm.ts';
import { makeTestCa } from '../helpers/test-ca.ts';
import { tick } from '../helpers/wait.ts';

test('ok/a replaced responder key is destroyed once unused; close destroys the rest', async (t) => {
  const tok = makeToken(t);
  if (!tok) return;
  let now = Math.floor(Date.now() / 1000) * 1000;
  const clock = (): Date => new Date(now);
  const tc = await makeTestCa({ keyStore: { kind: 'pkcs11', uri: tok.tokenUri }, keysConfig: { ocspResponderKeys: 'store' }, clock });
  t.after(async () => {
    mock.timers.reset();
    await tc.close();
    await closeKeyStores();
  });
  const ocspKeys = async () => (await privateKeyLabels(tok)).filter((l) => l.startsWith('mutual-ocsp-'));
  mock.timers.enable({ apis: ['setTimeout'] });
  const responders = await OcspResponders.create({ ca: tc.ca, now: clock });
  assert.equal((await ocspKeys()).length, 2, 'one per intermediate');

  const id = parseOcspRequest(buildOcspRequest([encodeCertId('sha1', ocspIssuerHashes(tc.ca.server.info.der), '01')])).requests[0];
  const held = responders.acquire(id)!;
  now += (RESPONDER_CERT_SECONDS / 2) * 1000;
  responders.maybeRotate();
  for (const deadline = Date.now() + 30_000; responders.find(id) === held && Date.now() < deadline;) await tick();
  assert.notEqual(responders.find(id), held, 'rotated');
  for (let i = 0; i < 20; i++) await tick();
  // The client CA's old key is gone; the server CA's is held by the request.
  assert.equal((await ocspKeys()).length, 3);
  const single = held.responder.encodeSingle({ status: 'good', certId: id.raw }, clock(), new Date(now + 3_600_000));
  await held.responder.sign([single], clock());

  responders.release(held);
  for (let i = 0; i < 20; i++) await tick();
  assert.equal((await ocspKeys()).length, 2, 'released once the request let go');

  responders.close();
  for (let i = 0; i < 20; i++) await tick();
  assert.deepEqual(await ocspKeys(), []);
});
