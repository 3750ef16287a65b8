import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Every error mutual raises is a MutualError with a registered code (src/core/errors.ts): a plain
 * `new Error(...)`, or one dressed with an ad-hoc `code`, has no hint, no HTTP status and no
 * stable code for the CLI's exit status, the monitor's findings or an API answer.
 * Programmer errors (bad options from our own code) are TypeErrors and are not scanned.
 */
const SRC = new URL('../../src/', import.meta.url);
const PLAIN = /\bnew Error\(|Object\.assign\(\s*new Error\b/;

/** Lines allowed to keep a plain Error: the file (under src/), a piece of the line, and why. None today. */
const ALLOWED: { file: string; text: string; reason: string }[] = [];

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    return d.isDirectory() ? sources(p) : d.name.endsWith('.ts') ? [p] : [];
  });
}

test('ok/src raises no plain Error outside the allowlist', () => {
  const root = SRC.pathname;
  const found: string[] = [];
  for (const file of sources(root)) {
    fs.readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
      if (!PLAIN.test(line)) return;
      const rel = path.relative(root, file);
      if (!ALLOWED.some((a) => a.file === rel && line.includes(a.text))) found.push(`${rel}:${i + 1} ${line.trim()}`);
    });
  }
  assert.deepEqual(found, [], 'use new MutualError(CODE, { detail }) with a code from src/core/errors.ts (or a TypeError, with its reason, for a programmer error)');
});

test('ok/every allowlist entry states a reason', () => {
  for (const a of ALLOWED) assert.ok(a.reason.length > 20 && a.text.length > 0, `${a.file}: ${a.text}`);
});

test('fail/the scan sees both forms', () => {
  assert.ok(PLAIN.test("throw new Error('x')"));
  assert.ok(PLAIN.test("throw Object.assign(new Error('x'), { code: 'EFBIG' })"));
  assert.ok(!PLAIN.test("throw new MutualError('CERT_MALFORMED')"));
  assert.ok(!PLAIN.test("throw new TypeError('bad option')"));
});
