/**
 * Issue 14, item 1: the token signing key. `mutual serve &` then `mutual token` (the quickstart)
 * both made keys/token.key.pem on first use, and one died with KEY_FILE_EXISTS; a replica started
 * from a copy of the state folder made a key of its own and refused the others' tokens. Real
 * processes on real state folders.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { initCa } from '../../src/ca/init-ca.ts';
import { homeLayout } from '../../src/ca/home.ts';
import { tokenKeyFile } from '../../src/ca/tokens.ts';
import { enroll } from '../../src/sdk/ca-client.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { TEST_PASSPHRASE, tempDir } from '../helpers/test-ca.ts';
import { dropSchema, freshSchema, pgSkip, pgUrl, send } from '../helpers/server.ts';
import { errorCode, explain, mutual, startServe, stopProcess, type CliResult } from './cli-helper.ts';
import { assertEncryptedKeyFile } from '../helpers/key-files.ts';

const dir = tempDir('mutual-token-key-');
/** A CA made by init, copied for each case. */
const base = path.join(dir, 'base');

before(async () => {
  await initCa({ home: base, offlineDir: path.join(dir, 'base-offline'), trustDomain: 'acme.internal', name: 'Acme Test', passphrase: TEST_PASSPHRASE });
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A copy of the base CA, as `cp -a` would make it (another replica, or a home made before init made the key). */
function copyHome(name: string, o: { withoutTokenKey?: boolean; from?: string } = {}): string {
  const home = path.join(dir, name);
  fs.cpSync(o.from ?? base, home, { recursive: true });
  for (const d of [home, homeLayout(home).keysDir, homeLayout(home).adminDir]) fs.chmodSync(d, 0o700);
  if (o.withoutTokenKey) fs.rmSync(tokenKeyFile(homeLayout(home).keysDir), { force: true });
  return home;
}

function expectOk(r: CliResult): void {
  assert.equal(r.status, 0, explain(r));
}

describe('issue 14 item 1: one token key per CA, made safely', () => {
  test('ok/init-makes-the-token-key', () => {
    const file = tokenKeyFile(homeLayout(base).keysDir);
    assertEncryptedKeyFile(fs.readFileSync(file, 'utf8'), TEST_PASSPHRASE);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  });

  // A home made before init made the key: two replicas and three `mutual token`s all start at
  // once and all make it on first use. Several rounds, since a race is a matter of timing.
  for (const round of [1, 2, 3, 4]) {
    test(`ok/serve-serve-and-token-racing-on-a-home-without-the-key/round-${round}`, async () => {
      const home = copyHome(`race-${round}`, { withoutTokenKey: true });
      const tokenFiles = [1, 2, 3].map((i) => path.join(dir, `token-${round}-${i}`));
      const [a, b, ...made] = await Promise.allSettled([
        startServe(home), startServe(home),
        ...tokenFiles.map((f) => mutual(['--json', '--home', home, 'token', 'spiffe://acme.internal/prod/payments', '--ttl', '10m', '--out', f])),
      ]);
      try {
        assert.equal(a.status, 'fulfilled', a.status === 'rejected' ? String(a.reason) : '');
        assert.equal(b.status, 'fulfilled', b.status === 'rejected' ? String(b.reason) : '');
        for (const t of made) expectOk((t as PromiseFulfilledResult<CliResult>).value);
        // No leftover temporary key files beside the one key.
        assert.deepEqual(fs.readdirSync(homeLayout(home).keysDir).filter((f) => f.includes('token')), ['token.key.pem']);
        // Whoever made the key, every token verifies at either server.
        for (const [i, f] of tokenFiles.entries()) {
          const s = (i % 2 ? a : b) as PromiseFulfilledResult<{ url: string }>;
          expectOk(await mutual(['--json', 'ca', 'enroll', '--ca-url', s.value.url, '--token-file', f, '--out', path.join(dir, `enrolled-${round}-${i}`)]));
        }
      } finally {
        for (const s of [a, b]) if (s.status === 'fulfilled') await stopProcess(s.value.child);
      }
    });
  }

  test('ok/a-replica-copied-right-after-init-accepts-the-tokens-of-the-original', async () => {
    const original = copyHome('original');
    const replica = copyHome('replica');
    const tokenFile = path.join(dir, 'token-replica');
    expectOk(await mutual(['--json', '--home', original, 'token', 'spiffe://acme.internal/prod/orders', '--out', tokenFile]));
    const s = await startServe(replica);
    try {
      expectOk(await mutual(['--json', 'ca', 'enroll', '--ca-url', s.url, '--token-file', tokenFile, '--out', path.join(dir, 'enrolled-replica')]));
      assert.equal(fs.readFileSync(tokenKeyFile(homeLayout(replica).keysDir), 'utf8'), fs.readFileSync(tokenKeyFile(homeLayout(original).keysDir), 'utf8'));
    } finally {
      await stopProcess(s.child);
    }
  });

  test('ok/two-postgresql-replicas-started-together-on-a-fresh-home-and-its-copy-share-the-token-key', { skip: pgSkip() }, async () => {
    const schema = freshSchema();
    const first = path.join(dir, 'pg-first');
    try {
      await initCa({ home: first, offlineDir: path.join(dir, 'pg-offline'), trustDomain: 'acme.internal', name: 'Acme Test', passphrase: TEST_PASSPHRASE, database: { url: pgUrl(), schema } });
      // The second replica's folder is copied right after init, before anything ran.
      const second = copyHome('pg-second', { from: first });
      const started = await Promise.allSettled([startServe(first), startServe(second)]);
      try {
        for (const s of started) assert.equal(s.status, 'fulfilled', s.status === 'rejected' ? String(s.reason) : '');
        const [a, b] = started.map((s) => (s as PromiseFulfilledResult<{ url: string }>).value);
        const tokens = [path.join(dir, 'pg-token-1'), path.join(dir, 'pg-token-2')];
        for (const f of tokens) expectOk(await mutual(['--json', '--home', first, 'token', 'spiffe://acme.internal/prod/shared', '--out', f]));
        // A token made on one replica's folder is good at either replica.
        expectOk(await mutual(['--json', 'ca', 'enroll', '--ca-url', a.url, '--token-file', tokens[0], '--out', path.join(dir, 'pg-enrolled-a')]));
        expectOk(await mutual(['--json', 'ca', 'enroll', '--ca-url', b.url, '--token-file', tokens[1], '--out', path.join(dir, 'pg-enrolled-b')]));
      } finally {
        for (const s of started) if (s.status === 'fulfilled') await stopProcess(s.value.child);
      }
    } finally {
      await dropSchema(schema);
    }
  });

  test('fail/an-empty-token-is-TOKEN_MISSING-in-the-cli-the-sdk-and-the-server', async () => {
    const home = copyHome('empty');
    const empty = path.join(dir, 'empty-token');
    fs.writeFileSync(empty, '\n', { mode: 0o600 });
    const s = await startServe(home);
    try {
      const r = await mutual(['--json', 'ca', 'enroll', '--ca-url', s.url, '--token-file', empty, '--out', path.join(dir, 'enrolled-empty')]);
      assert.equal(r.status, 3, explain(r));
      assert.equal(errorCode(r), 'TOKEN_MISSING', explain(r));
      for (const token of ['', '  \n']) {
        await assert.rejects(enroll({ caUrl: s.url, token }), (e) => isMutualError(e, 'TOKEN_MISSING'));
      }
      // A whole token as a file holds it, newline included, is taken.
      const made = await mutual(['--home', home, 'token', 'spiffe://acme.internal/prod/sdk']);
      expectOk(made);
      assert.ok(made.stdout.endsWith('\n'));
      assert.equal((await enroll({ caUrl: s.url, token: made.stdout })).identity, 'spiffe://acme.internal/prod/sdk');
      const a = await send(`${s.url}/v1/enroll`, { body: { csr: 'x' }, headers: { authorization: 'Bearer ' }, tls: { ca: fs.readFileSync(homeLayout(home).rootCert, 'utf8') } });
      assert.equal(a.status, 401);
      assert.equal(a.code, 'TOKEN_MISSING');
    } finally {
      await stopProcess(s.child);
    }
  });
});
