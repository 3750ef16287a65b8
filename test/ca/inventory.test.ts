/**
 * Inventory and audit consistency: every issued certificate is in the inventory with the fields
 * its DER says, with exactly one audit entry per issue and per revocation; the hash-chained audit
 * log verifies, and any edit made behind the CA's back (one row changed, removed, re-hashed or
 * reordered in the SQLite file) is AUDIT_TAMPERED. Group commit: concurrent issues share
 * transactions, and each caller gets its certificate only once it is committed.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { makeTestCa, tempDir, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';
import { MAX_COMMIT_BATCH, type IssueRequest, type IssueResult } from '../../src/ca/authority.ts';
import { verifyAuditLog } from '../../src/ca/audit.ts';
import type { AuditEntry, CaStore, CertificateRecord, StoredCertificate } from '../../src/ca/store.ts';
import { auditHash } from '../../src/core/audit-hash.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';
import type { SubjectAltNames } from '../../src/core/names.ts';
import { openSqliteStore } from '../../src/store/sqlite-store.ts';
import { openAuthority } from '../../src/ca/open-authority.ts';

const NOW = new Date('2027-03-01T09:30:00Z');
const DAY = 86_400_000;
const names = (n: Partial<SubjectAltNames>): SubjectAltNames => ({ dns: [], ip: [], uri: [], ...n });
const id = (service: string, env = 'prod') => `spiffe://acme.internal/${env}/${service}`;

async function auditLog(store: Pick<CaStore, 'auditEntries'>): Promise<AuditEntry[]> {
  const out: AuditEntry[] = [];
  for await (const e of store.auditEntries()) out.push(e);
  return out;
}

function assertCode(e: unknown, code: ErrorCode): true {
  assert.ok(isMutualError(e), `not a MutualError: ${String(e)}`);
  assert.equal(e.code, code, `got ${e.code}: ${e.message}`);
  return true;
}

/** What the inventory must say about a certificate, read from its DER. */
function assertMatchesDer(row: StoredCertificate, issued: IssueResult, o: { ca: TestCa; role: 'server' | 'client'; actor: string; renewedFrom?: string }): void {
  const info = parseCertificate(issued.certificate);
  const issuer = o.ca.ca.issuerFor(o.role);
  assert.equal(row.serial, issued.serial);
  assert.equal(row.serial, info.serial);
  assert.equal(row.issuerKeyId, issuer.keyId);
  assert.equal(row.issuerKeyId, info.authorityKeyId?.toString('hex'));
  assert.equal(row.role, o.role);
  assert.equal(row.subject, `CN=${info.commonName}`);
  assert.equal(row.identity, o.role === 'client' ? info.names.uri[0] : undefined);
  assert.deepEqual(row.names, info.names);
  assert.equal(row.notBefore.getTime(), info.notBefore.getTime());
  assert.equal(row.notAfter.getTime(), info.notAfter.getTime());
  assert.equal(row.fingerprint, crypto.createHash('sha256').update(issued.certificate).digest('hex'));
  assert.deepEqual(row.der, issued.certificate);
  assert.equal(row.issuedAt.getTime(), NOW.getTime());
  assert.equal(row.issuedBy, o.actor);
  assert.equal(row.renewedFrom, o.renewedFrom);
}

