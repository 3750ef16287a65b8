/**
 * What only the PostgreSQL store has to do: several replicas on one schema. Each case opens two
 * (or more) stores on a fresh schema, as two `mutual serve` processes would, and drops it afterwards.
 * Needs MUTUAL_TEST_PG (skips without it; fails without it under MUTUAL_INTEROP=require).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { verifyAuditLog } from '../../src/ca/audit.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { openPostgresStore, type PostgresStore } from '../../src/store/postgres-store.ts';
import { POSTGRES_MIGRATIONS } from '../../src/store/migrations.ts';
import { dropSchema, freshSchema, ISSUER, NOW, openPg, PG_URL, pgSkip, record, revocation, splitEntries, type OpenOptions } from './fixtures.ts';

/** Opens `n` replicas on a fresh schema, runs `fn`, closes them and drops the schema. */
async function withReplicas(n: number, o: OpenOptions, fn: (r: PostgresStore[], schema: string) => Promise<void>): Promise<void> {
  if (!PG_URL) throw new Error('MUTUAL_TEST_PG is not set and MUTUAL_INTEROP=require: set MUTUAL_TEST_PG=postgres://... to run');
  const schema = freshSchema();
  const replicas: PostgresStore[] = [];
  try {
    for (let i = 0; i < n; i++) replicas.push(await openPg(schema, o));
    await fn(replicas, schema);
  } finally {
    await Promise.all(replicas.map((r) => r.close()));
    await dropSchema(schema);
  }
}

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

