/**
 * The key types mutual makes and accepts, by name. A module of its own, importing nothing, so the
 * command line can offer them as choices without loading the key code (core/algorithms.ts, which
 * re-exports them).
 */
export const KEY_TYPES = ['p256', 'p384', 'ed25519', 'rsa2048', 'rsa3072', 'rsa4096'] as const;
export type KeyType = (typeof KEY_TYPES)[number];
