/**
 * PKCS#12 (RFC 7292) export of a key, its certificate and chain, written the way OpenSSL 3's
 * `openssl pkcs12 -export` writes by default: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for the key
 * and the certificates, and an HMAC-SHA256 MacData keyed by the PKCS#12 KDF. OpenSSL 1.1.1+ and
 * Node's `tls` `pfx` option read it (the tests check both); some older platform key stores only read
 * the legacy RC2/3DES + SHA-1 form (`openssl pkcs12 -legacy`), which mutual deliberately does not write.
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { explicit, implicit, integer, derNull, octetString, oid, seq, tlv } from './der.ts';
import { describeKey } from './algorithms.ts';
import { MutualError } from './errors.ts';

/** OIDs of RFC 7292, RFC 8018 (PBES2) and RFC 2985 (attributes). */
const P12 = {
  data: '1.2.840.113549.1.7.1',
  encryptedData: '1.2.840.113549.1.7.6',
  pkcs8ShroudedKeyBag: '1.2.840.113549.1.12.10.1.2',
  certBag: '1.2.840.113549.1.12.10.1.3',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  friendlyName: '1.2.840.113549.1.9.20',
  localKeyId: '1.2.840.113549.1.9.21',
  pbes2: '1.2.840.113549.1.5.13',
  pbkdf2: '1.2.840.113549.1.5.12',
  hmacWithSHA256: '1.2.840.113549.2.9',
  aes256Cbc: '2.16.840.1.101.3.4.1.42',
  sha256: '2.16.840.1.101.3.4.2.1',
} as const;

/** Default iteration count for PBKDF2 and the MAC KDF: OpenSSL 3's `PKCS12_DEFAULT_ITER`. */
export const PKCS12_DEFAULT_ITERATIONS = 2048;
/** Lowest iteration count accepted; RFC 8018 4.2 recommends at least 1000. */
export const PKCS12_MIN_ITERATIONS = 1000;
// 16-byte salts for PBKDF2 and the MAC (RFC 8018 4.1 asks for at least 8; OpenSSL 3 uses 16 and 8).
const SALT_BYTES = 16;

/** Options of {@link buildPkcs12}. */
export interface BuildPkcs12Options {
  /** The private key (ECDSA P-256/P-384, Ed25519, or RSA 2048-4096 with a public exponent of at least 65537); must match `certificate`. */
  key: KeyObject;
  /** The certificate of `key`, DER. */
  certificate: Uint8Array;
  /** CA certificates (DER) to include after the leaf, issuer first; default none. */
  chain?: Uint8Array[];
  /**
   * Non-empty password. The MAC KDF uses it as a BMPString, PBES2 as UTF-8 (as OpenSSL 3 does);
   * it is not Unicode-normalized, so normalize (e.g. NFC) before calling if it was typed by a person.
   */
  password: string;
  /** friendlyName of the key and leaf certificate; default the certificate's subject CN, or none. */
  friendlyName?: string;
  /**
   * Iterations of PBKDF2 and of the MAC KDF; default {@link PKCS12_DEFAULT_ITERATIONS} (2048, as
   * OpenSSL 3), at least {@link PKCS12_MIN_ITERATIONS}. Raise it for files that live long on disk.
   */
  iterations?: number;
  /** Source of salts and IVs; default `crypto.randomBytes`. Tests inject a fixed one. */
  random?: (n: number) => Buffer;
}

/** BMPString (UTF-16BE) of `s`; characters outside the BMP become surrogate pairs, as in OpenSSL. */
function bmpBytes(s: string): Buffer {
  return Buffer.from(s, 'utf16le').swap16();
}

/** SET OF with its elements in DER order (X.690 11.6). */
function setOf(...items: Buffer[]): Buffer {
  return tlv(0x31, ...items.sort(Buffer.compare));
}

const contentInfo = (type: string, content: Buffer): Buffer => seq(oid(type), explicit(0, content));
const attribute = (type: string, value: Buffer): Buffer => seq(oid(type), setOf(value));

/**
 * The PKCS#12 key derivation function of RFC 7292 appendix B.2 with SHA-256 (u = 32, v = 64).
 * `id` is 1 for keys, 2 for IVs, 3 for MAC keys (B.3); `password` is already BMPString + 00 00.
 */
