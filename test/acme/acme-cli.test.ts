/**
 * `mutual acme eab create|list` as a real subprocess on a test CA: the key is stored in the CA's
 * database with the HMAC key printed once (and never listed), its names checked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errorCode, explain, json, mutual } from '../cli/cli-helper.ts';
import { makeTestCa } from '../helpers/test-ca.ts';

test('ok/eab-create-and-list', async () => {
  const tc = await makeTestCa();
  try {
    const created = await mutual(['--json', '--home', tc.home, 'acme', 'eab', 'create', '--names', 'api.*.acme.internal,web.acme.internal', '--expires', '30d']);
    assert.equal(created.status, 0, explain(created));
    const k = json<{ keyId: string; hmacKey: string; names: string[]; expiresAt: string }>(created);
    assert.deepEqual(k.names, ['api.*.acme.internal', 'web.acme.internal']);
    assert.equal(Buffer.from(k.hmacKey, 'base64url').length, 32);
    const stored = await tc.ca.store.acme.eabKey(k.keyId);
    assert.equal(stored?.hmacKey.toString('base64url'), k.hmacKey, 'the key in the CA\'s database');
    assert.ok(Math.abs(new Date(k.expiresAt).getTime() - Date.now() - 30 * 86_400_000) < 60_000);
    const human = await mutual(['--home', tc.home, 'acme', 'eab', 'create', '--names', '10.1.2.3', '--client']);
    assert.equal(human.status, 0, explain(human));
    assert.match(human.stdout, /EAB key id: +eab-[\w-]+\nHMAC key: +[\w-]{43}\n/);
    const listed = await mutual(['--json', '--home', tc.home, 'acme', 'eab', 'list']);
    assert.equal(listed.status, 0, explain(listed));
    const rows = json<{ keyId: string; clientProfile: boolean; hmacKey?: string }[]>(listed);
    assert.equal(rows.length, 2);
    assert.ok(rows.every((r) => r.hmacKey === undefined), 'HMAC keys are never listed');
    assert.deepEqual(rows.map((r) => r.clientProfile).sort(), [false, true]);
    assert.equal(listed.stdout.includes(k.hmacKey), false);
  } finally {
    await tc.close();
  }
});

test('fail/eab-create-bad-names', async () => {
  const tc = await makeTestCa();
  try {
    const r = await mutual(['--json', '--home', tc.home, 'acme', 'eab', 'create', '--names', 'api.**.acme.internal']);
    assert.notEqual(r.status, 0);
    assert.equal(errorCode(r), 'USAGE_INVALID', explain(r));
    assert.deepEqual(await tc.ca.store.acme.eabKeys(), [], 'nothing stored');
    const none = await mutual(['--json', '--home', `${tc.dir}/nowhere`, 'acme', 'eab', 'list']);
    assert.equal(errorCode(none), 'CA_NOT_INITIALIZED', explain(none));
  } finally {
    await tc.close();
  }
});
