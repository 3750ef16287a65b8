/**
 * Makes a key pair on a token: the private key never leaves it (CKA_SENSITIVE, not CKA_EXTRACTABLE,
 * so the token also sets CKA_NEVER_EXTRACTABLE). The key gets a label saying what it is for and
 * when it was made, and as CKA_ID the RFC 5280 key identifier of its public key, so the CA
 * certificate's SKI names the token object too.
 */
import crypto from 'node:crypto';
import type { KeyType } from '../../core/algorithms.ts';
import { keyIdentifier } from '../../core/algorithms.ts';
import { MutualError } from '../../core/errors.ts';
import { oid } from '../../core/der.ts';
import { OID } from '../../core/oids.ts';
import { CKA, CKM, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, type Attribute, type Mechanism } from './binding.ts';
import { readPublicKey, type KeyKind } from './token-key.ts';
import type { TokenSessions } from './token.ts';

/** What {@link generateTokenKey} made: where to find it again. */
export interface TokenKeyMade {
  label: string;
  id: Buffer;
}

/** `mutual-<purpose>-<YYYYMMDD>-<8 hex>`: the purpose and UTC day, and randomness against collisions. */
export function keyLabel(purpose: string, now: Date): string {
  if (!/^[a-z0-9-]{1,40}$/.test(purpose)) throw new TypeError('purpose must be 1-40 of a-z, 0-9 and "-"');
  const day = now.toISOString().slice(0, 10).replace(/-/g, '');
  return `mutual-${purpose}-${day}-${crypto.randomBytes(4).toString('hex')}`;
}

function generation(type: KeyType): { mechanism: Mechanism; kind: KeyKind; publicTemplate: Attribute[] } {
  if (type === 'p256' || type === 'p384') {
    return { mechanism: { mechanism: CKM.EC_KEY_PAIR_GEN }, kind: 'ec', publicTemplate: [{ type: CKA.EC_PARAMS, value: oid(type === 'p256' ? OID.p256 : OID.p384) }] };
  }
  if (type === 'rsa2048' || type === 'rsa3072' || type === 'rsa4096') {
    const bits = Number(type.slice(3));
    return {
      mechanism: { mechanism: CKM.RSA_PKCS_KEY_PAIR_GEN },
      kind: 'rsa',
      publicTemplate: [{ type: CKA.MODULUS_BITS, value: bits }, { type: CKA.PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }],
    };
  }
  if (type === 'ed25519') {
    // PKCS#11 3.0 2.3.10 names the curve by OID or by name; SoftHSM2 2.6.1 takes the OID.
    return { mechanism: { mechanism: CKM.EC_EDWARDS_KEY_PAIR_GEN }, kind: 'ed25519', publicTemplate: [{ type: CKA.EC_PARAMS, value: oid(OID.ed25519) }] };
  }
  throw new MutualError('HSM_MECHANISM_UNSUPPORTED', { detail: `key type ${String(type)} cannot be made on a token; use p256, p384, ed25519 or rsa2048-4096` });
}

/**
 * Generates a `type` key pair on the token (sync: C_GenerateKeyPair), labelled {@link keyLabel},
 * CKA_ID set to the key identifier afterwards (it depends on the key).
 * @throws MutualError `HSM_MECHANISM_UNSUPPORTED` (a token without the mechanism: CKR_MECHANISM_INVALID),
 *   `HSM_UNAVAILABLE` and the token's codes.
 */
export function generateTokenKey(token: TokenSessions, type: KeyType, o: { purpose: string; ephemeral: boolean; now: number }): TokenKeyMade {
  const g = generation(type);
  const label = keyLabel(o.purpose, new Date(o.now));
  const persistent = !o.ephemeral;
  return token.withSessionSync(o.now, (ck, session) => {
    try {
      const pair = ck.C_GenerateKeyPair(
        session,
        g.mechanism,
        [{ type: CKA.CLASS, value: CKO_PUBLIC_KEY }, { type: CKA.TOKEN, value: persistent }, { type: CKA.VERIFY, value: true }, { type: CKA.LABEL, value: label }, ...g.publicTemplate],
        [
          { type: CKA.CLASS, value: CKO_PRIVATE_KEY }, { type: CKA.TOKEN, value: persistent }, { type: CKA.PRIVATE, value: true },
          { type: CKA.SENSITIVE, value: true }, { type: CKA.EXTRACTABLE, value: false }, { type: CKA.SIGN, value: true }, { type: CKA.LABEL, value: label },
        ],
      );
      const { spki } = readPublicKey(ck, session, pair.publicKey, g.kind);
      const id = keyIdentifier(spki);
      ck.C_SetAttributeValue(session, pair.publicKey, [{ type: CKA.ID, value: id }]);
      ck.C_SetAttributeValue(session, pair.privateKey, [{ type: CKA.ID, value: id }]);
      return { label, id };
    } catch (e) {
      throw token.module.failure(e, `generating a ${type} key`, o.now);
    }
  });
}