function pkcs12Kdf(password: Buffer, salt: Buffer, id: number, iterations: number, n: number): Buffer {
  const u = 32;
  const v = 64;
  const fill = (src: Buffer) => {
    const out = Buffer.alloc(v * Math.ceil(src.length / v));
    for (let i = 0; i < out.length; i++) out[i] = src[i % src.length];
    return out;
  };
  const D = Buffer.alloc(v, id);
  const I = Buffer.concat([fill(salt), fill(password)]);
  const out: Buffer[] = [];
  for (let produced = 0; produced < n; produced += u) {
    let A = crypto.createHash('sha256').update(D).update(I).digest();
    for (let r = 1; r < iterations; r++) A = crypto.createHash('sha256').update(A).digest();
    out.push(A);
    // I_j = (I_j + B + 1) mod 2^(8v), B being A repeated to v bytes (B.2 step 6C).
    for (let j = 0; j < I.length; j += v) {
      let carry = 1;
      for (let k = v - 1; k >= 0; k--) {
        const sum = I[j + k] + A[k % u] + carry;
        I[j + k] = sum & 0xff;
        carry = sum >> 8;
      }
    }
  }
  return Buffer.concat(out).subarray(0, n);
}

/**
 * Encrypts with PBES2 (RFC 8018 6.2): PBKDF2-HMAC-SHA256 and AES-256-CBC. Node's own
 * `key.export({ cipher: 'aes-256-cbc' })` writes the same scheme, but with a fixed 2048 iterations and
 * its own salt, so the configured iterations and injected randomness could not apply to it.
 */
function pbes2Encrypt(plain: Buffer, password: Buffer, iterations: number, random: (n: number) => Buffer): { algorithm: Buffer; ciphertext: Buffer } {
  const salt = random(SALT_BYTES);
  const iv = random(16);
  const key = crypto.pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const cipher = crypto.createCipheriv('aes-256-cbc', key, iv);
  const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
  // keyLength is omitted: AES-256 fixes it, and OpenSSL leaves it out too.
  const kdf = seq(oid(P12.pbkdf2), seq(octetString(salt), integer(iterations), seq(oid(P12.hmacWithSHA256), derNull())));
  const algorithm = seq(oid(P12.pbes2), seq(kdf, seq(oid(P12.aes256Cbc), octetString(iv))));
  return { algorithm, ciphertext };
}

/**
 * An EncryptedPrivateKeyInfo (RFC 5958 3, DER) for `key`: PBES2 with PBKDF2-HMAC-SHA256 at
 * `iterations` rounds and AES-256-CBC, the form of `openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf
 * hmacWithSHA256 -iter N`, which OpenSSL and Node read with the passphrase.
 */
export function encryptPrivateKeyInfo(key: KeyObject, password: string, iterations: number, random: (n: number) => Buffer = crypto.randomBytes): Buffer {
  if (key?.type !== 'private') throw new TypeError('encryptPrivateKeyInfo: key must be a private KeyObject');
  if (!Number.isSafeInteger(iterations) || iterations < PKCS12_MIN_ITERATIONS) {
    throw new TypeError(`encryptPrivateKeyInfo: iterations must be an integer >= ${PKCS12_MIN_ITERATIONS}`);
  }
  const enc = pbes2Encrypt(key.export({ type: 'pkcs8', format: 'der' }), Buffer.from(password, 'utf8'), iterations, random);
  return seq(enc.algorithm, octetString(enc.ciphertext));
}

/**
 * Builds a password-protected PKCS#12 file (RFC 7292) holding `key`, its certificate and the chain.
 *
 * Layout, as OpenSSL 3 writes it (RFC 7292 4.1): an AuthenticatedSafe of (1) EncryptedData with the
 * certificates (leaf first) and (2) Data with one PKCS8ShroudedKeyBag. The key bag and the leaf's
 * cert bag carry friendlyName and localKeyId (SHA-1 of the leaf DER) so readers pair them. The
 * certificates are encrypted rather than plain because that is OpenSSL 3's default, so readers see
 * the layout they see most; certificates are public, so this is about compatibility, not secrecy,
 * and costs one more PBKDF2 run.
 *
 * @throws TypeError on misuse (not a private key, empty password, bad iterations).
 * @throws MutualError `CERT_MALFORMED` if a certificate does not parse, `KEY_MISMATCH` if `key` does
 *   not belong to `certificate`, `KEY_WEAK` for key types mutual does not accept.
 */
