/**
 * CA keys at rest: standard encrypted PKCS#8 PEM files (EncryptedPrivateKeyInfo, PBES2 with
 * PBKDF2-HMAC-SHA256 at {@link KEY_FILE_KDF_ITERATIONS} rounds and AES-256-CBC), readable by
 * OpenSSL and any other PKCS#8 tool. Key files are 0600 in 0700 folders
 * owned by the user running mutual (DESIGN.md, Trust model / Secrets); a key file that does not
 * meet that, or is not encrypted, is refused rather than used.
 *
 * No error raised here carries key material or a passphrase: details name paths and modes only.
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { MutualError } from '../core/errors.ts';
import { parsePemBlocks, toPem } from '../core/pem.ts';
import { encryptPrivateKeyInfo } from '../core/pkcs12.ts';
import { children, expect, Tag } from '../core/der.ts';

/**
 * PBKDF2-HMAC-SHA256 rounds for key files: OWASP's 2023 figure for that PRF, about 90 ms to unlock
 * a key here, paid once per key when a process starts. Node's own PKCS#8 export has a fixed 2,048,
 * which made a guess at a stolen key file's passphrase ~300 times cheaper. Files written with any
 * count are read.
 */
export const KEY_FILE_KDF_ITERATIONS = 600_000;

/** Shortest passphrase {@link writeEncryptedKey} accepts, in characters (Unicode code points). */
export const MIN_PASSPHRASE_LENGTH = 12;

/** Permission bits a key file or key folder must not have: any access by group or others. */
const GROUP_OTHER_BITS = 0o077;

/**
 * Largest key file read. An encrypted RSA 8192 key is under 7 KB; anything much larger is the wrong
 * file, and is refused before it is read into memory.
 */
const MAX_KEY_FILE_BYTES = 64 * 1024;

/** link(2) errors that mean "this filesystem has no hard links", not "the target exists". */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

const errorCode = (e: unknown): unknown => (e as NodeJS.ErrnoException | null)?.code;
const octal = (mode: number): string => `0${(mode & 0o777).toString(8).padStart(3, '0')}`;

/**
 * Writes `key` to `path` as an encrypted PKCS#8 PEM (PBES2, AES-256-CBC, key derived from
 * `passphrase` with PBKDF2-HMAC-SHA256, {@link KEY_FILE_KDF_ITERATIONS} rounds), mode 0600.
 * Creates the parent folder (and any missing ancestors) with mode 0700.
 *
 * Never replaces an existing file: the key is written to a temporary file in the same folder,
 * fsynced, then hard-linked into place, which fails atomically if `path` exists (a rename would
 * silently replace it); the folder is fsynced so the new name survives a crash. On filesystems
 * without hard links it falls back to check-then-rename.
 *
 * @throws MutualError `KEY_PASSPHRASE_WEAK` when `passphrase` has fewer than
 *   {@link MIN_PASSPHRASE_LENGTH} characters; `KEY_FILE_INSECURE` when the folder is accessible to
 *   group or others; `KEY_FILE_EXISTS` when `path` already exists.
 * @throws TypeError when `key` is not a private KeyObject or `passphrase` not a string.
 */
export function writeEncryptedKey(path: string, key: KeyObject, passphrase: string): void {
  if (key?.type !== 'private') throw new TypeError('writeEncryptedKey needs a private KeyObject');
  if (typeof passphrase !== 'string') throw new TypeError('writeEncryptedKey needs the passphrase as a string');
  // Code points, not UTF-16 units, so a passphrase of emoji is not counted twice.
  if ([...passphrase].length < MIN_PASSPHRASE_LENGTH) {
    throw new MutualError('KEY_PASSPHRASE_WEAK', { detail: `it has fewer than ${MIN_PASSPHRASE_LENGTH} characters` });
  }
  // A key we could not read back (readEncryptedKey refuses such folders) is better not written.
  const target = prepareKeyFile(path);
  writeNewKeyFile(target, toPem(encryptPrivateKeyInfo(key, passphrase, KEY_FILE_KDF_ITERATIONS), 'ENCRYPTED PRIVATE KEY'));
}

/**
 * Writes a new key file (an encrypted key, or a key reference naming a token key) at `target`,
 * mode 0600, never replacing one: see {@link writeEncryptedKey}. The folder must exist and be private.
 * @throws MutualError `KEY_FILE_EXISTS`.
 */
