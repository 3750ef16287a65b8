/**
 * The CaStore contract: one suite of cases run against every store. SQLite (a temp file) always
 * runs; PostgreSQL runs when MUTUAL_TEST_PG is set (a fresh schema per case, dropped afterwards),
 * skips with a message when it is not, and fails under MUTUAL_INTEROP=require.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { verifyAuditLog } from '../../src/ca/audit.ts';
import type { CaStore, CertificateRecord, ListFilter, StoredCertificate } from '../../src/ca/store.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';
import {
  DAY, HOUR, ISSUER, NOW, OTHER_ISSUER, plus, postgresBackend, record, revocation, splitEntries, sqliteBackend, type Backend, type Opened, type OpenOptions,
} from './fixtures.ts';

/**
 * A child process that issues batches of 50 as fast as the store takes them and prints each batch's
 * serials once recordIssued has resolved: what a client would have received.
 */
const ISSUING_CHILD = `
  const { openFromSpec, record } = await import(${JSON.stringify(new URL('./fixtures.ts', import.meta.url).href)});
  const store = await openFromSpec(JSON.parse(process.env.MUTUAL_STORE_SPEC));
  for (;;) {
    const batch = Array.from({ length: 50 }, () => record());
    await store.recordIssued(batch);
    process.stdout.write(batch.map((r) => r.serial).join(',') + '\\n');
  }
`;

const code = (c: ErrorCode) => (e: unknown) => isMutualError(e, c);

/** What a store must return for a record it stored. */
function stored(r: CertificateRecord, extra: Partial<StoredCertificate> = {}): StoredCertificate {
  return {
    issuerKeyId: r.issuerKeyId, serial: r.serial, role: r.role, subject: r.subject, identity: r.identity, names: r.names,
    notBefore: r.notBefore, notAfter: r.notAfter, fingerprint: r.fingerprint, der: r.der, renewedFrom: r.renewedFrom,
    issuedAt: r.issuedAt, issuedBy: r.issuedBy, status: 'valid', revokedAt: undefined, reason: undefined, ...extra,
  };
}

async function count(h: Opened, sql: string): Promise<number> {
  return Number((await h.sql(sql))[0].n);
}

interface Case {
  name: string;
  open?: OpenOptions;
  run(h: Opened): Promise<void>;
}

