/**
 * Removing a key file that is no longer wanted (a next key replaced by a newer one): for a key
 * reference, the key on the token goes too, or nothing would ever remove it; the file's name is
 * all that pointed at it.
 */
import fs from 'node:fs';
import { isMutualError } from '../core/errors.ts';
import { readKeyFileOrReference } from './key-reference.ts';
import { openTokenSigner, type Pkcs11Options } from './pkcs11/open-token-signer.ts';
import type { TokenSigner } from './pkcs11/token-signer.ts';
import { formatPkcs11Uri, parsePkcs11Uri } from './pkcs11/uri.ts';

/** The key a reference names (token, object, id), without where the module and PIN come from. */
function keyName(uri: string): string {
  const u = parsePkcs11Uri(uri);
  return formatPkcs11Uri({ ...u, modulePath: undefined, moduleName: undefined, pinSource: undefined, rsa: undefined, vendorQuery: [] });
}

/**
 * Removes the key file `path` and returns what destroys its key: for a key reference, the key is
 * found on its token (its reference read) before the file is removed, and the returned function
 * destroys its objects (call it once the replacement is saved); nothing to destroy for an encrypted
 * key file, a missing file, a key the token no longer has, or a key one of `namedBy` (the other key
 * files: current and retired keys) names as well.
 * @throws as openTokenSigner (HSM_UNAVAILABLE, HSM_PIN_WRONG...) before anything is removed; the
 *   returned function throws HSM_UNAVAILABLE when the token refuses (the key stays, unnamed).
 */
export function removeKeyFile(path: string, o: { namedBy: readonly string[] } & Pkcs11Options): () => Promise<void> {
  const nothing = async (): Promise<void> => undefined;
  if (!fs.existsSync(path)) return nothing;
  const r = readKeyFileOrReference(path);
  if (!('uri' in r)) {
    fs.rmSync(path);
    return nothing;
  }
  const name = keyName(r.uri);
  const stillNamed = o.namedBy.some((f) => {
    if (f === path || !fs.existsSync(f)) return false;
    try {
      const other = readKeyFileOrReference(f);
      return 'uri' in other && keyName(other.uri) === name;
    } catch {
      // A file that cannot be read cannot be shown not to name it: the key stays.
      return true;
    }
  });
  let signer: TokenSigner | undefined;
  try {
    signer = stillNamed ? undefined : openTokenSigner(r.uri, o);
  } catch (e) {
    if (!isMutualError(e, 'HSM_KEY_NOT_FOUND')) throw e;
  }
  fs.rmSync(path);
  return signer ? () => signer.destroy() : nothing;
}
