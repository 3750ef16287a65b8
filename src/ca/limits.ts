/**
 * Limits that the command line checks its options against before anything heavy is loaded: this
 * file imports nothing, so `mutual --help` and option parsing do not pull in the authority or jose.
 * authority.ts and tokens.ts re-export them where they apply them.
 */

/** Longest time after expiry that a certificate may still be renewed (`serve --grace-seconds`). */
export const MAX_RENEWAL_GRACE_SECONDS = 30 * 86_400;

/** Fewest hex digits of an audit head that `audit verify --head` takes. */
export const MIN_HEAD_PREFIX = 16;

/** Longest token lifetime an admin may ask for. */
export const MAX_TOKEN_TTL_SECONDS = 7 * 86_400;
