/**
 * The passphrase of the admin's key (`admin/key.pem`), which `mutual init` writes encrypted as the
 * CA keys are: the admin key can have any certificate signed, so it is a secret of the same weight.
 */
import { MutualError } from '../core/errors.ts';
import { readSecretFile, PASSPHRASE_ENV, resolvePassphrase } from '../keys/index.ts';

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

/**
 * Reads the admin's PKCS#12 bundle (`mutual init --p12` writes `admin/bundle.p12`) for a TLS
 * client: custody-checked as a key file, its password from `p12PasswordFile`, else
 * `MUTUAL_P12_PASSWORD`, else a prompt, and opened once here so a wrong password is a coded error.
 *
 * @throws MutualError `KEY_FILE_INSECURE`/`KEY_FILE_MISSING`/`INPUT_TOO_LARGE` (custody),
 *   `KEY_PASSPHRASE_MISSING`, `KEY_PASSPHRASE_WRONG` (the bundle does not open with the password),
 *   `DER_MALFORMED` (not a PKCS#12 bundle).
 */
export async function readAdminPkcs12(file: string, o: { p12PasswordFile?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ pfx: Buffer; passphrase: string }> {
  const pfx = readSecretFile(file);
  const env = o.env ?? process.env;
  const passphrase = await resolvePassphrase({ passphraseFile: o.p12PasswordFile, env: { [PASSPHRASE_ENV]: env.MUTUAL_P12_PASSWORD }, purpose: `the PKCS#12 bundle ${file} (MUTUAL_P12_PASSWORD)` });
  // node:tls only here: the CLI imports this module at start-up, and loading TLS costs ~15 ms.
  const { default: tls } = await import('node:tls');
  try {
    tls.createSecureContext({ pfx, passphrase });
  } catch (cause) {
    // OpenSSL's message names no secret; it is kept as the cause.
    if (/mac verify|bad decrypt|password/i.test(String((cause as Error).message))) {
      throw new MutualError('KEY_PASSPHRASE_WRONG', { detail: `${file} does not open with this password`, path: file }, { cause });
    }
    throw new MutualError('DER_MALFORMED', { detail: `${file} is not a PKCS#12 bundle with a certificate and its key`, path: file }, { cause });
  }
  return { pfx, passphrase };
}
