import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { ERRORS } from '../../src/core/errors.ts';

test('ok/every error code is documented in docs/errors.md', () => {
  const doc = fs.readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const missing = Object.keys(ERRORS).filter((c) => !doc.includes(`\`${c}\``));
  assert.deepEqual(missing, []);
});

test('ok/every error has a hint that says what to do', () => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    assert.ok(spec.hint.length > 10, code);
    assert.ok(spec.status >= 400 && spec.status < 600, code);
  }
});
