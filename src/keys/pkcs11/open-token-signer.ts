/**
 * Opens a Signer over a token key named by a `pkcs11:` URI, and makes new keys on a token: the two
 * ways in from keys/open-signer.ts. Everything here is synchronous (loading the module, logging in,
 * finding or generating the key); only signing runs on libuv's pool.
 */
import type { KeyType } from '../../core/algorithms.ts';
import type { BindingLoader } from './binding.ts';
import { generateTokenKey } from './keygen.ts';
import { moduleFor } from './module.ts';
import { tokenFor, type TokenOptions } from './token.ts';
import { TokenSigner } from './token-signer.ts';
import { formatPkcs11Uri, modulePathOf, parsePkcs11Uri, tokenPart, type Pkcs11Uri } from './uri.ts';

/** Options for keys on a token. */
export interface Pkcs11Options extends TokenOptions {
  /** The clock (ms) that paces reconnects. Default Date.now. */
  now?: () => number;
  /** Loads pkcs11js. Default: from node_modules (tests inject a failing one). */
  loader?: BindingLoader;
}

function tokenOf(u: Pkcs11Uri, o: Pkcs11Options) {
  return tokenFor(moduleFor(modulePathOf(u, o.env), o.loader), u, o);
}

/**
 * A Signer over the key `uri` names (object= and/or id=).
 * @throws MutualError `PKCS11_URI_INVALID`, `HSM_BINDING_MISSING`, `HSM_MODULE_INVALID`,
 *   `HSM_TOKEN_NOT_FOUND`, `HSM_PIN_MISSING`, `HSM_PIN_WRONG`, `HSM_KEY_NOT_FOUND`,
 *   `HSM_KEY_EXTRACTABLE`, `HSM_UNAVAILABLE`.
 */
export function openTokenSigner(uri: string | Pkcs11Uri, o: Pkcs11Options = {}): TokenSigner {
  const u = typeof uri === 'string' ? parsePkcs11Uri(uri) : uri;
  return new TokenSigner(tokenOf(u, o), u, { now: o.now });
}

/**
 * Makes a `type` key on the token `storeUri` names and opens a Signer over it; `reference` is the
 * key's full URI (the store's, with object= and id=), what a key reference file holds.
 */
export function generateTokenSigner(
  type: KeyType,
  storeUri: string,
  o: Pkcs11Options & { purpose?: string; ephemeral?: boolean } = {},
): { signer: TokenSigner; reference: string } {
  const store = tokenPart(parsePkcs11Uri(storeUri));
  const now = (o.now ?? Date.now)();
  const made = generateTokenKey(tokenOf(store, o), type, { purpose: o.purpose ?? 'key', ephemeral: o.ephemeral ?? false, now });
  const keyUri: Pkcs11Uri = { ...store, path: { ...store.path, object: made.label }, id: made.id };
  return { signer: openTokenSigner(keyUri, o), reference: formatPkcs11Uri(keyUri) };
}
