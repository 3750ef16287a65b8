/**
 * The inventory expiry scan on the SQLite store: both of scanExpiry's plans (wide and narrow
 * window) and the listing fallback used for other stores give the same answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite-store.ts';
import type { CaStore, CertificateRecord } from '../../src/ca/store.ts';
import { scanInventory } from '../../src/monitor/scan-inventory.ts';
import { tempDir } from '../helpers/test-ca.ts';

const DAY = 86_400_000;
const now = new Date('2027-03-01T00:00:00Z');
const at = (days: number) => new Date(now.getTime() + days * DAY);

function record(identity: string | undefined, subject: string, notAfterDays: number, role: 'server' | 'client' = identity ? 'client' : 'server'): CertificateRecord {
  return {
    issuerKeyId: role === 'server' ? 'aa' : 'bb', serial: crypto.randomBytes(16).toString('hex').replace(/^0+/, '1'), role, subject, identity,
    names: { dns: identity ? [] : [subject.replace('CN=', '')], ip: [], uri: identity ? [identity] : [] },
    notBefore: at(notAfterDays - 90), notAfter: at(notAfterDays), fingerprint: 'f', der: Buffer.from([0x30, 0]), issuedAt: at(notAfterDays - 90), issuedBy: 'test',
  };
}

/** A record living `lifetimeHours`, `leftHours` from expiry at `now`, issued by `actor`. */
function shortLived(identity: string | undefined, subject: string, role: 'server' | 'client' | 'ocsp', lifetimeHours: number, leftHours: number, actor = 'test'): CertificateRecord {
  const r = record(identity, subject, 0, role === 'ocsp' ? 'server' : role);
  const notAfter = new Date(now.getTime() + leftHours * 3_600_000);
  return { ...r, role, notAfter, notBefore: new Date(notAfter.getTime() - lifetimeHours * 3_600_000), issuedBy: actor, names: role === 'ocsp' ? { dns: [], ip: [], uri: [] } : r.names };
}

/** A store with `filler` healthy subjects (to widen or narrow the window) and the interesting ones. */
function makeStore(filler: number): { store: SqliteStore; dir: string } {
  const dir = tempDir();
  const store = openSqliteStore({ path: path.join(dir, 'inv.db') });
  const recs: CertificateRecord[] = [
    record('spiffe://t/prod/renewed', 'CN=renewed', 5), record('spiffe://t/prod/renewed', 'CN=renewed', 85),
    record('spiffe://t/prod/expiring', 'CN=expiring', 10),
    record('spiffe://t/prod/expired', 'CN=expired', -2),
    record('spiffe://t/prod/old', 'CN=old', -40),
    record(undefined, 'CN=web.t', 3), record(undefined, 'CN=web.t', 2), // the newer of two still expires: reported once, the later one
    record(undefined, 'CN=api.t', 1), record(undefined, 'CN=api.t', 60),
    // Lifetimes and schedules (issue 14 item 3): a 24 h client certificate with 20 h left is not news,
    // with 1 h left it is; serve's OCSP responder (2 days, renewed at half) and TLS certificate
    // (7 days, renewed at 2/3) only once their renewal is overdue.
    shortLived('spiffe://t/prod/short-fresh', 'CN=short-fresh', 'client', 24, 20),
    shortLived('spiffe://t/prod/short-ending', 'CN=short-ending', 'client', 24, 1),
    shortLived(undefined, 'CN=t server OCSP responder', 'ocsp', 48, 47, 'ocsp-responder'),
    shortLived(undefined, 'CN=t client OCSP responder', 'ocsp', 48, 12, 'ocsp-responder'),
    shortLived(undefined, 'CN=localhost', 'server', 7 * 24, 6 * 24, 'serve'),
    shortLived(undefined, 'CN=ca.t', 'server', 7 * 24, 30, 'serve'),
  ];
  for (let i = 0; i < filler; i++) recs.push(record(`spiffe://t/prod/filler${i}`, `CN=filler${i}`, 45 + (i % 40)));
  store.recordIssuedSync(recs);
  return { store, dir };
}

const scan = async (store: CaStore) => {
  const r = await scanInventory({ store, now, thresholdsDays: [30, 14, 7, 1], criticalDays: 7, expiredLookbackDays: 30 });
  return r.findings.map((f) => `${f.subject}:${f.level}`).sort();
};

const expected = [
  'ca.t:renewal-overdue', 'spiffe://t/prod/expired:expired', 'spiffe://t/prod/expiring:14d', 'spiffe://t/prod/short-ending:7d', 't client OCSP responder:renewal-overdue', 'web.t:7d',
];

for (const [name, filler] of [['ok/wide window: one grouping scan', 0], ['ok/narrow window: the window\'s subjects first', 400]] as const) {
  test(name, async () => {
    const { store, dir } = makeStore(filler);
    try {
      assert.deepEqual(await scan(store), expected);
      // The same through listCertificates, as a store without scanExpiry is read.
      const listing: CaStore = { ...Object.fromEntries(['listCertificates', 'getCertificate'].map((m) => [m, (store as unknown as Record<string, (...a: unknown[]) => unknown>)[m].bind(store)])) } as unknown as CaStore;
      assert.deepEqual(await scan(listing), expected);
      const counts = store.scanExpiry({ from: at(-30), to: at(30), now }, () => {});
      assert.equal(counts.total, 15 + filler);
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}