export function writeNewKeyFile(target: string, content: string): void {
  const dir = dirname(target);
  if (exists(target)) throw alreadyExists(target);
  const tmp = join(dir, `.${basename(target)}.${crypto.randomBytes(6).toString('hex')}.tmp`);
  const { O_WRONLY, O_CREAT, O_EXCL } = fs.constants;
  const fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o600);
  try {
    try {
      // The umask can only remove bits, but be exact: the file is 0600 whatever the umask.
      fs.fchmodSync(fd, 0o600);
      fs.writeFileSync(fd, content);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(tmp, target);
    } catch (e) {
      if (errorCode(e) === 'EEXIST') throw alreadyExists(target);
      if (!NO_HARD_LINKS.has(String(errorCode(e)))) throw e;
      // No hard links here: a key could appear between this check and the rename, which is why
      // link is tried first.
      if (exists(target)) throw alreadyExists(target);
      fs.renameSync(tmp, target);
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  const dirFd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}

/**
 * Creates the folder of a new key file (0700, with missing ancestors) and checks it is private.
 * @throws MutualError `KEY_FILE_INSECURE`, `KEY_FILE_EXISTS`.
 */
export function prepareKeyFile(path: string): string {
  const target = resolve(path);
  const dir = dirname(target);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  assertPrivateFolder(dir);
  if (exists(target)) throw alreadyExists(target);
  return target;
}

/**
 * Reads and decrypts an encrypted PKCS#8 PEM key file written by {@link writeEncryptedKey} (or by
 * `openssl genpkey -aes-256-cbc` / `openssl pkcs8 -topk8 -v2 aes-256-cbc`).
 *
 * Before decrypting it checks custody: the file must be a regular file owned by the current user
 * with no group/other permission bits, and its folder (and, for a symlink, the folder of the file
 * it points to) must be owned by the current user with no group/other bits, since whoever can
 * write the folder can swap the key.
 *
 * @throws MutualError `KEY_FILE_MISSING` when the file does not exist; `KEY_FILE_INSECURE` when
 *   custody is wrong or the file holds an unencrypted key; `PEM_WRONG_TYPE` when it holds no
 *   ENCRYPTED PRIVATE KEY block (or uses the legacy OpenSSL "Proc-Type: 4,ENCRYPTED" format);
 *   `PEM_MALFORMED`/`DER_MALFORMED` when the block is damaged; `INPUT_TOO_LARGE` over 64 KiB;
 *   `KEY_PASSPHRASE_WRONG` when decryption fails.
 * @throws TypeError when `passphrase` is not a string.
 */
export function readEncryptedKey(path: string, passphrase: string): KeyObject {
  return decryptKeyFileText(readKeyFile(path), path, passphrase);
}

/** {@link readEncryptedKey} on a key file's text already read by {@link readKeyFileText}. */
export function decryptKeyFileText(text: string, path: string, passphrase: string): KeyObject {
  if (typeof passphrase !== 'string') throw new TypeError('readEncryptedKey needs the passphrase as a string');
  return decrypt(encryptedKeyInfo(text, path), passphrase, path);
}

/**
 * A key file's text (latin1), read with the custody checks of {@link readEncryptedKey}: for key
 * files that may hold a key reference instead of a key.
 * @throws MutualError `KEY_FILE_MISSING`, `KEY_FILE_INSECURE`, `INPUT_TOO_LARGE`.
 */
export function readKeyFileText(path: string): string {
  return readKeyFile(path);
}

/**
 * Reads a TLS client's private key file (the admin's `admin/key.pem`), encrypted or not, with the
 * same custody checks as {@link readEncryptedKey}: a key file that group or others can read, or
 * that sits in such a folder, is refused whether or not it is encrypted. An encrypted PKCS#8 key
 * (ENCRYPTED PRIVATE KEY) is decrypted with the passphrase `passphrase()` gives, asked only then;
 * an unencrypted one (PRIVATE KEY, EC/RSA PRIVATE KEY) is taken as it is, as issued certificates'
 * keys are written for servers that cannot be given a passphrase.
 *
 * @throws as {@link readEncryptedKey}, except that an unencrypted key is not refused;
 *   `PEM_MALFORMED` when an unencrypted key cannot be read.
 */
export async function readPrivateKeyFile(path: string, passphrase: () => string | Promise<string>): Promise<KeyObject> {
  const text = readKeyFile(path);
  if (/-----BEGIN (?:RSA |EC )?PRIVATE KEY-----/.test(text) && !/Proc-Type:\s*4,ENCRYPTED/.test(text)) {
    try {
      return crypto.createPrivateKey({ key: text, format: 'pem' });
    } catch {
      // OpenSSL's message may quote the key's bytes; say only which file.
      throw new MutualError('PEM_MALFORMED', { detail: `${path} holds a private key that cannot be read`, path });
    }
  }
  const der = encryptedKeyInfo(text, path);
  return decrypt(der, await passphrase(), path);
}

/**
 * Reads a secret credential file other than a PEM key (a PKCS#12 bundle holding the admin's key)
 * under the same custody checks as {@link readEncryptedKey}: a regular file owned by the current
 * user, no group/other permission bits, in a folder likewise, at most 64 KiB.
 *
 * @throws MutualError `KEY_FILE_MISSING`, `KEY_FILE_INSECURE`, `INPUT_TOO_LARGE` as
 *   {@link readEncryptedKey}.
 */
export function readSecretFile(path: string): Buffer {
  return Buffer.from(readKeyFile(path), 'latin1');
}

function decrypt(der: Buffer, passphrase: string, path: string): KeyObject {
  if (typeof passphrase !== 'string') throw new TypeError('a key passphrase must be a string');
  try {
    return crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8', passphrase });
  } catch (cause) {
    // The outline was checked above, so a failure here is almost always the passphrase: a wrong one
    // usually fails the CBC padding ("bad decrypt"), but about 1 in 250 passes it and decrypts to
    // garbage that OpenSSL reports as "unsupported", so OpenSSL's codes cannot tell the cases
    // apart. Its error (which holds no secrets) is kept as the cause for the rare other case.
    throw new MutualError('KEY_PASSPHRASE_WRONG', { detail: `decryption of ${path} failed`, path }, { cause });
  }
}

/** Whether anything, even a dangling symlink, has this name (`fs.existsSync` follows symlinks). */
function exists(file: string): boolean {
  try {
    fs.lstatSync(file);
    return true;
  } catch (e) {
    if (errorCode(e) === 'ENOENT') return false;
    throw e;
  }
}

function alreadyExists(target: string): MutualError {
  return new MutualError('KEY_FILE_EXISTS', { detail: `key file ${target} already exists; mutual never overwrites a key`, path: target });
}

/** Refuses a folder that group or others can use, or that another user owns. */
function assertPrivateFolder(dir: string): void {
  const st = fs.statSync(dir);
  if (st.mode & GROUP_OTHER_BITS) {
    throw new MutualError('KEY_FILE_INSECURE', { detail: `folder ${dir} has mode ${octal(st.mode)}; it must be 0700`, path: dir });
  }
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new MutualError('KEY_FILE_INSECURE', { detail: `folder ${dir} is owned by uid ${st.uid}, not by the current user (uid ${uid})`, path: dir });
  }
}

