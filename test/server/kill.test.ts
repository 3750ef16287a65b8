/**
 * Fault: `mutual serve` (the real CLI in its own process) is killed with SIGKILL during a burst of
 * concurrent admin issuance. After a restart on the same state folder, every certificate a client
 * received (201) is in the inventory byte for byte, no serial appears twice, the database is intact
 * (SQLite `integrity_check`) and the audit chain verifies. The same with PostgreSQL when
 * MUTUAL_TEST_PG is set.
 */
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { verifyAuditLog } from '../../src/ca/audit.ts';
import type { CaStore } from '../../src/ca/store.ts';
import { generateKeyPair } from '../../src/core/algorithms.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { toPem } from '../../src/core/pem.ts';
import { openSqliteStore } from '../../src/store/sqlite-store.ts';
import { openPostgresStore, type PostgresStore } from '../../src/store/postgres-store.ts';
import { makeTestCa, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';
import { dropSchema, freshSchema, pgSkip, pgUrl, send, spawnServe as serve, waitFor, type Running, type SendTls } from '../helpers/server.ts';

/** Concurrent issuing clients. */
const CLIENTS = 8;
/** How long the burst runs before the kill (at least; it also waits for some certificates). */
const RUN_MS = 1000;

/** What the clients received before the kill. */
interface Received {
  serial: string;
  certificate: string;
}

/** Runs the burst, SIGKILLs the server after RUN_MS (and at least 16 certificates), and returns what clients received. */
async function burstAndKill(tc: TestCa, srv: Running, admin: SendTls): Promise<{ received: Received[]; failures: number }> {
  const received: Received[] = [];
  let failures = 0;
  let killed = false;
  const csrs = Array.from({ length: CLIENTS }, (_, i) => toPem(buildCsr({ privateKey: generateKeyPair('p256').privateKey, commonName: `k${i}`, names: { dns: [`k${i}.acme.internal`], ip: [], uri: [] } }), 'CERTIFICATE REQUEST'));
  const loop = async (i: number) => {
    // Keep-alive, as a real client under load would: the burst is many certificates, not handshakes.
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      while (!killed) await once(i, agent);
    } finally {
      agent.destroy();
    }
  };
  const once = async (i: number, agent: https.Agent) => {
    try {
      const r = await send(`${srv.url}/v1/sign`, { body: { profile: 'server', csr: csrs[i] }, tls: admin, agent });
      if (r.status === 201) received.push({ serial: r.json.serial, certificate: r.json.certificate });
      else assert.fail(`unexpected answer before the kill: ${r.status} ${r.body}`);
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_ASSERTION') throw e;
      // A request in flight when the process died: the client never got a certificate.
      failures++;
    }
  };
  const loops = Array.from({ length: CLIENTS }, (_, i) => loop(i));
  const started = Date.now();
  await waitFor('a burst of issuance', 30_000, () => (Date.now() - started >= RUN_MS && received.length >= 16 ? true : undefined));
  srv.child.kill('SIGKILL');
  killed = true;
  const e = await srv.exited;
  assert.equal(e.signal, 'SIGKILL', srv.output());
  await Promise.all(loops);
  return { received, failures };
}

/** Checks, over the API of the restarted server, that every received certificate is there, once. */
async function checkOverApi(t: TestContext, srv: Running, admin: SendTls, received: Received[]): Promise<void> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 8 });
  try {
    const list = await send(`${srv.url}/v1/certificates?all=1&limit=10000`, { tls: admin, agent });
    assert.equal(list.status, 200);
    const serials: string[] = list.json.items.map((i: { serial: string }) => i.serial);
    assert.equal(new Set(serials).size, serials.length, 'a serial is listed twice');
    const listed = new Set(serials);
    const missing = received.filter((r) => !listed.has(r.serial));
    assert.deepEqual(missing.map((r) => r.serial), [], 'certificates a client received are missing after the restart');
    // Each one byte for byte, a few at a time.
    for (let i = 0; i < received.length; i += 16) {
      await Promise.all(received.slice(i, i + 16).map(async (r) => {
        const one = await send(`${srv.url}/v1/certificates/${r.serial}`, { tls: admin, agent });
        assert.equal(one.status, 200, r.serial);
        assert.equal(one.json.certificate, r.certificate, r.serial);
      }));
    }
    t.diagnostic(`${received.length} certificates received before the kill; ${serials.length} in the inventory after`);
  } finally {
    agent.destroy();
  }
}

