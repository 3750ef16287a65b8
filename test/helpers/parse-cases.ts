/**
 * Table-driven reader tests: each case builds an input and names the reader; the input must parse,
 * or be refused with exactly the coded MutualError the case names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';

/** One reader case. */
export interface ParseCase {
  name: string;
  input: () => Buffer;
  parse: (b: Buffer) => unknown;
  /** Expected code; none when the input must parse. */
  code?: ErrorCode;
}

/** A test per case, in the enclosing describe. */
export function parseCaseTests(cases: readonly ParseCase[]): void {
  for (const c of cases) {
    test(c.name, () => {
      const input = c.input();
      if (!c.code) {
        c.parse(input);
        return;
      }
      assert.throws(() => c.parse(input), (e) => {
        assert.ok(isMutualError(e), `not a MutualError: ${String(e)}`);
        assert.equal(e.code, c.code, `got ${e.code}: ${e.message}`);
        return true;
      });
    });
  }
}