describe('ca/inventory: every certificate, with its audit entries', () => {
  let ca: TestCa;
  const issued: { r: IssueResult; role: 'server' | 'client'; actor: string; renewedFrom?: string }[] = [];
  const revoked = new Set<string>();

  before(async () => {
    ca = await makeTestCa({ now: NOW });
    const reqs: (IssueRequest & { role: 'server' | 'client' })[] = [
      { role: 'server', names: names({ dns: ['api.acme.internal'], ip: ['127.0.0.1'] }), actor: 'cli' },
      { role: 'server', names: names({ dns: ['db.acme.internal'] }), keyType: 'rsa2048', actor: 'spiffe://acme.internal/admin/alice', days: 30 },
      { role: 'client', names: names({ uri: [id('payments')] }), actor: 'token:abc' },
      { role: 'client', csr: buildCsr({ privateKey: crypto.generateKeyPairSync('ed25519').privateKey, commonName: 'billing', names: names({ uri: [id('billing', 'staging')] }) }), actor: 'acme' },
      { role: 'server', csr: buildCsr({ privateKey: crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey, commonName: 'x', names: names({ dns: ['web.acme.internal'] }) }), lifetimeSeconds: 3600, actor: 'cli' },
    ];
    for (const req of reqs) {
      const r = await ca.ca.issue({ ...req, now: NOW });
      issued.push({ r, role: req.role, actor: req.actor! });
    }
    // A renewal of the first server certificate.
    const renewal = await ca.ca.issue({ role: 'server', names: names({ dns: ['api.acme.internal'], ip: ['127.0.0.1'] }), renewedFrom: issued[0].r.serial, actor: 'renew', now: NOW });
    issued.push({ r: renewal, role: 'server', actor: 'renew', renewedFrom: issued[0].r.serial });
    for (const i of [0, 2]) {
      await ca.ca.revoke({ serial: issued[i].r.serial, reason: 'superseded', actor: 'spiffe://acme.internal/admin/alice', now: new Date(NOW.getTime() + 60_000) });
      revoked.add(issued[i].r.serial);
    }
  });
  after(() => ca?.close());

  test('ok/every-issued-certificate-is-in-the-inventory-with-its-fields', async () => {
    const all = await ca.ca.list({ limit: 100_000 });
    assert.equal(all.length, issued.length + 1, 'the issued certificates and the admin certificate');
    for (const i of issued) {
      const row = all.find((c) => c.serial === i.r.serial);
      assert.ok(row, `${i.r.serial} in the list`);
      assertMatchesDer(row, i.r, { ca, role: i.role, actor: i.actor, renewedFrom: i.renewedFrom });
      assert.equal(row.status, revoked.has(i.r.serial) ? 'revoked' : 'valid');
      if (revoked.has(i.r.serial)) {
        assert.equal(row.reason, 'superseded');
        assert.equal(row.revokedAt?.getTime(), NOW.getTime() + 60_000);
      } else {
        assert.equal(row.reason, undefined);
        assert.equal(row.revokedAt, undefined);
      }
      assert.deepEqual(await ca.ca.find({ serial: i.r.serial }), row);
      assert.deepEqual(await ca.ca.find({ certificate: i.r.certificatePem }), row);
      assert.deepEqual(await ca.ca.find({ certificate: i.r.certificate }), row);
    }
    const admin = all.find((c) => c.serial === ca.init.admin.serial);
    assert.ok(admin);
    assert.equal(admin.identity, 'spiffe://acme.internal/admin/admin');
    assert.equal(admin.issuedBy, 'init');
  });

  test('ok/serials-are-unique-16-byte-hex', async () => {
    const all = await ca.ca.list({ limit: 100_000 });
    assert.equal(new Set(all.map((c) => c.serial)).size, all.length);
    for (const c of all) assert.match(c.serial, /^[4-7][0-9a-f]{31}$/);
  });

  test('ok/list-filters', async () => {
    const all = await ca.ca.list({ limit: 100_000 });
    const same = (a: StoredCertificate[], b: StoredCertificate[]) => assert.deepEqual(a.map((c) => c.serial).sort(), b.map((c) => c.serial).sort());
    same(await ca.ca.list({ role: 'client' }), all.filter((c) => c.role === 'client'));
    same(await ca.ca.list({ role: 'server', status: 'valid' }), all.filter((c) => c.role === 'server' && c.status === 'valid'));
    same(await ca.ca.list({ status: 'revoked' }), all.filter((c) => revoked.has(c.serial)));
    same(await ca.ca.list({ identity: id('payments') }), all.filter((c) => c.identity === id('payments')));
    const soon = new Date(NOW.getTime() + 31 * DAY);
    same(await ca.ca.list({ expiringBefore: soon }), all.filter((c) => c.notAfter < soon));
    same(await ca.ca.list({ notExpiredAt: new Date(NOW.getTime() + 2 * 3600_000) }), all.filter((c) => c.notAfter.getTime() >= NOW.getTime() + 2 * 3600_000));
    assert.equal((await ca.ca.list({ limit: 2 })).length, 2);
    // Ordered by expiry, soonest first.
    const times = all.map((c) => c.notAfter.getTime());
    assert.deepEqual(times, [...times].sort((a, b) => a - b));
  });

  test('ok/one-audit-entry-per-issue-and-per-revocation', async () => {
    const log = await auditLog(ca.ca.store);
    const all = await ca.ca.list({ limit: 100_000 });
    const issues = log.filter((e) => e.action === 'issue');
    const revokes = log.filter((e) => e.action === 'revoke');
    assert.deepEqual(issues.map((e) => e.target).sort(), all.map((c) => c.serial).sort(), 'one issue entry per certificate');
    assert.deepEqual(revokes.map((e) => e.target).sort(), [...revoked].sort(), 'one revoke entry per revocation');
    for (const e of issues) {
      const cert = all.find((c) => c.serial === e.target)!;
      assert.equal(e.actor, cert.issuedBy);
      assert.equal(e.at.getTime(), cert.issuedAt.getTime());
      assert.equal(e.details.fingerprint, cert.fingerprint);
      assert.equal(e.details.issuer, cert.issuerKeyId);
      assert.equal(e.details.role, cert.role);
      if (cert.renewedFrom) assert.equal(e.details.renewedFrom, cert.renewedFrom);
    }
    for (const e of revokes) {
      assert.equal(e.actor, 'spiffe://acme.internal/admin/alice');
      assert.equal(e.details.reason, 'superseded');
      assert.equal(e.at.getTime(), NOW.getTime() + 60_000);
    }
    assert.equal(log.filter((e) => e.action === 'init').length, 1);
    // An issue entry is written with its certificate: none is ahead of or behind its row.
    assert.deepEqual(log.map((e) => e.seq), log.map((_, i) => i + 1));
  });

  test('ok/verifyAuditLog-passes', async () => {
    const log = await auditLog(ca.ca.store);
    const r = await verifyAuditLog(ca.ca.store);
    assert.equal(r.entries, log.length);
    assert.equal(r.head, log[log.length - 1].hash);
  });

  test('fail/revocation-refused-writes-no-audit-entry', async () => {
    const before = (await auditLog(ca.ca.store)).length;
    // Revoked (superseded) already; its renewal is valid, and `superseded` covers no renewals (with
    // another reason this would revoke the renewal: test/ca/lifecycle.test.ts).
    await assert.rejects(ca.ca.revoke({ serial: issued[0].r.serial, reason: 'superseded' }), (e) => assertCode(e, 'CERT_ALREADY_REVOKED'));
    await assert.rejects(ca.ca.revoke({ serial: issued[2].r.serial, reason: 'keyCompromise' }), (e) => assertCode(e, 'CERT_ALREADY_REVOKED'));
    await assert.rejects(ca.ca.revoke({ serial: '4'.repeat(32) }), (e) => assertCode(e, 'CERT_NOT_FOUND'));
    assert.equal((await auditLog(ca.ca.store)).length, before);
    await verifyAuditLog(ca.ca.store);
  });
});

