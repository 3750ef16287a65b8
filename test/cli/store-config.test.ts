/**
 * Issue 13, item 14: every command reaches the store the CA is configured with. A CA made by
 * `mutual init --database postgres://...` keeps everything in PostgreSQL, and `issue`, `list`,
 * `inspect`, `revoke`, `audit verify` and `intermediate install`, run as real processes, see and
 * change the PostgreSQL data (they used to open the SQLite file in the state folder: "intact: 2
 * entries" while PostgreSQL held 694, CERT_NOT_FOUND on revoke). MUTUAL_DATABASE_URL does the same
 * for one run without writing the URL anywhere. Item 15's CLI side: a garbled audit row gives
 * AUDIT_TAMPERED and exit 4 on both stores, not a stack trace.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { tempDir } from '../helpers/test-ca.ts';
import { dropSchema, freshSchema, PG_URL, pgSkip } from '../store/fixtures.ts';
import { errorCode, explain, json, mutual, type CliResult } from './cli-helper.ts';

const dir = tempDir('mutual-cli-store-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function expectOk(r: CliResult): void {
  assert.equal(r.status, 0, explain(r));
}
function expectError(r: CliResult, exit: number, code: string): void {
  assert.equal(r.status, exit, explain(r));
  assert.equal(errorCode(r), code, explain(r));
}
const serialOf = (certFile: string) => new crypto.X509Certificate(fs.readFileSync(certFile)).serialNumber.toLowerCase().replace(/^0+/, '');

async function pgQuery(schema: string, text: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    await c.query(`SET search_path TO ${schema}`);
    return (await c.query(text)).rows;
  } finally {
    await c.end();
  }
}

describe('postgres: a CA configured in config.yaml', { skip: pgSkip() }, () => {
  const schema = freshSchema();
  const home = path.join(dir, 'pg-home');
  const cli = (args: string[], env: Record<string, string | undefined> = {}) => mutual(['--home', home, '--json', ...args], { env });
  const certFile = path.join(dir, 'payments', 'cert.pem');
  after(() => dropSchema(schema));

  before(async () => {
    expectOk(await cli(['init', '--trust-domain', 'acme.internal', '--offline-dir', path.join(dir, 'pg-offline'), '--database', PG_URL!, '--database-schema', schema]));
    expectOk(await cli(['issue', 'client', 'payments', '--out', path.join(dir, 'payments')]));
  });

  test('ok/init-and-issue-wrote-to-postgres-not-sqlite', async () => {
    assert.match(fs.readFileSync(path.join(home, 'config.yaml'), 'utf8'), new RegExp(`schema: ${schema}`));
    assert.ok(!fs.existsSync(path.join(home, 'mutual.db')), 'no command opened the SQLite file');
    const rows = await pgQuery(schema, 'SELECT count(*)::int AS n FROM certificates');
    assert.equal(rows[0].n, 2, 'the admin certificate and payments');
  });

  test('ok/list-and-inspect-see-postgres', async () => {
    const list = await cli(['list']);
    expectOk(list);
    assert.ok(json<{ serial: string }[]>(list).some((c) => c.serial === serialOf(certFile)), explain(list));
    const inspect = await cli(['inspect', certFile]);
    expectOk(inspect);
    assert.match(JSON.stringify(json(inspect)), /valid \(in inventory\)/);
  });

  test('ok/revoke-changes-postgres-and-audit-verify-counts-its-entries', async () => {
    expectOk(await cli(['revoke', certFile, '--reason', 'keyCompromise']));
    const rows = await pgQuery(schema, `SELECT status FROM certificates WHERE identity = 'spiffe://acme.internal/prod/payments'`);
    assert.deepEqual(rows.map((r) => r.status), ['revoked']);
    const listed = json<{ serial: string; status: string }[]>(await cli(['list', '--status', 'revoked']));
    assert.deepEqual(listed.map((c) => c.serial), [serialOf(certFile)]);

    const verify = await cli(['audit', 'verify']);
    expectOk(verify);
    const [{ n }] = await pgQuery(schema, 'SELECT count(*)::int AS n FROM audit');
    assert.equal(json<{ entries: number }>(verify).entries, n);
  });

  test('ok/intermediate-install-audits-in-postgres', async () => {
    const csr = path.join(dir, 'client-ca.csr');
    const signed = path.join(dir, 'client-ca.pem');
    expectOk(await cli(['intermediate', 'csr', '--role', 'client', '--out', csr]));
    expectOk(await cli(['offline', 'sign-intermediate', csr, '--role', 'client', '--offline-dir', path.join(dir, 'pg-offline'), '--out', signed]));
    expectOk(await cli(['intermediate', 'install', signed, '--role', 'client']));
    const rows = await pgQuery(schema, `SELECT target FROM audit WHERE action = 'install-intermediate'`);
    assert.deepEqual(rows.map((r) => r.target), ['client-ca']);
    assert.ok(!fs.existsSync(path.join(home, 'mutual.db')));
  });
});

describe('postgres: a CA given by MUTUAL_DATABASE_URL for one run', { skip: pgSkip() }, () => {
  const schema = freshSchema();
  const home = path.join(dir, 'env-home');
  const env = { MUTUAL_DATABASE_URL: PG_URL, MUTUAL_DATABASE_SCHEMA: schema };
  const cli = (args: string[], e: Record<string, string | undefined> = env) => mutual(['--home', home, '--json', ...args], { env: e });
  after(() => dropSchema(schema));

  test('ok/every-command-follows-the-variable-and-config-yaml-keeps-no-url', async () => {
    expectOk(await cli(['init', '--trust-domain', 'acme.internal', '--offline-dir', path.join(dir, 'env-offline')]));
    assert.ok(!/database/.test(fs.readFileSync(path.join(home, 'config.yaml'), 'utf8')), 'the URL (which may hold a password) is not written down');
    expectOk(await cli(['issue', 'server', 'api.acme.internal', '--out', path.join(dir, 'api')]));
    const [{ n }] = await pgQuery(schema, 'SELECT count(*)::int AS n FROM certificates');
    assert.equal(n, 2);
    const list = await cli(['list']);
    expectOk(list);
    assert.equal(json<unknown[]>(list).length, 2);
    // Without the variable the CA has no database setting: the (empty) SQLite file, not PostgreSQL.
    const without = await cli(['list'], { MUTUAL_DATABASE_URL: undefined, MUTUAL_DATABASE_SCHEMA: undefined });
    expectOk(without);
    assert.equal(json<unknown[]>(without).length, 0);
  });
});

describe('database settings that are refused', () => {
  test('fail/config-url-with-a-password', async () => {
    const r = await mutual(['--home', path.join(dir, 'pw-home'), '--json', 'init', '--trust-domain', 'acme.internal', '--offline-dir', path.join(dir, 'pw-offline'),
      '--database', 'postgres://mutual:hunter2-secret@127.0.0.1:5432/test']);
    expectError(r, 4, 'CONFIG_INVALID');
    assert.ok(!fs.existsSync(path.join(dir, 'pw-home', 'config.yaml')));
  });

  test('fail/unreachable-database-is-a-coded-error-without-the-password', async () => {
    const h = path.join(dir, 'down-home');
    const r = await mutual(['--home', h, '--json', 'init', '--trust-domain', 'acme.internal', '--offline-dir', path.join(dir, 'down-offline')],
      { env: { MUTUAL_DATABASE_URL: 'postgres://mutual:hunter2-secret@127.0.0.1:1/test' } });
    expectError(r, 4, 'STORE_UNAVAILABLE');
    assert.ok(!(r.stdout + r.stderr).includes('hunter2-secret'), explain(r));
    assert.ok(!fs.existsSync(path.join(h, 'config.yaml')) && !fs.existsSync(path.join(dir, 'down-offline', 'root.key.pem')), 'no half-made CA');
  });

  test('fail/variable-that-is-not-postgres', async () => {
    const r = await mutual(['--home', path.join(dir, 'pw-home'), '--json', 'init', '--trust-domain', 'acme.internal', '--offline-dir', path.join(dir, 'my-offline')],
      { env: { MUTUAL_DATABASE_URL: 'mysql://127.0.0.1/test' } });
    expectError(r, 4, 'CONFIG_INVALID');
  });
});

describe('sqlite: the embedded default', () => {
  const home = path.join(dir, 'sqlite-home');
  const cli = (args: string[]) => mutual(['--home', home, '--json', ...args]);
  const edit = (sql: string) => {
    const db = new DatabaseSync(path.join(home, 'mutual.db'));
    try {
      db.exec(sql);
    } finally {
      db.close();
    }
  };
  before(async () => expectOk(await cli(['init', '--trust-domain', 'acme.internal', '--offline-dir', path.join(dir, 'sqlite-offline')])));

  test('fail/log-cut-short-shows-against-a-recorded-head', async () => {
    const v = await cli(['audit', 'verify']);
    expectOk(v);
    const { head, entries } = json<{ head: string; entries: number }>(v);
    expectOk(await cli(['audit', 'verify', '--head', head.slice(0, 16)]));
    // The last entry is init's own (no certificate): cut off, the shorter chain is still valid...
    edit(`DELETE FROM audit WHERE seq = ${entries}`);
    expectOk(await cli(['audit', 'verify']));
    // ...but no longer holds the head recorded before.
    expectError(await cli(['audit', 'verify', '--head', head]), 4, 'AUDIT_TAMPERED');
    assert.equal((await cli(['audit', 'verify', '--head', 'xyz'])).status, 2, 'a head that is not hex is a usage error');
  });
});

/**
 * Item 15 through the CLI: each kind of damage to the audit log, on each store, is AUDIT_TAMPERED
 * and exit 4 from `mutual audit verify` (a garbled row used to be a SyntaxError stack trace, exit
 * 1). The log is put back between cases from a copy kept in the same database.
 */