export function buildPkcs12(options: BuildPkcs12Options): Buffer {
  const { key, certificate, chain = [], password, iterations = PKCS12_DEFAULT_ITERATIONS, random = crypto.randomBytes } = options;
  if (key?.type !== 'private') throw new TypeError('buildPkcs12: key must be a private KeyObject');
  if (typeof password !== 'string' || password.length === 0) {
    // Empty passwords are read inconsistently (OpenSSL tries both an empty and an absent BMPString).
    throw new TypeError('buildPkcs12: password must be a non-empty string');
  }
  if (!Number.isSafeInteger(iterations) || iterations < PKCS12_MIN_ITERATIONS) {
    throw new TypeError(`buildPkcs12: iterations must be an integer >= ${PKCS12_MIN_ITERATIONS}`);
  }
  describeKey(key);
  const certs = [certificate, ...chain].map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  let leaf: crypto.X509Certificate;
  try {
    leaf = new crypto.X509Certificate(certs[0]);
    // The chain is only carried, but a broken CA certificate would make the whole file unreadable.
    for (const c of certs.slice(1)) new crypto.X509Certificate(c);
  } catch (cause) {
    throw new MutualError('CERT_MALFORMED', { detail: 'a certificate given to buildPkcs12 does not parse' }, { cause });
  }
  if (!leaf.checkPrivateKey(key)) throw new MutualError('KEY_MISMATCH', { detail: `certificate ${leaf.subject.replace(/\n/g, ', ')}` });

  const friendlyName = options.friendlyName ?? /^CN=(.*)$/m.exec(leaf.subject)?.[1];
  const localKeyId = crypto.createHash('sha1').update(certs[0]).digest();
  const attrs = setOf(
    attribute(P12.localKeyId, octetString(localKeyId)),
    ...(friendlyName ? [attribute(P12.friendlyName, tlv(0x1e, bmpBytes(friendlyName)))] : []),
  );
  const utf8Password = Buffer.from(password, 'utf8');

  // CertBag (RFC 7292 4.2.3) inside a SafeBag (4.2); only the leaf gets attributes.
  const certBags = certs.map((der, i) =>
    seq(oid(P12.certBag), explicit(0, seq(oid(P12.x509Certificate), explicit(0, octetString(der)))), ...(i === 0 ? [attrs] : [])),
  );
  const certEnc = pbes2Encrypt(seq(...certBags), utf8Password, iterations, random);
  // EncryptedData v0 (RFC 7292 4.1, RFC 5652 8); encryptedContent is [0] IMPLICIT OCTET STRING.
  const encryptedData = seq(integer(0), seq(oid(P12.data), certEnc.algorithm, implicit(0, certEnc.ciphertext)));

  // PKCS8ShroudedKeyBag (RFC 7292 4.2.2): an EncryptedPrivateKeyInfo (RFC 5958 3).
  const keyBag = seq(oid(P12.pkcs8ShroudedKeyBag), explicit(0, encryptPrivateKeyInfo(key, password, iterations, random)), attrs);

  const authSafe = seq(contentInfo(P12.encryptedData, encryptedData), contentInfo(P12.data, octetString(seq(keyBag))));

  // MacData (RFC 7292 4, 5.1): HMAC-SHA256 over the AuthenticatedSafe octets, keyed by the
  // B.2 KDF with ID 3 over the BMPString password with its two zero bytes (B.1).
  const macSalt = random(SALT_BYTES);
  const macKey = pkcs12Kdf(Buffer.concat([bmpBytes(password), Buffer.alloc(2)]), macSalt, 3, iterations, 32);
  const mac = crypto.createHmac('sha256', macKey).update(authSafe).digest();
  const macData = seq(seq(seq(oid(P12.sha256), derNull()), octetString(mac)), octetString(macSalt), integer(iterations));

  return seq(integer(3), contentInfo(P12.data, octetString(authSafe)), macData);
}