// ------------------------------------------------------------------------------------------------
// Tampering with the SQLite file

describe('ca/inventory: tampering with the audit log is detected', () => {
  let dir: string;
  let pristine: string;
  let log: AuditEntry[];

  before(async () => {
    const ca = await makeTestCa({ now: NOW });
    for (let i = 0; i < 4; i++) await ca.ca.issue({ role: 'server', names: names({ dns: [`h${i}.acme.internal`] }), now: NOW });
    const c = await ca.ca.issue({ role: 'client', names: names({ uri: [id('payments')] }), now: NOW });
    await ca.ca.revoke({ serial: c.serial, reason: 'keyCompromise' });
    await ca.ca.issue({ role: 'server', names: names({ dns: ['last.acme.internal'] }), now: NOW });
    log = await auditLog(ca.ca.store);
    await ca.ca.close();
    dir = tempDir('mutual-tamper-');
    pristine = path.join(dir, 'pristine.db');
    // A consistent copy of the closed database (WAL checkpointed by the close).
    const db = new DatabaseSync(ca.layout.database);
    db.exec(`VACUUM INTO '${pristine}'`);
    db.close();
    await ca.close();
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const seqOf = (action: string) => log.find((e) => e.action === action)!.seq;

  /** One edit made with SQL behind the CA's back, and the entry the check must name. */
  const CASES: { name: string; edit: (db: DatabaseSync) => void; seq: () => number }[] = [
    { name: 'fail/tamper/details-changed', seq: () => seqOf('revoke'),
      edit: (db) => db.prepare("UPDATE audit SET details = replace(details, 'keyCompromise', 'superseded') WHERE seq = ?").run(seqOf('revoke')) },
    { name: 'fail/tamper/details-reformatted', seq: () => 3, edit: (db) => db.prepare("UPDATE audit SET details = details || ' ' WHERE seq = 3").run() },
    { name: 'fail/tamper/actor-changed', seq: () => 3, edit: (db) => db.prepare("UPDATE audit SET actor = 'mallory' WHERE seq = 3").run() },
    { name: 'fail/tamper/action-changed', seq: () => seqOf('revoke'), edit: (db) => db.prepare("UPDATE audit SET action = 'issue' WHERE seq = ?").run(seqOf('revoke')) },
    { name: 'fail/tamper/target-changed', seq: () => 4, edit: (db) => db.prepare("UPDATE audit SET target = '4444' WHERE seq = 4").run() },
    { name: 'fail/tamper/time-changed', seq: () => 2, edit: (db) => db.prepare('UPDATE audit SET at = at - 86400 WHERE seq = 2').run() },
    { name: 'fail/tamper/prev-hash-changed', seq: () => 5, edit: (db) => db.prepare("UPDATE audit SET prev_hash = '" + 'f'.repeat(64) + "' WHERE seq = 5").run() },
    { name: 'fail/tamper/middle-row-deleted', seq: () => 3, edit: (db) => db.prepare('DELETE FROM audit WHERE seq = 3').run() },
    { name: 'fail/tamper/first-row-deleted', seq: () => 1, edit: (db) => db.prepare('DELETE FROM audit WHERE seq = 1').run() },
    { name: 'fail/tamper/rows-swapped', seq: () => 3, edit: (db) => {
      db.exec('UPDATE audit SET seq = -3 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = -3;');
    } },
    { name: 'fail/tamper/row-changed-and-its-hash-recomputed', seq: () => 4, edit: (db) => {
      // Without a key, re-hashing one entry breaks the link from the next one.
      const e = log.find((x) => x.seq === 3)!;
      const hash = auditHash({ ...e, actor: 'mallory', details: e.detailsJson });
      db.prepare("UPDATE audit SET actor = 'mallory', hash = ? WHERE seq = 3").run(hash);
    } },
  ];

  for (const c of CASES) {
    test(c.name, async () => {
      const file = path.join(dir, `${c.name.replace(/\W/g, '_')}.db`);
      fs.copyFileSync(pristine, file);
      const db = new DatabaseSync(file);
      c.edit(db);
      db.close();
      const store = openSqliteStore({ path: file });
      try {
        await assert.rejects(verifyAuditLog(store), (e) => {
          assertCode(e, 'AUDIT_TAMPERED');
          assert.equal((e as { fields: { seq?: number } }).fields.seq, c.seq());
          return true;
        });
      } finally {
        await store.close();
      }
    });
  }

  test('ok/untouched-copy-verifies', async () => {
    const file = path.join(dir, 'untouched.db');
    fs.copyFileSync(pristine, file);
    const store = openSqliteStore({ path: file });
    try {
      assert.equal((await verifyAuditLog(store)).entries, log.length);
    } finally {
      await store.close();
    }
  });

  // A hash chain alone cannot show that its newest entries were cut off: the shortened chain is
  // valid. The inventory still holds the certificate whose issue entry is gone, so a consistency
  // check (every certificate has its issue entry, every revoked one its revoke entry) would.
  test('fail/tamper/last-row-deleted', async () => {
    const file = path.join(dir, 'truncated.db');
    fs.copyFileSync(pristine, file);
    const db = new DatabaseSync(file);
    db.prepare('DELETE FROM audit WHERE seq = ?').run(log.length);
    db.close();
    const store = openSqliteStore({ path: file });
    try {
      await assert.rejects(verifyAuditLog(store), (e) => assertCode(e, 'AUDIT_TAMPERED'));
    } finally {
      await store.close();
    }
  });
});

// ------------------------------------------------------------------------------------------------
// Group commit and durability

describe('ca/inventory: group commit', () => {
  let ca: TestCa;
  let batches: number[];
  before(async () => {
    ca = await makeTestCa({ now: NOW });
    batches = [];
    const store = ca.ca.store;
    const recordIssued = store.recordIssued.bind(store);
    store.recordIssued = async (records: CertificateRecord[]) => {
      batches.push(records.length);
      return recordIssued(records);
    };
  });
  after(() => ca?.close());

  test('ok/200-concurrent-issues-all-committed-with-unique-serials', async () => {
    const before = (await ca.ca.list({ limit: 100_000 })).length;
    const auditBefore = (await auditLog(ca.ca.store)).length;
    batches.length = 0;
    const other = new DatabaseSync(ca.layout.database, { readOnly: true });
    const committed = other.prepare('SELECT count(*) AS n FROM certificates WHERE der = ?');
    const seenCommitted: boolean[] = [];
    try {
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => {
        const req: IssueRequest = i % 2
          ? { role: 'server', names: names({ dns: [`n${i}.acme.internal`] }), now: NOW }
          : { role: 'client', names: names({ uri: [id(`svc${i}`)] }), now: NOW };
        return ca.ca.issue(req).then((r) => {
          // When a caller gets its certificate, another connection already sees it: committed.
          seenCommitted.push((committed.get(r.certificate) as { n: number }).n === 1);
          return r;
        });
      }));
      assert.equal(results.length, 200);
      assert.equal(new Set(results.map((r) => r.serial)).size, 200, 'unique serials');
      assert.ok(seenCommitted.length === 200 && seenCommitted.every(Boolean), 'every certificate committed before it was returned');
      const all = await ca.ca.list({ limit: 100_000 });
      assert.equal(all.length, before + 200);
      for (const r of results) assert.ok(all.some((c) => c.serial === r.serial && c.der.equals(r.certificate)), `${r.serial} in the inventory`);
      // Shared transactions: far fewer commits than certificates, none over the batch limit.
      assert.equal(batches.reduce((a, b) => a + b, 0), 200);
      assert.ok(batches.length < 200 / 10, `batches: ${batches.join(', ')}`);
      assert.ok(batches.every((n) => n <= MAX_COMMIT_BATCH));
      const log = await auditLog(ca.ca.store);
      assert.equal(log.length, auditBefore + 200);
      assert.deepEqual(log.slice(auditBefore).map((e) => e.target).sort(), results.map((r) => r.serial).sort());
      await verifyAuditLog(ca.ca.store);
    } finally {
      other.close();
    }
  });

  test('ok/more-than-one-batch-worth', async () => {
    batches.length = 0;
    const n = MAX_COMMIT_BATCH * 2 + 10;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => ca.ca.issue({ role: 'server', names: names({ dns: [`b${i}.acme.internal`] }), now: NOW })));
    assert.equal(new Set(results.map((r) => r.serial)).size, n);
    assert.equal(batches.reduce((a, b) => a + b, 0), n);
    assert.ok(batches.every((b) => b <= MAX_COMMIT_BATCH), `batches: ${batches.join(', ')}`);
    await verifyAuditLog(ca.ca.store);
  });

  test('fail/store-failure-returns-no-certificate', async () => {
    const store = ca.ca.store as CaStore & { db?: DatabaseSync };
    assert.ok(store.db, 'the SQLite store');
    const before = (await ca.ca.list({ limit: 100_000 })).length;
    const auditBefore = (await auditLog(ca.ca.store)).length;
    store.db.exec('PRAGMA query_only = ON');
    try {
      const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => ca.ca.issue({ role: 'server', names: names({ dns: [`f${i}.acme.internal`] }), now: NOW })));
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assertCode(r.reason, 'STORE_FAILED');
      }
    } finally {
      store.db.exec('PRAGMA query_only = OFF');
    }
    assert.equal((await ca.ca.list({ limit: 100_000 })).length, before);
    assert.equal((await auditLog(ca.ca.store)).length, auditBefore);
    // The CA goes on issuing afterwards, and the chain is intact.
    await ca.ca.issue({ role: 'server', names: names({ dns: ['after.acme.internal'] }), now: NOW });
    await verifyAuditLog(ca.ca.store);
  });
});

describe('ca/inventory: reopening the CA', () => {
  test('ok/inventory-and-audit-chain-survive-a-reopen', async () => {
    const ca = await makeTestCa({ now: NOW });
    try {
      const first = await ca.ca.issue({ role: 'server', names: names({ dns: ['one.acme.internal'] }), now: NOW });
      const headBefore = await verifyAuditLog(ca.ca.store);
      await ca.ca.close();
      const again = await openAuthority({ home: ca.home, passphrase: TEST_PASSPHRASE, now: () => NOW });
      try {
        assert.equal((await again.find({ serial: first.serial })).serial, first.serial);
        const second = await again.issue({ role: 'client', names: names({ uri: [id('two')] }) });
        await again.revoke({ serial: first.serial });
        const r = await verifyAuditLog(again.store);
        assert.equal(r.entries, headBefore.entries + 2);
        const log = await auditLog(again.store);
        assert.equal(log[headBefore.entries].prevHash, headBefore.head, 'the chain continues from the old head');
        assert.deepEqual(log.slice(headBefore.entries).map((e) => [e.action, e.target]), [['issue', second.serial], ['revoke', first.serial]]);
      } finally {
        await again.close();
      }
    } finally {
      await ca.close();
    }
  });
});
