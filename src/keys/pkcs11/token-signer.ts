/**
 * A Signer over a key on a PKCS#11 token. The data is hashed here and the token signs the digest,
 * which every token supports (SoftHSM2 has no CKM_ECDSA_SHA256): ECDSA with CKM_ECDSA (raw r||s,
 * turned into the DER ECDSA-Sig-Value), RSA PKCS#1 v1.5 with CKM_RSA_PKCS over the DER DigestInfo,
 * RSA-PSS with CKM_RSA_PKCS_PSS; Ed25519 with CKM_EDDSA over the whole message. Signing runs on
 * libuv's pool (pkcs11js's callback form).
 *
 * After a reconnect the key is found again by its URI and must have the public key first opened:
 * a token swapped for another with a key of the same name signs nothing.
 */
import crypto from 'node:crypto';
import { MutualError } from '../../core/errors.ts';
import { SIGNATURE_ALGORITHMS, signatureAlgorithmFor, type SignatureAlgorithm } from '../../core/algorithms.ts';
import type { Signer, SignerHealth } from '../../core/signer.ts';
import { seq, unsignedInteger } from '../../core/der.ts';
import { CKG_MGF1_SHA256, CKM, type Cryptoki, type Mechanism } from './binding.ts';
import { findKey, type FoundKey } from './token-key.ts';
import type { TokenSessions } from './token.ts';
import type { Pkcs11Uri } from './uri.ts';

/** DER DigestInfo prefixes (RFC 8017 9.2 note 1): the token pads, we name the hash. */
const DIGEST_INFO = {
  sha256: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  sha384: Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  sha512: Buffer.from('3051300d060960864801650304020305000440', 'hex'),
} as const;

/** PSS salt length, bytes: the digest's length (RFC 4055 3.1 recommends it; SIGNATURE_ALGORITHMS.rsassaPssSha256 says 32). */
const PSS_SALT_BYTES = 32;

/** Options of {@link tokenSigner}. */
export interface TokenSignerOptions {
  /** The clock for reconnect pacing, in ms. Default Date.now. */
  now?: () => number;
}

/** The raw r||s of CKM_ECDSA as a DER ECDSA-Sig-Value (RFC 3279 2.2.3), INTEGERs minimal. */
export function ecdsaDer(raw: Buffer): Buffer {
  const half = raw.length / 2;
  return seq(unsignedInteger(raw.subarray(0, half)), unsignedInteger(raw.subarray(half)));
}

/** A key on a token, opened now (sync). */
export class TokenSigner implements Signer {
  readonly publicKey: crypto.KeyObject;
  readonly algorithm: SignatureAlgorithm;
  readonly #token: TokenSessions;
  readonly #uri: Pkcs11Uri;
  readonly #now: () => number;
  readonly #first: FoundKey;
  #key: FoundKey;
  #generation: number;
  readonly #pss: boolean;

  constructor(token: TokenSessions, uri: Pkcs11Uri, o: TokenSignerOptions = {}) {
    this.#token = token;
    this.#uri = uri;
    this.#now = o.now ?? Date.now;
    const now = this.#now();
    this.#key = this.#first = token.withSessionSync(now, (ck, session) => this.#find(ck, session, now));
    this.#generation = token.module.generation;
    this.publicKey = this.#key.publicKey;
    this.#pss = this.#key.kind === 'rsa' && uri.rsa === 'pss';
    this.algorithm = this.#pss ? SIGNATURE_ALGORITHMS.rsassaPssSha256 : signatureAlgorithmFor(this.publicKey);
  }

