/**
 * Issue 13, item 15: tampering of any kind with the audit log (an entry edited, garbled so it no
 * longer parses, deleted, reordered, or the log cut short) is reported as AUDIT_TAMPERED naming
 * the entry, on SQLite and PostgreSQL alike, never as a parse error (a garbled `details` used to
 * throw a SyntaxError out of the row reader). The CLI's side (exit 4) is in
 * test/cli/store-config.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { verifyAuditLog } from '../../src/ca/audit.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { postgresBackend, record, sqliteBackend, type Backend, type Opened } from './fixtures.ts';

interface Case {
  name: string;
  /** Backends this kind of damage can be done on (SQLite keeps any type in any column). */
  only?: 'sqlite';
  /** The damage, as SQL on the audit table of a log of three issue entries and one config entry. */
  sql: string[];
  /** The damage on PostgreSQL, where its SQL differs. */
  pgSql?: string[];
  /** Entry the report must name (undefined: the report names a certificate instead). */
  seq?: number;
  /** Also pass the head recorded before the damage. */
  withHead?: boolean;
}

const CASES: Case[] = [
  { name: 'fail/edited/actor', sql: ["UPDATE audit SET actor = 'mallory' WHERE seq = 2"], seq: 2 },
  { name: 'fail/edited/details-still-json', sql: [`UPDATE audit SET details = '{"issuer":"evil"}' WHERE seq = 2`], seq: 2 },
  { name: 'fail/edited/time', sql: ['UPDATE audit SET at = at + 1 WHERE seq = 3'], seq: 3 },
  { name: 'fail/garbled/details-one-char-appended', sql: ["UPDATE audit SET details = details || 'x' WHERE seq = 2"], seq: 2 },
  { name: 'fail/garbled/details-cut-short', sql: ['UPDATE audit SET details = substr(details, 1, 10) WHERE seq = 1'], seq: 1 },
  { name: 'fail/garbled/details-not-an-object', sql: ["UPDATE audit SET details = '[1,2]' WHERE seq = 2"], seq: 2 },
  { name: 'fail/garbled/hash', sql: ["UPDATE audit SET hash = 'not-a-hash' WHERE seq = 2"], seq: 2 },
  { name: 'fail/garbled/time-beyond-any-date', sql: ['UPDATE audit SET at = 99999999999999 WHERE seq = 2'], seq: 2 },
  { name: 'fail/garbled/time-as-text', only: 'sqlite', sql: ["UPDATE audit SET at = 'yesterday' WHERE seq = 2"], seq: 2 },
  { name: 'fail/garbled/details-as-blob', only: 'sqlite', sql: ["UPDATE audit SET details = X'00ff' WHERE seq = 2"], seq: 2 },
  { name: 'fail/garbled/actor-as-number', only: 'sqlite', sql: ['UPDATE audit SET actor = 42 WHERE seq = 2'], seq: 2 },
  { name: 'fail/deleted/middle', sql: ['DELETE FROM audit WHERE seq = 2'], seq: 2 },
  { name: 'fail/deleted/first', sql: ['DELETE FROM audit WHERE seq = 1'], seq: 1 },
  {
    name: 'fail/reordered/two-entries-swapped',
    sql: ['UPDATE audit SET seq = 100 WHERE seq = 2', 'UPDATE audit SET seq = 2 WHERE seq = 3', 'UPDATE audit SET seq = 3 WHERE seq = 100'],
    seq: 2,
  },
  // The log is intact; the inventory holds another certificate than the one the log recorded.
  {
    name: 'fail/inventory/certificate-bytes-swapped',
    sql: ["UPDATE certificates SET der = X'3003020101' WHERE serial = (SELECT min(serial) FROM certificates)"],
    pgSql: ["UPDATE certificates SET der = decode('3003020101', 'hex') WHERE serial = (SELECT serial FROM certificates ORDER BY serial LIMIT 1)"],
  },
  { name: 'fail/inventory/names-garbled', sql: ["UPDATE certificates SET names = names || 'x' WHERE serial = (SELECT serial FROM certificates ORDER BY serial LIMIT 1)"] },
  { name: 'fail/inventory/time-as-text', only: 'sqlite', sql: ["UPDATE certificates SET not_after = 'soon' WHERE serial = (SELECT serial FROM certificates ORDER BY serial LIMIT 1)"] },
  { name: 'fail/inventory/certificate-as-text', only: 'sqlite', sql: ["UPDATE certificates SET der = 'not bytes' WHERE serial = (SELECT serial FROM certificates ORDER BY serial LIMIT 1)"] },
  // The config entry (4) goes with the issue entry (3): the inventory still holds the certificate.
  { name: 'fail/truncated/certificate-entries-cut-off', sql: ['DELETE FROM audit WHERE seq >= 3'] },
  // Only the config entry is cut off: the shortened chain is valid and every certificate has its
  // entry, so only a head recorded earlier can show it.
  { name: 'fail/truncated/last-entry-cut-off-against-recorded-head', sql: ['DELETE FROM audit WHERE seq = 4'], seq: 4, withHead: true },
];

/** Three certificates and a config entry: seq 1-3 issue, seq 4 config. */
async function fill(h: Opened): Promise<string> {
  await h.store.recordIssued([record(), record(), record()]);
  await h.store.audit({ actor: 'admin', action: 'config', target: 'ca', details: { permitDns: ['acme.internal'] } });
  const v = await verifyAuditLog(h.store);
  assert.equal(v.entries, 4);
  return v.head;
}

function suite(b: Backend): void {
  describe(b.name, { skip: b.skip }, () => {
    for (const c of CASES) {
      test(c.name, { skip: c.only && c.only !== b.name ? `${b.name} types its columns` : undefined }, async () => {
        const h = await b.open();
        try {
          const head = await fill(h);
          for (const q of (b.name === 'postgres' && c.pgSql) || c.sql) await h.sql(q);
          await assert.rejects(verifyAuditLog(h.store, c.withHead ? { head: head.slice(0, 16) } : {}), (e) => {
            assert.ok(isMutualError(e, 'AUDIT_TAMPERED'), `expected AUDIT_TAMPERED, got ${(e as Error).stack}`);
            if (c.seq !== undefined) assert.equal(e.fields.seq, c.seq, e.message);
            else assert.equal(typeof e.fields.serial, 'string', e.message);
            return true;
          });
        } finally {
          await h.cleanup();
        }
      });
    }

    test('ok/untouched-log-verifies-with-and-without-its-head', async () => {
      const h = await b.open();
      try {
        const head = await fill(h);
        assert.equal((await verifyAuditLog(h.store, { head })).head, head);
        assert.equal((await verifyAuditLog(h.store, { head: head.slice(0, 16).toUpperCase() })).entries, 4);
        // A head from earlier in the log is still in it.
        await h.store.recordIssued([record()]);
        assert.equal((await verifyAuditLog(h.store, { head })).entries, 5);
      } finally {
        await h.cleanup();
      }
    });
  });
}

suite(sqliteBackend);
suite(postgresBackend);
