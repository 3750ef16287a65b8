/** CA key custody: encrypted key files, the passphrases that unlock them, and keys on PKCS#11 tokens. */
export { writeEncryptedKey, readEncryptedKey, readPrivateKeyFile, readSecretFile, MIN_PASSPHRASE_LENGTH, KEY_FILE_KDF_ITERATIONS } from './encrypted-key-file.ts';
export { resolvePassphrase, PASSPHRASE_ENV } from './passphrase.ts';
export type { ResolvePassphraseOptions } from './passphrase.ts';
export { openSigner, generateSigner } from './open-signer.ts';
export type { GeneratedSigner, OpenSignerOptions } from './open-signer.ts';
export { parseKeyStore, keyStoreOf, keyLocation, closeKeyStores } from './key-store.ts';
export type { KeyStoreSpec, GenerateKeyOptions } from './key-store.ts';
export { openTokenSigner } from './pkcs11/open-token-signer.ts';
export type { Pkcs11Options } from './pkcs11/open-token-signer.ts';
export { parsePkcs11Uri, formatPkcs11Uri, MAX_PKCS11_URI_LENGTH, PKCS11_MODULE_ENV } from './pkcs11/uri.ts';
export type { Pkcs11Uri } from './pkcs11/uri.ts';
export { PKCS11_PIN_ENV, PKCS11_PIN_CREDENTIAL } from './pkcs11/pin.ts';
export { RECONNECT_INTERVAL_MS } from './pkcs11/module.ts';
export { DEFAULT_POOL_SIZE } from './pkcs11/token.ts';