const CASES: Case[] = [
  {
    name: 'ok/record-issued-round-trips',
    async run({ store }) {
      const recs = [record(), record({ role: 'client', renewedFrom: 'abcdef' }), record({ issuerKeyId: OTHER_ISSUER })];
      await store.recordIssued(recs);
      for (const r of recs) {
        assert.deepEqual(await store.getCertificate(r.serial), stored(r));
        assert.deepEqual(await store.getCertificate(r.serial, r.issuerKeyId), stored(r));
      }
      // Serial spellings the CLI accepts: uppercase, with a leading zero byte.
      assert.equal((await store.getCertificate(recs[0].serial.toUpperCase()))?.serial, recs[0].serial);
      assert.equal((await store.getCertificate('00' + recs[0].serial))?.serial, recs[0].serial);
      assert.equal(await store.getCertificate(recs[0].serial, OTHER_ISSUER), undefined);
      assert.equal(await store.getCertificate('7f'.repeat(16)), undefined);
      await store.recordIssued([]);
    },
  },
  {
    name: 'ok/list-filters',
    async run({ store }) {
      // Expiries 1..6 days out, in shuffled insertion order; two client certificates for one identity.
      const a = record({ notAfter: plus(NOW, 3 * DAY) });
      const b = record({ notAfter: plus(NOW, 1 * DAY), role: 'client' });
      const c = record({ notAfter: plus(NOW, 5 * DAY), role: 'client', identity: 'spiffe://acme.internal/prod/other' });
      const d = record({ notAfter: plus(NOW, 2 * DAY) });
      const e = record({ notAfter: plus(NOW, 6 * DAY), role: 'client' });
      const f = record({ notAfter: plus(NOW, -1 * DAY) });
      await store.recordIssued([a, b, c]);
      await store.recordIssued([d, e, f]);
      await store.recordRevocation(revocation(d), 'admin');
      const table: [string, ListFilter, CertificateRecord[]][] = [
        ['all, by expiry', {}, [f, b, d, a, c, e]],
        ['role', { role: 'client' }, [b, c, e]],
        ['status valid', { status: 'valid' }, [f, b, a, c, e]],
        ['status revoked', { status: 'revoked' }, [d]],
        ['expiringBefore', { expiringBefore: plus(NOW, 3 * DAY) }, [f, b, d]],
        ['notExpiredAt', { notExpiredAt: NOW }, [b, d, a, c, e]],
        ['window', { notExpiredAt: NOW, expiringBefore: plus(NOW, 4 * DAY) }, [b, d, a]],
        ['identity', { identity: 'spiffe://acme.internal/prod/svc' }, [b, e]],
        ['identity + role server', { identity: 'spiffe://acme.internal/prod/svc', role: 'server' }, []],
        ['limit', { limit: 2 }, [f, b]],
        ['role + status + limit', { role: 'server', status: 'valid', limit: 2 }, [f, a]],
      ];
      for (const [what, filter, want] of table) {
        assert.deepEqual((await store.listCertificates(filter)).map((s) => s.serial), want.map((r) => r.serial), what);
      }
      const [revoked] = await store.listCertificates({ status: 'revoked' });
      assert.deepEqual(revoked, stored(d, { status: 'revoked', revokedAt: plus(NOW, HOUR), reason: 'keyCompromise' }));
    },
  },
  {
    name: 'ok/equal-expiries-list-in-insertion-order',
    async run({ store }) {
      const recs = Array.from({ length: 8 }, () => record());
      await store.recordIssued(recs.slice(0, 4));
      await store.recordIssued(recs.slice(4));
      assert.deepEqual((await store.listCertificates({})).map((s) => s.serial), recs.map((r) => r.serial));
    },
  },
  {
    name: 'fail/duplicate-serial-in-batch-stores-nothing',
    async run(h) {
      const { store } = h;
      const a = record();
      const b = record();
      const dup = record({ serial: a.serial });
      await assert.rejects(store.recordIssued([a, b, dup]), code('STORE_FAILED'));
      assert.equal(await store.getCertificate(a.serial), undefined);
      assert.equal(await store.getCertificate(b.serial), undefined);
      assert.equal(await count(h, 'SELECT count(*) AS n FROM certificates'), 0);
      assert.equal(await count(h, 'SELECT count(*) AS n FROM audit'), 0);
      // A serial already stored, in a later batch: that batch is refused whole, the first kept.
      await store.recordIssued([a]);
      const c = record();
      await assert.rejects(store.recordIssued([c, record({ serial: a.serial })]), code('STORE_FAILED'));
      assert.equal(await store.getCertificate(c.serial), undefined);
      // The chain head did not move with the failed batches.
      await store.recordIssued([b, c]);
      assert.deepEqual(await verifyAuditLog(store).then((v) => v.entries), 3);
    },
  },
  {
    name: 'fail/revocation-not-found-or-already-revoked',
    async run({ store }) {
      const r = record();
      await store.recordIssued([r]);
      await assert.rejects(store.recordRevocation(revocation(record()), 'admin'), code('CERT_NOT_FOUND'));
      await assert.rejects(store.recordRevocation({ ...revocation(r), issuerKeyId: OTHER_ISSUER }, 'admin'), code('CERT_NOT_FOUND'));
      const at = plus(NOW, 2 * HOUR + 999);
      const out = await store.recordRevocation(revocation(r, 'superseded', at), 'admin');
      const want = stored(r, { status: 'revoked', revokedAt: plus(NOW, 2 * HOUR), reason: 'superseded' });
      assert.deepEqual(out, { ...want, covered: [] });
      assert.deepEqual(await store.getCertificate(r.serial), want);
      await assert.rejects(store.recordRevocation(revocation(r), 'admin'), code('CERT_ALREADY_REVOKED'));
      // Covering renewals, with none to cover, is still "already revoked".
      await assert.rejects(store.recordRevocation({ ...revocation(r), renewalsExpiringAfter: NOW }, 'admin'), code('CERT_ALREADY_REVOKED'));
      // The failed attempts left no audit entries and no CRL entries behind.
      assert.equal((await verifyAuditLog(store)).entries, 2);
      assert.equal(splitEntries(await store.crlEntries(ISSUER, NOW)).length, 1);
    },
  },
  {
    name: 'ok/crl-entries-packed-past-threshold-and-dropped-when-expired',
    open: { crlPackThreshold: 5 },
    async run(h) {
      const { store } = h;
      // Every third certificate expires in a day; the rest in 90 days.
      const recs = Array.from({ length: 12 }, (_, i) => record({ notAfter: plus(NOW, i % 3 === 0 ? DAY : 90 * DAY) }));
      const other = record({ issuerKeyId: OTHER_ISSUER });
      await store.recordIssued([...recs, other]);
      const revs = recs.map((r, i) => revocation(r, i % 2 ? 'superseded' : 'unspecified'));
      for (const rev of revs) await store.recordRevocation(rev, 'admin');
      await store.recordRevocation(revocation(other), 'admin');
      // 12 entries at threshold 5: two chunks of 5, two loose; the other issuer's entry stays loose.
      assert.equal(await count(h, `SELECT count(*) AS n FROM crl_chunks WHERE issuer_kid = '${ISSUER}'`), 2);
      assert.equal(await count(h, `SELECT count(*) AS n FROM crl_entries WHERE issuer_kid = '${ISSUER}'`), 2);
      const all = revs.map((r) => r.crlEntry.toString('hex')).sort();
      assert.deepEqual(splitEntries(await store.crlEntries(ISSUER, NOW)), all);
      const later = plus(NOW, 2 * DAY);
      const kept = revs.filter((_, i) => i % 3 !== 0).map((r) => r.crlEntry.toString('hex')).sort();
      assert.deepEqual(splitEntries(await store.crlEntries(ISSUER, later)), kept);
      assert.deepEqual(splitEntries(await store.crlEntries(ISSUER, plus(NOW, 100 * DAY))), []);
      assert.deepEqual(splitEntries(await store.crlEntries(OTHER_ISSUER, NOW)), [revocation(other).crlEntry.toString('hex')]);
      assert.deepEqual(await store.crlEntries('00'.repeat(20), NOW), []);
    },
  },
  {
    name: 'ok/crl-numbers-increase-per-issuer',
    async run({ store }) {
      assert.equal(await store.nextCrlNumber(ISSUER), 1n);
      assert.equal(await store.nextCrlNumber(ISSUER), 2n);
      assert.equal(await store.nextCrlNumber(OTHER_ISSUER), 1n);
      assert.equal(await store.nextCrlNumber(ISSUER), 3n);
    },
  },
  {
    name: 'ok/enrollment-records-the-certificate-and-spends-the-token-together',
    async run(h) {
      const { store } = h;
      const exp = new Date(Date.now() + 10 * 60_000);
      const token = { jti: 'jti-e', expiresAt: exp, actor: 'token:admin' };
      const first = record({ role: 'client' });
      assert.equal(await store.recordEnrollment(first, token), true);
      assert.deepEqual(await store.getCertificate(first.serial), stored(first));
      // A replay records nothing.
      const second = record({ role: 'client' });
      assert.equal(await store.recordEnrollment(second, token), false);
      assert.equal(await store.getCertificate(second.serial), undefined);
      assert.equal(await store.consumeToken('jti-e', exp, 'x'), false, 'the same token table as consumeToken');
      const entries = [];
      for await (const e of store.auditEntries()) entries.push([e.action, e.target]);
      assert.deepEqual(entries, [['token-used', 'jti-e'], ['issue', first.serial]]);
      assert.equal(await count(h, 'SELECT count(*) AS n FROM certificates'), 1);
    },
  },
  {
    name: 'fail/enrollment-that-cannot-be-recorded-leaves-the-token-unspent',
    async run({ store }) {
      const exp = new Date(Date.now() + 10 * 60_000);
      const taken = record({ role: 'client' });
      await store.recordIssued([taken]);
      // The certificate cannot be recorded (its serial is taken): the token must not be spent.
      await assert.rejects(store.recordEnrollment({ ...record({ role: 'client' }), serial: taken.serial }, { jti: 'jti-f', expiresAt: exp, actor: 'token:admin' }), code('STORE_FAILED'));
      assert.equal(await store.consumeToken('jti-f', exp, 'token:admin'), true, 'still unspent');
    },
  },
  {
    name: 'ok/token-consumed-once',
    async run({ store }) {
      const exp = new Date(Date.now() + 10 * 60_000);
      assert.equal(await store.consumeToken('jti-1', exp, 'spiffe://acme.internal/prod/a'), true);
      assert.equal(await store.consumeToken('jti-1', exp, 'spiffe://acme.internal/prod/a'), false);
      assert.equal(await store.consumeToken('jti-2', exp, 'spiffe://acme.internal/prod/b'), true);
      const entries = [];
      for await (const e of store.auditEntries()) entries.push([e.action, e.target, e.actor]);
      assert.deepEqual(entries, [['token-used', 'jti-1', 'spiffe://acme.internal/prod/a'], ['token-used', 'jti-2', 'spiffe://acme.internal/prod/b']]);
    },
  },
  {
    name: 'ok/revocations-since-cursor',
    async run({ store }) {
      assert.deepEqual(await store.revocationsSince(0), { cursor: 0, items: [] });
      const [x, y, z] = [record(), record(), record({ issuerKeyId: OTHER_ISSUER })];
      await store.recordIssued([x, y, z]); // seq 1-3
      // Nothing revoked: the cursor moves to the head of the log.
      assert.deepEqual(await store.revocationsSince(0), { cursor: 3, items: [] });
      await store.recordRevocation(revocation(x, 'keyCompromise', plus(NOW, HOUR + 500)), 'admin'); // seq 4
      const ev = (r: CertificateRecord, reason: string, at: Date) => ({ issuerKeyId: r.issuerKeyId, serial: r.serial, revokedAt: at, reason });
      assert.deepEqual(await store.revocationsSince(3), { cursor: 4, items: [ev(x, 'keyCompromise', plus(NOW, HOUR))] });
      assert.deepEqual(await store.revocationsSince(4), { cursor: 4, items: [] });
      await store.audit({ actor: 'admin', action: 'crl', target: 'server-ca', details: { number: 7 } }); // seq 5
      await store.recordRevocation(revocation(y, 'superseded', plus(NOW, 2 * HOUR)), 'admin'); // seq 6
      await store.recordRevocation(revocation(z, 'cessationOfOperation', plus(NOW, 3 * HOUR)), 'admin'); // seq 7
      assert.deepEqual(await store.revocationsSince(4, 1), { cursor: 6, items: [ev(y, 'superseded', plus(NOW, 2 * HOUR))] });
      assert.deepEqual(await store.revocationsSince(6, 1), { cursor: 7, items: [ev(z, 'cessationOfOperation', plus(NOW, 3 * HOUR))] });
      assert.deepEqual((await store.revocationsSince(0)).items.map((i) => i.serial), [x.serial, y.serial, z.serial]);
      // A cursor ahead of the log (another replica's) is kept.
      assert.deepEqual(await store.revocationsSince(50), { cursor: 50, items: [] });
    },
  },
  {
    name: 'ok/audit-chain-verifies',
    async run({ store }) {
      const recs = Array.from({ length: 5 }, () => record());
      await store.recordIssued(recs.slice(0, 3));
      await store.audit({ actor: 'admin', action: 'config', target: 'ca', details: { b: 1, a: [2, { z: 'é', y: null }] }, at: plus(NOW, 1500) });
      await store.recordIssued(recs.slice(3));
      await store.recordRevocation(revocation(recs[0]), 'admin');
      await store.consumeToken('jti', new Date(Date.now() + 60_000), 'tok');
      await store.nextCrlNumber(ISSUER);
      const v = await verifyAuditLog(store);
      assert.equal(v.entries, 8);
      const entries = [];
      for await (const e of store.auditEntries()) entries.push(e);
      assert.deepEqual(entries.map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.equal(v.head, entries[7].hash);
      const cfg = entries[3];
      assert.deepEqual([cfg.action, cfg.at, cfg.details, cfg.detailsJson], ['config', plus(NOW, 1000), { b: 1, a: [2, { z: 'é', y: null }] }, '{"b":1,"a":[2,{"z":"é","y":null}]}']);
      assert.deepEqual(entries[0].details, { issuer: ISSUER, role: 'server', subject: recs[0].subject, fingerprint: recs[0].fingerprint });
      assert.deepEqual([entries[6].action, entries[6].target, entries[6].details], ['revoke', recs[0].serial, { issuer: ISSUER, reason: 'keyCompromise' }]);
    },
  },
  {
    name: 'fail/tampered-audit-detected',
    async run(h) {
      await h.store.recordIssued([record(), record(), record()]);
      assert.equal((await verifyAuditLog(h.store)).entries, 3);
      await h.sql(`UPDATE audit SET details = '{"issuer":"evil"}' WHERE seq = 2`);
      await assert.rejects(verifyAuditLog(h.store), (e) => isMutualError(e, 'AUDIT_TAMPERED') && e.fields.seq === 2);
    },
  },
  {
    name: 'fail/removed-audit-entry-detected',
    async run(h) {
      await h.store.recordIssued([record(), record(), record()]);
      await h.sql('DELETE FROM audit WHERE seq = 2');
      await assert.rejects(verifyAuditLog(h.store), (e) => isMutualError(e, 'AUDIT_TAMPERED') && e.fields.seq === 2);
    },
  },
  {
    name: 'ok/job-lock-runs-the-job-and-is-released',
    async run({ store }) {
      let runs = 0;
      assert.equal(await store.withJobLock('crl-regen', async () => void runs++), true);
      await assert.rejects(store.withJobLock('crl-regen', async () => { throw new Error('job failed'); }), /job failed/);
      // The failed job released the lock.
      assert.equal(await store.withJobLock('crl-regen', async () => void runs++), true);
      assert.equal(runs, 2);
    },
  },
  {
    name: 'fault/kill-9-during-issuance-loses-nothing-acknowledged',
    async run(h) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', ISSUING_CHILD], {
        env: { ...process.env, MUTUAL_STORE_SPEC: JSON.stringify(h.spec) }, stdio: ['ignore', 'pipe', 'inherit'],
      });
      const closed = once(child, 'close');
      const acked: string[] = [];
      let batches = 0;
      let buf = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
          acked.push(...buf.slice(0, i).split(','));
          // Killed in the middle of the burst, most likely inside a transaction.
          if (++batches === 8) child.kill('SIGKILL');
        }
      });
      const [exitCode, signal] = await closed;
      assert.equal(signal, 'SIGKILL', `the issuing child exited by itself (code ${exitCode})`);
      assert.ok(batches >= 8);
      // After the restart: every acknowledged certificate is there, at most one more whole batch
      // (committed, not yet acknowledged), no duplicates, and the chain verifies.
      const store = await h.reopen();
      const serials = (await store.listCertificates({ limit: 1_000_000 })).map((c) => c.serial);
      const have = new Set(serials);
      assert.equal(have.size, serials.length);
      assert.deepEqual(acked.filter((s) => !have.has(s)), []);
      assert.ok(serials.length === acked.length || serials.length === acked.length + 50, `${serials.length} stored, ${acked.length} acknowledged`);
      assert.equal((await verifyAuditLog(store)).entries, serials.length);
      await store.recordIssued([record()]);
      assert.equal((await verifyAuditLog(store)).entries, serials.length + 1);
    },
  },
  {
    // Issue 13 item 4: X renewed (same key) into Y; revoking X with keyCompromise must revoke Y
    // too. And indirectly: A -> B -> C -> D (B superseded by now); revoking B covers C and D.
    name: 'ok/revocation-covers-renewals-directly-or-not',
    async run({ store }) {
      const x = record();
      const a = record();
      const other = record();
      await store.recordIssued([x, a, other]);
      const y = await renewed(store, x, 0);
      const revokedAt = plus(NOW, 5 * HOUR);
      const cursor = (await store.revocationsSince(0)).cursor;
      const direct = await store.recordRevocation({ ...revocation(x, 'keyCompromise', revokedAt), renewalsExpiringAfter: plus(NOW, -30 * DAY) }, 'admin');
      assert.equal(direct.serial, x.serial);
      assert.equal(direct.reason, 'keyCompromise');
      assert.deepEqual(direct.covered.map((c) => c.serial), [y.serial]);
      const b = await renewed(store, a, 0);
      const c = await renewed(store, b, 1);
      const d = await renewed(store, c, 2);
      assert.deepEqual(await validIn(store, [a, b, c, d]), [c.serial, d.serial]);
      const out = await store.recordRevocation({ ...revocation(b, 'keyCompromise', revokedAt), renewalsExpiringAfter: plus(NOW, -30 * DAY) }, 'admin');
      assert.deepEqual(out.covered.map((r) => r.serial), [c.serial, d.serial]);
      for (const r of [y, c, d]) {
        const got = await store.getCertificate(r.serial);
        assert.equal(got?.status, 'revoked', r.serial);
        assert.equal(got?.reason, 'keyCompromise');
        assert.deepEqual(got?.revokedAt, revokedAt);
      }
      assert.equal((await store.getCertificate(b.serial))?.reason, 'superseded', 'B keeps its first revocation');
      assert.equal((await store.getCertificate(other.serial))?.status, 'valid');
      // Every revocation is on the CRL and in the log replicas follow; the chain verifies.
      const crl = splitEntries(await store.crlEntries(ISSUER, NOW));
      for (const r of [x, y, c, d]) assert.ok(crl.includes(revocation(r, 'keyCompromise', revokedAt).crlEntry.toString('hex')), r.serial);
      const since = await store.revocationsSince(cursor);
      for (const r of [x, y, c, d]) assert.ok(since.items.some((i) => i.serial === r.serial && i.reason === 'keyCompromise'), r.serial);
      await verifyAuditLog(store);
    },
  },
  {
    // A revocation recorded before covering existed (or a superseded one) can be made again with
    // a reason that covers: the renewals are revoked, the certificate keeps its first revocation.
    name: 'ok/revoking-again-covers-renewals-left-valid',
    async run({ store }) {
      const a = record();
      await store.recordIssued([a]);
      const expired = await renewed(store, a, 0, { notAfter: plus(NOW, -40 * DAY) });
      const b = await renewed(store, a, 2);
      await store.recordRevocation(revocation(a, 'superseded'), 'admin');
      assert.equal((await store.getCertificate(b.serial))?.status, 'valid', 'superseded covers nothing');
      const out = await store.recordRevocation({ ...revocation(a, 'keyCompromise', plus(NOW, 3 * HOUR)), renewalsExpiringAfter: plus(NOW, -30 * DAY) }, 'admin');
      assert.equal(out.reason, 'superseded');
      assert.deepEqual(out.covered.map((x) => x.serial), [b.serial]);
      assert.equal((await store.getCertificate(b.serial))?.reason, 'keyCompromise');
      assert.equal((await store.getCertificate(expired.serial))?.status, 'valid', 'expired 40 days ago: not covered');
      await assert.rejects(store.recordRevocation({ ...revocation(a), renewalsExpiringAfter: plus(NOW, -30 * DAY) }, 'admin'), code('CERT_ALREADY_REVOKED'));
      await verifyAuditLog(store);
    },
  },
  {
    // Issue 13 item 5: a lineage holds at most two valid certificates (current + successor).
    name: 'ok/renewal-bounds-the-lineage-and-is-rate-limited',
    async run({ store }) {
      const a = record();
      await store.recordIssued([a]);
      const b1 = await renewed(store, a, 0);
      // A second renewal of A supersedes the first successor (a client that lost the answer).
      const b2 = await renewed(store, a, 0, {}, 10);
      assert.equal((await store.getCertificate(b1.serial))?.status, 'revoked');
      assert.equal((await store.getCertificate(b1.serial))?.reason, 'superseded');
      assert.deepEqual(await validIn(store, [a, b1, b2]), [a.serial, b2.serial]);
      const b3 = await renewed(store, a, 0, {}, 20);
      // A fourth within 60 s: refused, with the seconds until the first leaves the window.
      await assert.rejects(renewed(store, a, 0, {}, 30), (e: unknown) => isMutualError(e, 'RENEWAL_TOO_SOON') && e.fields.retryAfter === 30);
      await assert.rejects(renewed(store, a, 0, {}, 59), (e: unknown) => isMutualError(e, 'RENEWAL_TOO_SOON') && e.fields.retryAfter === 1);
      const b4 = await renewed(store, a, 0, {}, 60);
      assert.deepEqual(await validIn(store, [a, b1, b2, b3, b4]), [a.serial, b4.serial]);
      // The successor renews: A (its predecessor) is superseded; B4 and C remain.
      const c = await renewed(store, b4, 2);
      assert.deepEqual(await validIn(store, [a, b1, b2, b3, b4, c]), [b4.serial, c.serial]);
      // A revoked certificate cannot renew (a renewal racing its revocation loses).
      await assert.rejects(renewed(store, b1, 3), code('CERT_REVOKED'));
      await assert.rejects(renewed(store, record(), 3), code('CERT_NOT_FOUND'));
      // The refusals left nothing behind; every supersession is on the CRL and in the log.
      assert.equal(splitEntries(await store.crlEntries(ISSUER, NOW)).length, 4);
      const superseded = (await store.revocationsSince(0)).items;
      assert.deepEqual(superseded.map((i) => [i.serial, i.reason]), [b1, b2, b3, a].map((x) => [x.serial, 'superseded']));
      await verifyAuditLog(store);
    },
  },
  {
    // Replicas: renewals of one certificate and a revocation of it race on two stores; the bound
    // and the cascade hold (PostgreSQL: the lineage lock; SQLite: the write lock).
    name: 'ok/renewals-and-revocation-race-across-stores',
    async run(h) {
      const other = await h.reopen();
      const a = record();
      await h.store.recordIssued([a]);
      const stores = [h.store, other];
      const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => renewed(stores[i % 2], a, 0, {}, 0, 1000)));
      assert.ok(results.some((r) => r.status === 'fulfilled'));
      for (const r of results) if (r.status === 'rejected') throw r.reason;
      const lineage = (await h.store.listCertificates({ limit: 100 })).filter((x) => x.serial === a.serial || x.renewedFrom === a.serial);
      assert.equal(lineage.filter((x) => x.status === 'valid').length, 2, 'at most the current certificate and one successor');
      // Chains of renewals from the valid successor race a keyCompromise revocation of A.
      const successor = lineage.find((x) => x.status === 'valid' && x.serial !== a.serial)!;
      let tip: CertificateRecord = successor;
      const chain = (async () => {
        for (let i = 0; i < 8; i++) {
          try {
            tip = await renewed(stores[i % 2], tip, 0, { issuedAt: plus(NOW, (i + 1) * 2000 * 60) }, 0, 1000);
          } catch (e) {
            if (!code('CERT_REVOKED')(e)) throw e;
            return;
          }
        }
      })();
      await new Promise((r) => setImmediate(r));
      await other.recordRevocation({ ...revocation(a, 'keyCompromise', plus(NOW, HOUR)), renewalsExpiringAfter: plus(NOW, -30 * DAY) }, 'admin');
      await chain;
      const all = await h.store.listCertificates({ limit: 1000 });
      assert.deepEqual(all.filter((x) => x.status === 'valid').map((x) => x.serial), [], 'nothing renewed from A is left valid');
      await verifyAuditLog(h.store);
    },
  },
  {
    // Migration 2 on a database that already holds renewal chains: each renewal gets the lineage of
    // its oldest ancestor, so the bound and the lineage lock see the whole lineage after an upgrade.
    name: 'ok/migration-2-backfills-lineages',
    async run(h) {
      const a = record();
      const solo = record();
      await h.store.recordIssued([a, solo]);
      const b = await renewed(h.store, a, 0);
      const c = await renewed(h.store, b, 1);
      // Back to version 1: the column and its indexes gone, the migration not applied.
      await h.sql('DROP INDEX certificates_lineage');
      await h.sql('DROP INDEX certificates_renewed_from');
      await h.sql('ALTER TABLE certificates DROP COLUMN lineage');
      await h.sql('DELETE FROM schema_migrations WHERE version = 2');
      const again = await h.reopen();
      const hexSerial = h.spec.kind === 'sqlite' ? 'lower(hex(serial))' : "encode(serial, 'hex')";
      const lineageOf = async (serial: string) => (await h.sql(`SELECT lineage AS l FROM certificates WHERE ${hexSerial} = '${serial}'`))[0].l;
      assert.equal(await lineageOf(b.serial), a.serial);
      assert.equal(await lineageOf(c.serial), a.serial);
      assert.equal(await lineageOf(a.serial), null);
      assert.equal(await lineageOf(solo.serial), null);
      // The bound works on the backfilled lineage: renewing C retires B (A is superseded already).
      const d = await renewed(again, c, 5);
      assert.deepEqual(await validIn(again, [a, b, c, d]), [c.serial, d.serial]);
    },
  },
];

