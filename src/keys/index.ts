/** CA key custody: encrypted key files and the passphrases that unlock them. */
export { writeEncryptedKey, readEncryptedKey, readPrivateKeyFile, readSecretFile, MIN_PASSPHRASE_LENGTH, KEY_FILE_KDF_ITERATIONS } from './encrypted-key-file.ts';
export { resolvePassphrase, PASSPHRASE_ENV } from './passphrase.ts';
export type { ResolvePassphraseOptions } from './passphrase.ts';
export { openSigner, generateSigner } from './open-signer.ts';
export type { GeneratedSigner } from './open-signer.ts';
