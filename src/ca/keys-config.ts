/**
 * config.yaml's `keys:` section: where the online CA makes the keys it makes itself (docs/cli.md,
 * "config.yaml"). The intermediates' and the root's keys are named by their key files (a key
 * reference for a token key, see keys/key-store.ts), so this section says where *new* keys go:
 * the delegated OCSP responders' keys, made with every responder certificate, and the enrollment
 * token key. The token's PIN never appears here: the URI names where it comes from (`pin-source`).
 */
import { z } from 'zod';
import { isMutualError } from '../core/errors.ts';
import { parseKeyStore, type KeyStoreSpec } from '../keys/index.ts';

/** Longest `keys.store` URI (RFC 7512 URIs of real tokens are a few hundred characters). */
const MAX_STORE_URI = 2048;

/** The `keys:` section, defaults applied. */
export const keysSection = z.object({
  /** A `pkcs11:` URI naming the token (module-path, pin-source; no object or id). Absent: encrypted files. */
  store: z.string().max(MAX_STORE_URI).superRefine((v, ctx) => {
    try {
      if (parseKeyStore(v).kind !== 'pkcs11') ctx.addIssue({ code: 'custom', message: 'must be a pkcs11: URI (leave keys.store out for encrypted key files)' });
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: isMutualError(e) ? `${e.code}: ${e.fields.detail ?? e.message}` : String(e) });
    }
  }).optional(),
  /**
   * The OCSP responders' keys: `memory` (default: made in this process, gone with it) or `store`
   * (made on the token as session objects, gone when the server's session closes).
   */
  ocspResponderKeys: z.enum(['memory', 'store']).default('memory'),
  /** The enrollment token signing key: `file` (default: keys/token.key.pem, encrypted) or `store` (on the token). */
  enrollmentTokenKey: z.enum(['file', 'store']).default('file'),
}).strict().superRefine((k, ctx) => {
  // `store` with no token to put the key on would silently fall back to memory or a file.
  if (k.store !== undefined) return;
  if (k.ocspResponderKeys === 'store') ctx.addIssue({ code: 'custom', path: ['ocspResponderKeys'], message: 'is store, but keys.store names no token' });
  if (k.enrollmentTokenKey === 'store') ctx.addIssue({ code: 'custom', path: ['enrollmentTokenKey'], message: 'is store, but keys.store names no token' });
});

/** The `keys:` section of config.yaml, defaults applied. */
export type KeysConfig = z.infer<typeof keysSection>;

/** What the config says of a key's store: the token of `keys.store` when `where` is `store`, else none (memory or a file). */
export function configuredStore(keys: KeysConfig | undefined, where: 'memory' | 'file' | 'store'): KeyStoreSpec | undefined {
  return where === 'store' && keys?.store !== undefined ? parseKeyStore(keys.store) : undefined;
}

/**
 * generateSigner's options for a new key of `purpose` (the token object's label) in `store`; none
 * for a file store or none at all (made in memory, saved as an encrypted file).
 */
export function newKeyOptions(store: KeyStoreSpec | undefined, purpose: string, ephemeral = false): { store?: KeyStoreSpec; purpose?: string; ephemeral?: boolean } {
  return store && store.kind !== 'file' ? { store, purpose, ...(ephemeral ? { ephemeral } : {}) } : {};
}

/** Where the enrollment token key is made when it does not exist yet: the token when `keys.enrollmentTokenKey: store`. */
export function tokenKeyStore(config: { keys?: KeysConfig }): KeyStoreSpec | undefined {
  return configuredStore(config.keys, config.keys?.enrollmentTokenKey ?? 'file');
}

/** Where OCSP responder keys are made: the token (session objects) when `keys.ocspResponderKeys: store`, else memory. */
export function ocspKeyStore(config: { keys?: KeysConfig }): KeyStoreSpec | undefined {
  return configuredStore(config.keys, config.keys?.ocspResponderKeys ?? 'memory');
}
