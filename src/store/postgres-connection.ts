/**
 * The PostgreSQL store's connections and advisory locks, shared by its queries
 * (postgres-store.ts) and its migrations (postgres-migrate.ts).
 */
import type { Pool, PoolClient } from 'pg';

/**
 * Advisory lock classes (the first key of pg_advisory_lock(int, int)); "mut" followed by 1 to 4,
 * chosen to stay clear of other applications' locks on a shared server (4: a renewal lineage).
 */
export const LOCK_CLASS = { migrate: 0x6d757401, audit: 0x6d757402, job: 0x6d757403, lineage: 0x6d757404 } as const;

/**
 * A pooled connection held by the store. pg-pool listens for 'error' only on idle connections; one
 * that dies while checked out (server restart, network) would emit an unhandled 'error' and end
 * the process. The listener records the loss instead (the pending or next query fails too), and
 * `release` then destroys the connection rather than pooling it.
 */
export interface Held {
  c: PoolClient;
  /** Marks the connection unusable (it is destroyed on release). */
  fail(e: Error): void;
  release(): void;
}

/** Takes a connection from the pool, watched for errors while it is held (see {@link Held}). */
export async function hold(pool: Pool): Promise<Held> {
  const c = await pool.connect();
  let lost: Error | undefined;
  const onError = (e: Error) => void (lost ??= e);
  c.on('error', onError);
  return {
    c,
    fail: onError,
    release() {
      c.off('error', onError);
      c.release(lost);
    },
  };
}