/**
 * Records a renewal of `from` (same issuer and names), `minutes` after NOW by default plus
 * `seconds`; at most `max` renewals of one certificate per 60 s; the lineage's certificates
 * expired before NOW - 1 day are left alone.
 */
async function renewed(store: CaStore, from: CertificateRecord, minutes: number, o: Partial<CertificateRecord> = {}, seconds = 0, max = 3): Promise<CertificateRecord> {
  const rec = record({ role: from.role, issuedAt: plus(NOW, minutes * 60_000 + seconds * 1000), ...o, renewedFrom: from.serial });
  await store.recordRenewal({ record: { ...rec, renewedFrom: from.serial }, limit: { max, windowSeconds: 60 }, supersedeExpiringAfter: plus(NOW, -DAY) });
  return rec;
}

/** The serials among `recs` that are valid now, in the given order. */
async function validIn(store: CaStore, recs: CertificateRecord[]): Promise<string[]> {
  const out: string[] = [];
  for (const r of recs) if ((await store.getCertificate(r.serial))?.status === 'valid') out.push(r.serial);
  return out;
}

function suite(b: Backend): void {
  describe(b.name, { skip: b.skip }, () => {
    for (const c of CASES) {
      test(c.name, async () => {
        const h = await b.open(c.open);
        try {
          await c.run(h);
        } finally {
          await h.cleanup();
        }
      });
    }
  });
}

suite(sqliteBackend);
suite(postgresBackend);