describe('postgres replicas', { skip: pgSkip() }, () => {
  test('ok/concurrent-batches-from-two-replicas', async () => {
    await withReplicas(2, {}, async ([a, b]) => {
      const BATCHES = 20;
      const SIZE = 50;
      const batches = Array.from({ length: 2 * BATCHES }, () => Array.from({ length: SIZE }, () => record()));
      // Interleaved: A, B, A, B ... all in flight at once.
      await Promise.all(batches.map((batch, i) => (i % 2 ? b : a).recordIssued(batch)));
      const total = 2 * BATCHES * SIZE;
      const { rows } = await a.pool.query('SELECT count(*) AS n, count(DISTINCT serial) AS d FROM certificates');
      assert.deepEqual([Number(rows[0].n), Number(rows[0].d)], [total, total]);
      // The chain is one line through both replicas' appends, whichever replica reads it.
      const va = await verifyAuditLog(a);
      assert.equal(va.entries, total);
      assert.deepEqual(await verifyAuditLog(b), va);
      // Each batch's audit entries are consecutive: batches never interleave inside the chain.
      const batchOf = new Map(batches.flatMap((batch, i) => batch.map((r) => [r.serial, i] as const)));
      const order: number[] = [];
      for await (const e of a.auditEntries()) order.push(batchOf.get(e.target)!);
      const runs = order.filter((x, i) => i === 0 || x !== order[i - 1]);
      assert.equal(runs.length, 2 * BATCHES);
      assert.equal(new Set(runs).size, 2 * BATCHES);
    });
  });

  test('fail/same-serial-from-two-replicas-at-once', async () => {
    await withReplicas(2, {}, async ([a, b]) => {
      for (let i = 0; i < 10; i++) {
        const clash = record();
        const results = await Promise.allSettled([
          a.recordIssued([record(), clash]),
          b.recordIssued([record({ serial: clash.serial }), record()]),
        ]);
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
        assert.ok(isMutualError(failed.reason, 'STORE_FAILED'));
      }
      const { rows } = await a.pool.query('SELECT count(*) AS n FROM certificates');
      assert.equal(Number(rows[0].n), 20);
      assert.equal((await verifyAuditLog(b)).entries, 20);
    });
  });

  test('ok/job-lock-held-on-a-skips-b', async () => {
    await withReplicas(2, {}, async ([a, b]) => {
      const started = deferred();
      const finish = deferred();
      const ranA = a.withJobLock('crl-regen', async () => {
        started.resolve();
        await finish.promise;
      });
      await started.promise;
      let ranB = false;
      assert.equal(await b.withJobLock('crl-regen', async () => void (ranB = true)), false);
      assert.equal(ranB, false);
      // Another job name is not blocked; the same name is, even on the replica holding it (another connection).
      assert.equal(await b.withJobLock('ocsp-presign', async () => {}), true);
      assert.equal(await a.withJobLock('crl-regen', async () => {}), false);
      finish.resolve();
      assert.equal(await ranA, true);
      assert.equal(await b.withJobLock('crl-regen', async () => void (ranB = true)), true);
      assert.equal(ranB, true);
    });
  });

  test('ok/job-locks-are-per-schema', async () => {
    await withReplicas(1, {}, async ([a]) => {
      await withReplicas(1, {}, async ([other]) => {
        const started = deferred();
        const finish = deferred();
        const held = a.withJobLock('crl-regen', async () => {
          started.resolve();
          await finish.promise;
        });
        await started.promise;
        assert.equal(await other.withJobLock('crl-regen', async () => {}), true);
        finish.resolve();
        assert.equal(await held, true);
      });
    });
  });

  test('ok/job-connection-killed-mid-job-does-not-crash-and-frees-the-lock', async () => {
    await withReplicas(2, {}, async ([a, b], schema) => {
      const ran = await a.withJobLock('crl-regen', async () => {
        // The replica's lock connection dies while the job runs (server restart, network, admin).
        const { rows } = await b.pool.query(
          `SELECT pg_terminate_backend(pid) AS ok FROM pg_locks
           WHERE locktype = 'advisory' AND granted AND classid::bigint = $2 AND objid::bigint = (hashtext($1)::bigint & 4294967295)`,
          [`${schema}/crl-regen`, 0x6d757403]); // the store's job lock class
        assert.deepEqual(rows, [{ ok: true }]);
        await new Promise((r) => setTimeout(r, 50));
      });
      assert.equal(ran, true);
      assert.equal(await b.withJobLock('crl-regen', async () => {}), true);
      // A's pool replaced the dead connection.
      await a.recordIssued([record()]);
      assert.equal(await a.withJobLock('crl-regen', async () => {}), true);
    });
  });

  test('ok/revocation-on-a-visible-to-b', async () => {
    await withReplicas(2, {}, async ([a, b]) => {
      const r = record();
      await a.recordIssued([r, record()]);
      const { cursor } = await b.revocationsSince(0);
      assert.equal(cursor, 2);
      const rev = revocation(r, 'keyCompromise');
      await a.recordRevocation(rev, 'admin');
      const seen = await b.revocationsSince(cursor);
      assert.deepEqual(seen, { cursor: 3, items: [{ issuerKeyId: ISSUER, serial: r.serial, revokedAt: rev.revokedAt, reason: 'keyCompromise' }] });
      assert.deepEqual(splitEntries(await b.crlEntries(ISSUER, NOW)), [rev.crlEntry.toString('hex')]);
      assert.equal((await b.getCertificate(r.serial))?.status, 'revoked');
      await assert.rejects(b.recordRevocation(rev, 'admin'), (e) => isMutualError(e, 'CERT_ALREADY_REVOKED'));
    });
  });

  test('ok/concurrent-revocations-on-both-replicas-pack-each-entry-once', async () => {
    await withReplicas(2, { crlPackThreshold: 7 }, async ([a, b]) => {
      const recs = Array.from({ length: 40 }, () => record());
      await a.recordIssued(recs);
      const revs = recs.map((r) => revocation(r));
      await Promise.all(revs.map((rev, i) => (i % 2 ? b : a).recordRevocation(rev, 'admin')));
      const want = revs.map((r) => r.crlEntry.toString('hex')).sort();
      assert.deepEqual(splitEntries(await a.crlEntries(ISSUER, NOW)), want);
      assert.deepEqual(splitEntries(await b.crlEntries(ISSUER, NOW)), want);
      const { rows } = await a.pool.query('SELECT (SELECT coalesce(sum(count), 0) FROM crl_chunks) AS packed, (SELECT count(*) FROM crl_entries) AS loose, (SELECT count(*) FROM crl_chunks) AS chunks');
      assert.equal(Number(rows[0].packed) + Number(rows[0].loose), 40);
      assert.equal(Number(rows[0].chunks), 5);
      assert.equal((await verifyAuditLog(a)).entries, 80);
      // Every revocation reached the cursor feed, once.
      assert.equal(new Set((await b.revocationsSince(0)).items.map((i) => i.serial)).size, 40);
    });
  });

  test('ok/token-replayed-on-the-other-replica-is-refused', async () => {
    await withReplicas(2, {}, async ([a, b]) => {
      const exp = new Date(Date.now() + 60_000);
      for (let i = 0; i < 20; i++) {
        const got = await Promise.all([a.consumeToken(`jti-${i}`, exp, 'x'), b.consumeToken(`jti-${i}`, exp, 'x')]);
        assert.equal(got.filter(Boolean).length, 1, `jti-${i}`);
      }
      assert.equal((await verifyAuditLog(a)).entries, 20);
    });
  });

  test('ok/crl-numbers-unique-across-replicas', async () => {
    await withReplicas(2, {}, async ([a, b]) => {
      const got = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? b : a).nextCrlNumber(ISSUER)));
      assert.deepEqual(got.sort((x, y) => Number(x - y)), Array.from({ length: 40 }, (_, i) => BigInt(i + 1)));
    });
  });

  test('ok/replicas-starting-together-migrate-once', async () => {
    const schema = freshSchema();
    const stores: PostgresStore[] = [];
    try {
      const opened = await Promise.allSettled(Array.from({ length: 4 }, () => openPg(schema)));
      for (const o of opened) if (o.status === 'fulfilled') stores.push(o.value);
      assert.equal(stores.length, 4, String(opened.find((o) => o.status === 'rejected')?.reason));
      const { rows } = await stores[0].pool.query('SELECT version FROM schema_migrations ORDER BY version');
      assert.deepEqual(rows.map((r) => r.version), POSTGRES_MIGRATIONS.map((m) => m.version));
      // Opening again finds nothing to do and the data in place.
      await stores[0].recordIssued([record()]);
      stores.push(await openPg(schema));
      assert.equal((await verifyAuditLog(stores[4])).entries, 1);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await dropSchema(schema);
    }
  });

  test('fail/bad-options-are-type-errors', async () => {
    const cases: [string, Parameters<typeof openPostgresStore>[0]][] = [
      ['no connection string', { connectionString: '' }],
      ['schema with a quote', { connectionString: PG_URL!, schema: 'x"; DROP TABLE audit; --' }],
      ['uppercase schema', { connectionString: PG_URL!, schema: 'Mutual' }],
      ['pool of one', { connectionString: PG_URL!, poolSize: 1 }],
      ['zero pack threshold', { connectionString: PG_URL!, crlPackThreshold: 0 }],
    ];
    for (const [what, o] of cases) await assert.rejects(openPostgresStore(o), TypeError, what);
  });
});
