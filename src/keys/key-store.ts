/**
 * Where CA keys live: encrypted files (the default) or a PKCS#11 token (an HSM; SoftHSM2 in tests).
 *
 * A key on a token is named in the state (or offline) folder by a **key reference**: the file
 * where its encrypted key would be (`keys/server-ca.key.pem`, `root.key.pem`) holds, instead,
 * one `pkcs11:` URI (RFC 7512) naming the token and the key (object and id), the module to load
 * (`module-path`) and where the PIN comes from (`pin-source`). It holds no secret. Every code
 * path that opens, renames or retires a key file therefore works for both kinds unchanged.
 *
 * The contract of issue 18; keys/pkcs11/ implements it.
 */
import type { KeyObjectSignerOptions } from '../core/signer.ts';
import { MutualError } from '../core/errors.ts';
import { readKeyFileOrReference } from './key-reference.ts';
import { closeModules } from './pkcs11/module.ts';
import { formatPkcs11Uri, modulePathOf, parsePkcs11Uri, tokenPart } from './pkcs11/uri.ts';

/** Where new keys are made. */
export type KeyStoreSpec =
  | { kind: 'file' }
  /**
   * `uri` names the token (token=, serial=, ...) with `module-path` and `pin-source`, no object or
   * id: each new key gets its own label and id. RSA keys sign PKCS#1 v1.5 unless the URI carries the
   * vendor attribute `x-mutual-rsa=pss` (RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32).
   */
  | { kind: 'pkcs11'; uri: string };

/**
 * Reads `--key-store` / config.yaml's `keys.store`: `file` (or absent) or a `pkcs11:` URI (checked:
 * parsed, module-path absolute, no pin-value, no object/id).
 * @throws MutualError `PKCS11_URI_INVALID`.
 */
export function parseKeyStore(text: string | undefined): KeyStoreSpec {
  if (text === undefined || text === 'file') return { kind: 'file' };
  if (!/^pkcs11:/i.test(text)) throw new MutualError('PKCS11_URI_INVALID', { detail: 'the key store is "file" or a pkcs11: URI naming a token' });
  const u = parsePkcs11Uri(text);
  if (u.path.object !== undefined || u.id !== undefined || u.path.type !== undefined) {
    throw new MutualError('PKCS11_URI_INVALID', { detail: 'a key store URI names a token, not a key: remove object=, id= and type=' });
  }
  modulePathOf(u);
  return { kind: 'pkcs11', uri: text };
}

/**
 * The store a key file's key lives in: `file` for an encrypted key, or the token URI of a key
 * reference with its object and id removed (so a rotation makes the next key on the same token).
 * @throws MutualError `KEY_FILE_MISSING`; `PKCS11_URI_INVALID` for a reference that does not parse.
 */
export function keyStoreOf(path: string): KeyStoreSpec {
  const r = readKeyFileOrReference(path);
  if (!('uri' in r)) return { kind: 'file' };
  return { kind: 'pkcs11', uri: formatPkcs11Uri(tokenPart(parsePkcs11Uri(r.uri))) };
}

/** Options of generateSigner beyond where the key goes. */
export interface GenerateKeyOptions extends KeyObjectSignerOptions {
  /** Where the key is made. Default: in memory, written as an encrypted file by `save`. */
  store?: KeyStoreSpec;
  /**
   * What the key is for (`root`, `server-ca`, `client-ca`, `token`, `ocsp`): the start of the token
   * object's label, `mutual-<purpose>-<UTC date>-<8 hex>`.
   */
  purpose?: string;
  /**
   * On a token: a session object (CKA_TOKEN false), gone when the session closes; for keys that
   * live only while the process does (OCSP responder keys). Default false.
   */
  ephemeral?: boolean;
}

/**
 * Where a key file's key is, for status output and the doctor: an encrypted file, or a token key
 * with its full reference URI (object and id; never a PIN).
 * @throws MutualError `KEY_FILE_MISSING`.
 */
export function keyLocation(path: string): { kind: 'file' } | { kind: 'pkcs11'; uri: string } {
  const r = readKeyFileOrReference(path);
  if (!('uri' in r)) return { kind: 'file' };
  return { kind: 'pkcs11', uri: formatPkcs11Uri(parsePkcs11Uri(r.uri)) };
}

/**
 * Closes every PKCS#11 session and finalizes every module this process loaded (a CLI command
 * before it exits, the server on close, tests). Idempotent; later Signers reopen on demand.
 */
export async function closeKeyStores(): Promise<void> {
  await closeModules();
}
