/**
 * The PostgreSQL schema's migrations: run by every store as it opens, under a session advisory
 * lock, so replicas starting together do not race.
 */
import type { Pool } from 'pg';
import { POSTGRES_MIGRATIONS } from './migrations.ts';
import { hold, LOCK_CLASS } from './postgres-connection.ts';
import { sec } from './rows.ts';

/** Creates the schema and applies pending migrations, one transaction each, under a session advisory lock. */
export async function migratePostgres(pool: Pool, schema: string): Promise<void> {
  const h = await hold(pool);
  const { c } = h;
  try {
    await c.query('SELECT pg_advisory_lock($1, hashtext($2))', [LOCK_CLASS.migrate, schema]);
    try {
      // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the
      // schema exists, which an application role given a ready schema may not have.
      const exists = await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
      if (exists.rows.length === 0) await c.query(`CREATE SCHEMA ${schema}`);
      // Again, now that the schema exists (the pool set it when the connection opened).
      await c.query(`SET search_path TO ${schema}`);
      await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)');
      const done = new Set((await c.query('SELECT version FROM schema_migrations')).rows.map((r) => Number(r.version)));
      for (const m of POSTGRES_MIGRATIONS) {
        if (done.has(m.version)) continue;
        await c.query('BEGIN');
        try {
          await c.query(m.sql);
          await c.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [m.version, sec(new Date())]);
          await c.query('COMMIT');
        } catch (e) {
          await c.query('ROLLBACK').catch(h.fail);
          throw e;
        }
      }
    } finally {
      // If unlocking fails the connection is destroyed, and the server drops the lock with it.
      await c.query('SELECT pg_advisory_unlock($1, hashtext($2))', [LOCK_CLASS.migrate, schema]).catch(h.fail);
    }
  } catch (e) {
    h.fail(e as Error);
    throw e;
  } finally {
    h.release();
  }
}
