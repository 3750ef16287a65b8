/**
 * Which store a new key of the online CA goes to, from config.yaml's `keys:` section
 * (keys-config.ts): the token of `keys.store`, or none (memory, or an encrypted file).
 */
import { parseKeyStore, type KeyStoreSpec } from '../keys/index.ts';
import type { KeysConfig } from './keys-config.ts';

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
