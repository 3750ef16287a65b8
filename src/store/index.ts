/** The CaStore implementations (SQLite, PostgreSQL) and the one function that opens one. Exports by name only. */
export { openSqliteStore } from './sqlite-store.ts';
export { openPostgresStore } from './postgres-store.ts';
export { openStore } from './open-store.ts';
