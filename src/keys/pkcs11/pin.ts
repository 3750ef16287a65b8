/**
 * Where a token's user PIN comes from: the URI's pin-source (a file, an environment variable or a
 * systemd credential), else MUTUAL_PKCS11_PIN, else the credential `mutual-pkcs11-pin`. Never the
 * URI itself (pin-value is refused by uri.ts). The PIN is read at each login, not kept, so a PIN
 * file changed on disk is used at the next reconnect. No error here carries the PIN.
 */
import { isAbsolute, join } from 'node:path';
import { MutualError } from '../../core/errors.ts';
import { readSecretText } from '../passphrase.ts';

/** The environment variable read when the URI has no pin-source. */
export const PKCS11_PIN_ENV = 'MUTUAL_PKCS11_PIN';
/** The systemd credential (LoadCredential=) read after {@link PKCS11_PIN_ENV}. */
export const PKCS11_PIN_CREDENTIAL = 'mutual-pkcs11-pin';

/** Longest PIN accepted from the environment: a bigger value is the wrong variable. */
const MAX_PIN_LENGTH = 4096;

const missing = (detail: string): never => {
  throw new MutualError('HSM_PIN_MISSING', { detail });
};

/** A systemd credential name: one path segment (systemd.exec, "Credentials"). */
function credentialFile(name: string, env: NodeJS.ProcessEnv): string {
  if (!/^[A-Za-z0-9_.@-]{1,255}$/.test(name) || name === '.' || name === '..') {
    throw new MutualError('PKCS11_URI_INVALID', { detail: `credential name ${JSON.stringify(name)} is not one file name` });
  }
  const dir = env.CREDENTIALS_DIRECTORY;
  if (!dir) return missing(`credential ${name} was named, but CREDENTIALS_DIRECTORY is not set (LoadCredential= in the unit)`);
  return join(dir, name);
}

function fromEnv(name: string, env: NodeJS.ProcessEnv): string | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (v.length > MAX_PIN_LENGTH) throw new MutualError('INPUT_TOO_LARGE', { detail: `${name} is over ${MAX_PIN_LENGTH} characters` });
  return v;
}

/**
 * Reads the user PIN for a token (see the file's top comment for the order).
 * `pinSource`: `file:/abs/path` or `/abs/path` (a regular file, no group/other bits, <= 4 KiB, one
 * trailing newline removed), `env:NAME`, or `credential:NAME` ($CREDENTIALS_DIRECTORY/NAME).
 * @throws MutualError `HSM_PIN_MISSING` when the named source gives nothing (a named source does not
 *   fall back to others: that would hide the mistake) or no source exists; `KEY_FILE_INSECURE`;
 *   `INPUT_TOO_LARGE`; `PKCS11_URI_INVALID` for a pin-source of another form.
 */
export function readPin(pinSource: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (pinSource !== undefined) {
    if (pinSource.startsWith('env:')) {
      const name = pinSource.slice(4);
      return fromEnv(name, env) ?? missing(`pin-source env:${name}: the variable is not set`);
    }
    if (pinSource.startsWith('credential:')) return readSecretText(credentialFile(pinSource.slice(11), env), 'PIN credential', 'HSM_PIN_MISSING');
    const file = pinSource.startsWith('file:') ? pinSource.slice(5) : pinSource;
    if (!isAbsolute(file)) {
      throw new MutualError('PKCS11_URI_INVALID', { detail: 'pin-source must be file:/absolute/path, /absolute/path, env:NAME or credential:NAME' });
    }
    return readSecretText(file, 'PIN file', 'HSM_PIN_MISSING');
  }
  const v = fromEnv(PKCS11_PIN_ENV, env);
  if (v !== undefined) return v;
  if (env.CREDENTIALS_DIRECTORY) {
    try {
      return readSecretText(join(env.CREDENTIALS_DIRECTORY, PKCS11_PIN_CREDENTIAL), 'PIN credential', 'HSM_PIN_MISSING');
    } catch (e) {
      if (!(e instanceof MutualError && e.code === 'HSM_PIN_MISSING')) throw e;
    }
  }
  return missing(`the URI has no pin-source, ${PKCS11_PIN_ENV} is not set, and there is no credential ${PKCS11_PIN_CREDENTIAL}`);
}