/** Checks the store directly: unique serials, every received certificate with its audit entry, the chain. */
async function checkStore(store: CaStore, received: Received[]): Promise<void> {
  const rows = await store.listCertificates({ limit: 1_000_000 });
  const bySerial = new Map(rows.map((r) => [r.serial, r]));
  assert.equal(bySerial.size, rows.length, 'a serial appears twice in the inventory');
  for (const r of received) {
    const stored = bySerial.get(r.serial);
    assert.ok(stored, `${r.serial} is not in the inventory`);
    assert.equal(toPem(stored.der, 'CERTIFICATE'), r.certificate, r.serial);
  }
  const issued = new Set<string>();
  for await (const e of store.auditEntries()) if (e.action === 'issue') issued.add(e.target);
  for (const r of received) assert.ok(issued.has(r.serial), `${r.serial} has no audit entry`);
  const v = await verifyAuditLog(store);
  assert.ok(v.entries >= received.length);
}

/** The whole scenario on one state folder (and, for PostgreSQL, one schema). */
async function scenario(t: TestContext, db?: { url: string; schema: string }): Promise<void> {
  // On PostgreSQL the CA is made there (as `mutual init --database` does), so its admin is known to it.
  const tc = await makeTestCa(db ? { databaseUrl: db.url, databaseSchema: db.schema } : {});
  await tc.ca.close();
  const admin: SendTls = { ca: tc.init.rootPem, cert: tc.init.admin.certificatePem, key: tc.init.admin.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
  const running: Running[] = [];
  try {
    const t0 = Date.now();
    const first = await serve(tc, db);
    running.push(first);
    t.diagnostic(`started in ${Date.now() - t0} ms`);
    const { received, failures } = await burstAndKill(tc, first, admin);
    t.diagnostic(`${failures} requests in flight at the kill`);

    const second = await serve(tc, db);
    running.push(second);
    await checkOverApi(t, second, admin, received);
    // The restarted server still issues.
    const csr = toPem(buildCsr({ privateKey: generateKeyPair('p256').privateKey, commonName: 'after', names: { dns: ['after.acme.internal'], ip: [], uri: [] } }), 'CERTIFICATE REQUEST');
    assert.equal((await send(`${second.url}/v1/sign`, { body: { profile: 'server', csr }, tls: admin })).status, 201);
    // A graceful stop this time.
    second.child.kill('SIGTERM');
    const e = await second.exited;
    assert.equal(e.code, 0, `SIGTERM: ${e.signal} ${second.output()}`);

    if (!db) {
      const sqlite = new DatabaseSync(tc.layout.database);
      try {
        assert.deepEqual(sqlite.prepare('PRAGMA integrity_check').all().map((r) => (r as { integrity_check: string }).integrity_check), ['ok']);
      } finally {
        sqlite.close();
      }
      const store = openSqliteStore({ path: tc.layout.database });
      try {
        await checkStore(store, received);
      } finally {
        await store.close();
      }
    } else {
      const store: PostgresStore = await openPostgresStore({ connectionString: db.url, schema: db.schema });
      try {
        const { rows } = await store.pool.query('SELECT count(*) AS n, count(DISTINCT serial) AS d FROM certificates');
        assert.equal(Number(rows[0].n), Number(rows[0].d), 'duplicate serials');
        await checkStore(store, received);
      } finally {
        await store.close();
      }
    }
  } finally {
    for (const r of running) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
    await Promise.all(running.map((r) => r.exited));
    fs.rmSync(tc.dir, { recursive: true, force: true });
  }
}

test('ok/sigkill-during-issuance-sqlite', async (t) => {
  await scenario(t);
});

describe('postgres', { skip: pgSkip() }, () => {
  test('ok/sigkill-during-issuance-postgres', async (t) => {
    const url = pgUrl();
    const schema = freshSchema();
    try {
      await scenario(t, { url, schema });
    } finally {
      await dropSchema(schema);
    }
  });
});
