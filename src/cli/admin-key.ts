/**
 * The passphrase of the admin's key (`admin/key.pem`), which `mutual init` writes encrypted as the
 * CA keys are: the admin key can have any certificate signed, so it is a secret of the same weight.
 */
import { resolvePassphrase } from '../keys/passphrase.ts';

/** The environment variable holding the admin key's passphrase. */
export const ADMIN_PASSPHRASE_ENV = 'MUTUAL_ADMIN_PASSPHRASE';

/**
 * Finds the admin key's passphrase, first match wins: `adminPassphraseFile`
 * (`--admin-passphrase-file`), `MUTUAL_ADMIN_PASSPHRASE`, then the CA passphrase's own sources
 * (`caPassphraseFile`, i.e. `--passphrase-file`, then `MUTUAL_CA_PASSPHRASE`, then a prompt), since
 * `mutual init` encrypts the admin key with the CA passphrase unless told otherwise.
 *
 * @throws as resolvePassphrase (KEY_PASSPHRASE_MISSING, KEY_FILE_INSECURE, INPUT_TOO_LARGE).
 */
export async function adminPassphrase(o: { adminPassphraseFile?: string; caPassphraseFile?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const env = o.env ?? process.env;
  const purpose = 'the admin key';
  if (o.adminPassphraseFile !== undefined) return resolvePassphrase({ passphraseFile: o.adminPassphraseFile, purpose });
  const fromEnv = env[ADMIN_PASSPHRASE_ENV];
  if (fromEnv) return fromEnv;
  return resolvePassphrase({ passphraseFile: o.caPassphraseFile, env, purpose });
}
