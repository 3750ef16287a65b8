/**
 * Writing an issued certificate to a folder: cert.pem, key.pem (0600), chain.pem, fullchain.pem,
 * and optionally bundle.p12 (0600). Each file is replaced atomically.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { MutualError } from '../core/errors.ts';
import { buildPkcs12, encryptPrivateKeyInfo } from '../core/pkcs12.ts';
import { toPem } from '../core/pem.ts';
import { KEY_FILE_KDF_ITERATIONS, MIN_PASSPHRASE_LENGTH } from '../keys/index.ts';
import { readPemOrDer } from '../core/pem.ts';
import { writeFileAtomic } from '../io/index.ts';

/** What `--out DIR` receives. */
export interface IssuedFiles {
  certificatePem: string;
  chainPem: string;
  fullchainPem: string;
  privateKey?: KeyObject;
}

/** Options of {@link writeIssued}. */
export interface WriteIssuedOptions {
  /** Also write bundle.p12 (0600) with this password. Default: none. */
  p12Password?: string;
  /**
   * Write key.pem encrypted with this passphrase (PKCS#8 EncryptedPrivateKeyInfo, PBES2 with
   * PBKDF2-HMAC-SHA256 and AES-256-CBC, as the CA keys; `curl --key key.pem --pass ...` and
   * `openssl pkey -passin` read it), at least MIN_PASSPHRASE_LENGTH characters. Default: none,
   * an unencrypted key.pem (0600) for servers that cannot be given a passphrase.
   */
  keyPassphrase?: string;
  /** Replace an existing key.pem. Default false. */
  force?: boolean;
}

/** Writes cert.pem, key.pem (0600), chain.pem, fullchain.pem and, with a password, bundle.p12 (0600). */
export function writeIssued(dir: string, f: IssuedFiles, o: WriteIssuedOptions = {}): string[] {
  const keyPath = path.join(dir, 'key.pem');
  if (f.privateKey && !o.force && fs.existsSync(keyPath)) {
    throw new MutualError('OUTPUT_EXISTS', { detail: keyPath });
  }
  if (o.keyPassphrase !== undefined && [...o.keyPassphrase].length < MIN_PASSPHRASE_LENGTH) {
    throw new MutualError('KEY_PASSPHRASE_WEAK', { detail: `the key passphrase has fewer than ${MIN_PASSPHRASE_LENGTH} characters` });
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const put = (name: string, data: string | Buffer, mode = 0o644) => {
    writeFileAtomic(path.join(dir, name), data, { mode });
    written.push(path.join(dir, name));
  };
  // The key goes first: a certificate on disk without its key is useless, a key without a
  // certificate is harmless (and the certificate is already in the inventory).
  if (f.privateKey) {
    const pem = o.keyPassphrase === undefined
      ? (f.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
      : toPem(encryptPrivateKeyInfo(f.privateKey, o.keyPassphrase, KEY_FILE_KDF_ITERATIONS), 'ENCRYPTED PRIVATE KEY');
    put('key.pem', pem, 0o600);
  }
  put('cert.pem', f.certificatePem);
  put('chain.pem', f.chainPem);
  put('fullchain.pem', f.fullchainPem);
  if (o.p12Password !== undefined) {
    if (!f.privateKey) throw new TypeError('a PKCS#12 bundle needs the private key');
    const p12 = buildPkcs12({
      key: f.privateKey,
      certificate: readPemOrDer(f.certificatePem, ['CERTIFICATE']),
      chain: [readPemOrDer(f.chainPem, ['CERTIFICATE'])],
      password: o.p12Password,
    });
    put('bundle.p12', p12, 0o600);
  }
  return written;
}

