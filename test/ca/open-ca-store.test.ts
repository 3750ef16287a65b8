/**
 * resolveStoreLocation: the one decision of where a CA's inventory is (issue 13, item 14). First
 * match wins: the caller's option, the environment (only when passed), config.yaml, else SQLite.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveStoreLocation, type StoreLocation } from '../../src/ca/open-ca-store.ts';
import { renderConfig, validateConfig } from '../../src/ca/config.ts';
import { isMutualError } from '../../src/core/errors.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-store-location-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
const PG = 'postgres://mutual@db.internal:5432/ca';

let n = 0;
/** A state folder whose config.yaml has this `database` (or none). */
function home(database?: { url: string; schema?: string }): string {
  const h = path.join(root, `home-${++n}`);
  fs.mkdirSync(h);
  fs.writeFileSync(path.join(h, 'config.yaml'), renderConfig(validateConfig({ trustDomain: 'acme.internal', name: 'Acme', ...(database ? { database } : {}) })));
  return h;
}

const CASES: { name: string; database?: { url: string; schema?: string }; option?: string; schema?: string; env?: NodeJS.ProcessEnv; want: (h: string) => StoreLocation }[] = [
  { name: 'ok/default-sqlite-in-the-home', want: (h) => ({ kind: 'sqlite', path: path.join(h, 'mutual.db'), from: 'default' }) },
  { name: 'ok/config-yaml', database: { url: PG, schema: 'ca_prod' }, want: () => ({ kind: 'postgres', url: PG, schema: 'ca_prod', from: 'config' }) },
  { name: 'ok/config-yaml-default-schema', database: { url: PG }, want: () => ({ kind: 'postgres', url: PG, schema: 'public', from: 'config' }) },
  { name: 'ok/environment-over-config', database: { url: PG, schema: 'ca_prod' }, env: { MUTUAL_DATABASE_URL: 'postgresql://other/db', MUTUAL_DATABASE_SCHEMA: 'ca_env' }, want: () => ({ kind: 'postgres', url: 'postgresql://other/db', schema: 'ca_env', from: 'environment' }) },
  { name: 'ok/empty-variable-is-unset', database: { url: PG }, env: { MUTUAL_DATABASE_URL: '' }, want: () => ({ kind: 'postgres', url: PG, schema: 'public', from: 'config' }) },
  { name: 'ok/option-over-everything', database: { url: PG }, option: 'postgres://opt/db', schema: 'ca_opt', env: { MUTUAL_DATABASE_URL: 'postgres://env/db' }, want: () => ({ kind: 'postgres', url: 'postgres://opt/db', schema: 'ca_opt', from: 'option' }) },
];

for (const c of CASES) {
  test(c.name, () => {
    const h = home(c.database);
    assert.deepEqual(resolveStoreLocation({ home: h, databaseUrl: c.option, databaseSchema: c.schema, env: c.env }), c.want(h));
  });
}

test('ok/process-environment-not-read-unless-passed', () => {
  const h = home();
  const before = process.env.MUTUAL_DATABASE_URL;
  process.env.MUTUAL_DATABASE_URL = PG;
  try {
    assert.equal(resolveStoreLocation({ home: h }).kind, 'sqlite');
    assert.equal(resolveStoreLocation({ home: h, env: process.env }).kind, 'postgres');
  } finally {
    if (before === undefined) delete process.env.MUTUAL_DATABASE_URL;
    else process.env.MUTUAL_DATABASE_URL = before;
  }
});

const FAILS: { name: string; run: () => unknown }[] = [
  { name: 'fail/variable-not-postgres', run: () => resolveStoreLocation({ home: home(), env: { MUTUAL_DATABASE_URL: 'mysql://db/ca' } }) },
  { name: 'fail/option-not-postgres', run: () => resolveStoreLocation({ home: home(), databaseUrl: '/var/lib/ca.db' }) },
  { name: 'fail/schema-not-an-identifier', run: () => resolveStoreLocation({ home: home(), databaseUrl: PG, databaseSchema: 'ca; DROP TABLE audit' }) },
  { name: 'fail/config-url-with-a-password', run: () => validateConfig({ trustDomain: 'acme.internal', name: 'Acme', database: { url: 'postgres://mutual:s3cret@db/ca' } }) },
  { name: 'fail/config-url-with-a-password-parameter', run: () => validateConfig({ trustDomain: 'acme.internal', name: 'Acme', database: { url: 'postgres://db/ca?password=s3cret' } }) },
  { name: 'fail/config-url-not-postgres', run: () => validateConfig({ trustDomain: 'acme.internal', name: 'Acme', database: { url: 'sqlite:///tmp/x.db' } }) },
];
for (const c of FAILS) {
  test(c.name, () => {
    assert.throws(c.run, (e) => isMutualError(e, 'CONFIG_INVALID') && !String((e as Error).message).includes('s3cret'));
  });
}

// The monitor's inventory source may name a database without a state folder (monitor.yaml
// `sources.inventory.databaseUrl`): it goes through the same resolution, URL checks included.
test('ok/a-database-url-without-a-state-folder', () => {
  assert.deepEqual(resolveStoreLocation({ databaseUrl: 'postgres://mon@db.internal/ca', databaseSchema: 'mutual' }),
    { kind: 'postgres', url: 'postgres://mon@db.internal/ca', schema: 'mutual', from: 'option' });
});

test('fail/no-database-url-and-no-state-folder', () => {
  assert.throws(() => resolveStoreLocation({}), (e) => isMutualError(e, 'CONFIG_INVALID') && /no state folder/.test(String(e.fields.detail)));
});

test('fail/a-database-url-that-is-not-postgres-without-a-state-folder', () => {
  assert.throws(() => resolveStoreLocation({ databaseUrl: 'mysql://mon@db.internal/ca' }), (e) => isMutualError(e, 'CONFIG_INVALID') && /postgres/.test(String(e.fields.detail)));
});