/** Opens the key file, checks its custody on the open descriptor (so the checked file is the file read), and reads it. */
function readKeyFile(file: string): string {
  let fd: number;
  try {
    // O_NONBLOCK so a FIFO at the key path fails the regular-file check instead of hanging open().
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    if (errorCode(e) === 'ENOENT' || errorCode(e) === 'ENOTDIR') {
      throw new MutualError('KEY_FILE_MISSING', { detail: `${file} does not exist`, path: file });
    }
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new MutualError('KEY_FILE_MISSING', { detail: `${file} is not a regular file`, path: file });
    if (st.mode & GROUP_OTHER_BITS) {
      throw new MutualError('KEY_FILE_INSECURE', { detail: `${file} has mode ${octal(st.mode)}; it must be 0600`, path: file });
    }
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw new MutualError('KEY_FILE_INSECURE', { detail: `${file} is owned by uid ${st.uid}, not by the current user (uid ${uid})`, path: file });
    }
    const named = dirname(resolve(file));
    const real = dirname(fs.realpathSync(file));
    assertPrivateFolder(named);
    if (real !== named) assertPrivateFolder(real);
    if (st.size > MAX_KEY_FILE_BYTES) {
      throw new MutualError('INPUT_TOO_LARGE', { detail: `${file} has ${st.size} bytes; a key file is at most ${MAX_KEY_FILE_BYTES}`, path: file });
    }
    return fs.readFileSync(fd, 'latin1');
  } finally {
    fs.closeSync(fd);
  }
}

/** Finds the EncryptedPrivateKeyInfo (RFC 5958 section 3) in the file's text and checks its outline. */
function encryptedKeyInfo(text: string, file: string): Buffer {
  if (/-----BEGIN (?:RSA |EC |DSA )?PRIVATE KEY-----/.test(text)) {
    if (/Proc-Type:\s*4,ENCRYPTED/.test(text)) {
      // Legacy OpenSSL encryption derives the key with one round of MD5; not worth accepting.
      throw new MutualError('PEM_WRONG_TYPE', {
        detail: `${file} uses the legacy OpenSSL key encryption; convert it with \`openssl pkcs8 -topk8 -v2 aes-256-cbc\``,
        path: file,
      });
    }
    throw new MutualError('KEY_FILE_INSECURE', {
      detail: `${file} holds an unencrypted private key; encrypt it with \`openssl pkcs8 -topk8 -v2 aes-256-cbc\``,
      path: file,
    });
  }
  const blocks = parsePemBlocks(text);
  if (blocks.length === 0) throw new MutualError('PEM_MALFORMED', { detail: `${file} has no PEM block`, path: file });
  const block = blocks.find((b) => b.label === 'ENCRYPTED PRIVATE KEY');
  if (!block) {
    throw new MutualError('PEM_WRONG_TYPE', { detail: `${file} has ${blocks.map((b) => b.label).join(', ')}; expected ENCRYPTED PRIVATE KEY`, path: file });
  }
  const der = block.der;
  const outer = expect(der, 0, Tag.SEQUENCE, der.length, 'EncryptedPrivateKeyInfo');
  const [algorithm, data] = children(der, outer, 2);
  if (outer.end !== der.length || algorithm?.tag !== Tag.SEQUENCE || data?.tag !== Tag.OCTET_STRING) {
    throw new MutualError('DER_MALFORMED', { detail: `${file}: not an EncryptedPrivateKeyInfo`, path: file });
  }
  return der;
}