  /** The key's label and id on the token (for its key reference). */
  get object(): { label: string; id: Buffer } {
    return { label: this.#first.label, id: this.#first.id };
  }

  #find(ck: Cryptoki, session: Buffer, now: number): FoundKey {
    try {
      return findKey(ck, session, this.#uri);
    } catch (e) {
      throw this.#token.module.failure(e, 'finding the key', now);
    }
  }

  /** The key handle of the current module generation: found again, and compared, after a reconnect. */
  #current(ck: Cryptoki, session: Buffer, now: number): FoundKey {
    const generation = this.#token.module.generation;
    if (this.#generation === generation) return this.#key;
    const again = this.#find(ck, session, now);
    if (!again.spki.equals(this.#first.spki)) {
      throw new MutualError('HSM_UNAVAILABLE', { detail: 'after reconnecting, the key the URI names has another public key than the one first opened; refusing to sign with it' });
    }
    this.#key = again;
    this.#generation = generation;
    return again;
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    const hash = this.algorithm.hash;
    const now = this.#now();
    if (hash === null) {
      // Ed25519 is PureEdDSA (RFC 8032): the token gets the whole message, as crypto.sign would.
      return this.#token.withSession(now, (ck, session) => {
        const key = this.#current(ck, session, now);
        return this.#signOnPool(ck, session, { mechanism: CKM.EDDSA }, key.handle, Buffer.from(data), key.signatureBytes, now);
      });
    }
    const digest = crypto.createHash(hash).update(data).digest();
    return this.#token.withSession(now, async (ck, session) => {
      const key = this.#current(ck, session, now);
      const { mechanism, input } = this.#mechanism(key, hash, digest);
      const raw = await this.#signOnPool(ck, session, mechanism, key.handle, input, key.signatureBytes, now);
      if (key.kind === 'ec') return ecdsaDer(raw);
      // A fault in the token's RSA-CRT arithmetic makes a wrong signature that factors the modulus;
      // it must not leave the process. Measured here: an RSA 2048 verify (e = 65537) costs 23 us,
      // 8% of a signature in node:crypto.
      const verifyKey = this.#pss ? { key: key.publicKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_BYTES } : key.publicKey;
      if (!crypto.verify(hash, data, verifyKey, raw)) {
        throw new MutualError('HSM_UNAVAILABLE', { detail: 'the token made an RSA signature that does not verify; it was not used' });
      }
      return raw;
    });
  }

  /** What the token is asked to sign, and how: ECDSA and PSS over the digest, PKCS#1 over the DigestInfo. */
  #mechanism(key: FoundKey, hash: 'sha256' | 'sha384' | 'sha512', digest: Buffer): { mechanism: Mechanism; input: Buffer } {
    if (key.kind === 'ec') return { mechanism: { mechanism: CKM.ECDSA }, input: digest };
    if (!this.#pss) return { mechanism: { mechanism: CKM.RSA_PKCS }, input: Buffer.concat([DIGEST_INFO[hash], digest]) };
    const parameter = { type: this.#token.module.binding.CK_PARAMS_RSA_PSS, hashAlg: CKM.SHA256, mgf: CKG_MGF1_SHA256, saltLen: PSS_SALT_BYTES };
    return { mechanism: { mechanism: CKM.RSA_PKCS_PSS, parameter }, input: digest };
  }

  #signOnPool(ck: Cryptoki, session: Buffer, mechanism: Mechanism, key: Buffer, input: Buffer, outLength: number, now: number): Promise<Buffer> {
    const module = this.#token.module;
    return new Promise<Buffer>((resolve, reject) => {
      try {
        ck.C_SignInit(session, mechanism, key);
      } catch (e) {
        reject(module.failure(e, 'C_SignInit', now));
        return;
      }
      module.begin();
      try {
        ck.C_Sign(session, input, Buffer.alloc(outLength), (e, sig) => {
          module.end();
          if (e) reject(module.failure(e, 'C_Sign', now));
          else resolve(sig);
        });
      } catch (e) {
        module.end();
        reject(module.failure(e, 'C_Sign', now));
      }
    });
  }

  async health(): Promise<SignerHealth> {
    const now = this.#now();
    try {
      // A live session answering C_FindObjects shows token and key are still there; while down this
      // is the reconnect attempt (paced like every other).
      await this.#token.withSession(now, (ck, session) => {
        try {
          if (this.#generation === this.#token.module.generation) findKey(ck, session, this.#uri);
        } catch (e) {
          // A key that was there and is not is a token gone from under the session (SoftHSM2 with its
          // folder renamed lists no objects): re-initializing is what brings it back.
          if (e instanceof MutualError && e.code === 'HSM_KEY_NOT_FOUND') {
            const gone = new MutualError('HSM_UNAVAILABLE', { detail: `the key is no longer on the token (${e.fields.detail})` }, { cause: e });
            this.#token.module.markDown(gone, now);
            throw gone;
          }
          throw this.#token.module.failure(e, 'checking the key', now);
        }
        this.#current(ck, session, now);
      });
      return { available: true };
    } catch (e) {
      const m = e instanceof MutualError ? e : this.#token.module.failure(e, 'health', now);
      return { available: false, detail: `${m.code}: ${m.fields.detail ?? m.message}` };
    }
  }
}
