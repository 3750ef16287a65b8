/**
 * `mutual serve` is a transport (issue 15 item 1): src/server routes, authenticates, parses and
 * answers; lifecycle policy (renewal windows, lineage, CRL and responder schedules) lives in
 * src/ca. A source scan keeps it so: nothing in src/server imports the store implementations
 * (src/store) or reaches through the authority to its store (`ca.store.x`), none of the lifecycle constants
 * or store calls appears there, and no file there grows past ~500 lines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const SERVER_DIR = path.join(import.meta.dirname, '../../src/server');
/** The size a file may reach before it is split (the "~500 lines"). */
const MAX_LINES = 500;

/** Names that belong to the lifecycle in src/ca (or to the store), never to the transport. */
const LIFECYCLE_NAMES = [
  'RENEWAL_WINDOW_SECONDS', 'RENEWALS_PER_WINDOW', 'CRL_LIFETIME_MS', 'CRL_REFRESH_FRACTION', 'RESPONDER_CERT_SECONDS', 'ROTATION_RETRY_MS',
  'SELF_RENEWAL_FRACTION', 'recordRenewal', 'recordRevocation', 'recordIssued', 'revocationsSince', 'consumeToken', 'withJobLock', 'nextCrlNumber', 'crlEntries',
];

const sources = (): { file: string; text: string }[] =>
  fs.readdirSync(SERVER_DIR).filter((f) => f.endsWith('.ts')).map((f) => ({ file: f, text: fs.readFileSync(path.join(SERVER_DIR, f), 'utf8') }));

/** The code of a file without its comments (a comment may name what moved where). */
const code = (text: string): string => text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:])\/\/.*$/gm, '$1');

test('ok/server-sources-found', () => {
  assert.ok(sources().some((s) => s.file === 'ca-server.ts'), 'the scan reads src/server');
});

test('fail/server-imports-the-store', () => {
  const bad = sources().flatMap(({ file, text }) =>
    [...text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)].map((m) => m[1]).filter((spec) => /(^|\/)store\//.test(spec)).map((spec) => `${file}: ${spec}`));
  assert.deepEqual(bad, [], 'src/server must not import src/store');
});

test('fail/server-reaches-into-the-authority-store', () => {
  const bad = sources().filter(({ text }) => /\.store\./.test(code(text))).map((s) => s.file);
  assert.deepEqual(bad, [], 'src/server goes through the authority and the src/ca services, not ca.store');
});

test('fail/server-holds-lifecycle-policy', () => {
  const bad = sources().flatMap(({ file, text }) => LIFECYCLE_NAMES.filter((n) => new RegExp(`\\b${n}\\b`).test(code(text))).map((n) => `${file}: ${n}`));
  assert.deepEqual(bad, [], 'renewal windows, lineage, CRL and responder schedules live in src/ca');
});

test('fail/server-file-too-long', () => {
  const bad = sources().map(({ file, text }) => ({ file, lines: text.split('\n').length })).filter((f) => f.lines > MAX_LINES);
  assert.deepEqual(bad, [], `no file in src/server over ${MAX_LINES} lines`);
});
