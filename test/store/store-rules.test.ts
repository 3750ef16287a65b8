/**
 * The renewal interval both stores apply (checkRenewalLimit): `recent` holds the issue times of a
 * certificate's renewals inside the window, newest first.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMutualError } from '../../src/core/errors.ts';
import { checkRenewalLimit } from '../../src/store/store-rules.ts';

const limit = { max: 2, windowSeconds: 3600 };
const now = 1_000_000;

const cases: { name: string; recent: number[]; retryAfter?: number }[] = [
  { name: 'ok/none-yet', recent: [] },
  { name: 'ok/one-below-the-limit', recent: [now - 10] },
  // The oldest of the `max` newest leaves the window first: 3600 - 3000 seconds from now.
  { name: 'fail/limit-reached', recent: [now - 10, now - 3000], retryAfter: 600 },
  // A renewal recorded at this very second: the whole window to wait.
  { name: 'fail/limit-reached-just-now', recent: [now, now], retryAfter: 3600 },
  // Leaving the window this second: still at least one second to wait.
  { name: 'fail/retry-after-at-least-one-second', recent: [now - 3600, now - 3600], retryAfter: 1 },
];

for (const c of cases) {
  test(c.name, () => {
    if (c.retryAfter === undefined) return assert.doesNotThrow(() => checkRenewalLimit('0a', now, c.recent, limit));
    assert.throws(() => checkRenewalLimit('0a', now, c.recent, limit),
      (e: unknown) => isMutualError(e, 'RENEWAL_TOO_SOON') && e.fields.retryAfter === c.retryAfter);
  });
}