const TAMPER: { name: string; sql: string[] }[] = [
  { name: 'fail/edited', sql: ["UPDATE audit SET actor = 'mallory' WHERE seq = 2"] },
  { name: 'fail/garbled', sql: ["UPDATE audit SET details = details || 'x' WHERE seq = 2"] },
  { name: 'fail/deleted', sql: ['DELETE FROM audit WHERE seq = 2'] },
  { name: 'fail/reordered', sql: ['UPDATE audit SET seq = 1000 WHERE seq = 1', 'UPDATE audit SET seq = 1 WHERE seq = 2', 'UPDATE audit SET seq = 2 WHERE seq = 1000'] },
  { name: 'fail/truncated', sql: ["DELETE FROM audit WHERE seq >= (SELECT max(seq) FROM audit WHERE action = 'issue')"] },
];

function tamperSuite(name: string, o: { skip?: string; home: string; init: () => string[]; env: () => Record<string, string | undefined>; sql: (q: string) => Promise<unknown>; cleanup?: () => Promise<void> }): void {
  describe(`${name}: audit verify on a tampered log`, { skip: o.skip }, () => {
    const cli = (args: string[]) => mutual(['--home', o.home, '--json', ...args], { env: o.env() });
    before(async () => {
      expectOk(await cli(o.init()));
      expectOk(await cli(['issue', 'server', 'api.acme.internal', '--out', `${o.home}-api`]));
      expectOk(await cli(['audit', 'verify']));
      await o.sql('CREATE TABLE audit_copy AS SELECT * FROM audit');
    });
    after(async () => o.cleanup?.());
    for (const c of TAMPER) {
      test(c.name, async () => {
        for (const q of c.sql) await o.sql(q);
        try {
          const r = await cli(['audit', 'verify']);
          expectError(r, 4, 'AUDIT_TAMPERED');
          assert.ok(!/SyntaxError|\n\s+at /.test(r.stderr), explain(r));
        } finally {
          await o.sql('DELETE FROM audit');
          await o.sql('INSERT INTO audit SELECT * FROM audit_copy');
        }
      });
    }
    test('ok/restored-log-verifies', async () => expectOk(await cli(['audit', 'verify'])));
  });
}

{
  const home = path.join(dir, 'tamper-sqlite');
  tamperSuite('sqlite', {
    home,
    init: () => ['init', '--trust-domain', 'acme.internal', '--offline-dir', `${home}-offline`],
    env: () => ({}),
    async sql(q) {
      const db = new DatabaseSync(path.join(home, 'mutual.db'));
      try {
        db.exec(q);
      } finally {
        db.close();
      }
    },
  });
}
{
  const schema = freshSchema();
  const home = path.join(dir, 'tamper-pg');
  tamperSuite('postgres', {
    skip: pgSkip(),
    home,
    init: () => ['init', '--trust-domain', 'acme.internal', '--offline-dir', `${home}-offline`, '--database', PG_URL!, '--database-schema', schema],
    env: () => ({}),
    sql: (q) => pgQuery(schema, q),
    cleanup: () => dropSchema(schema),
  });
}
