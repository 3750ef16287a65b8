/**
 * Replay nonces (RFC 8555 section 6.5) that any replica accepts once, without storing the nonces
 * handed out: a nonce is 16 random bytes, its expiry and an HMAC over both, with a key every
 * replica reads from the shared store (made by the first). Spending one checks the HMAC and the
 * expiry, then inserts it into the store's spent table, whose primary key lets one spend win.
 */
import crypto from 'node:crypto';
import type { AcmeStore } from './acme-store.ts';

/** How long a nonce may be used after it was handed out. */
export const NONCE_LIFETIME_MS = 5 * 60_000;
/** Name of the nonce key in the store. */
const NONCE_KEY = 'nonce-hmac';
/** Bytes of a nonce: random (16), expiry in epoch seconds (8), truncated HMAC-SHA256 (16). */
const RANDOM = 16;
const MAC = 16;
const LENGTH = RANDOM + 8 + MAC;

/** See the module comment. */
export class AcmeNonces {
  readonly #store: AcmeStore;
  readonly #now: () => Date;
  /** The HMAC key as a KeyObject, made once (a Buffer key is re-imported by every createHmac). */
  #key: Promise<crypto.KeyObject> | undefined;

  constructor(store: AcmeStore, now: () => Date) {
    this.#store = store;
    this.#now = now;
  }

  #hmacKey(): Promise<crypto.KeyObject> {
    this.#key ??= this.#store.secret(NONCE_KEY, crypto.randomBytes(32)).then((k) => crypto.createSecretKey(k)).catch((e: unknown) => {
      this.#key = undefined;
      throw e;
    });
    return this.#key;
  }

  /** A fresh nonce, base64url. */
  async make(): Promise<string> {
    const key = await this.#hmacKey();
    const body = Buffer.alloc(RANDOM + 8);
    crypto.randomFillSync(body, 0, RANDOM);
    body.writeBigUInt64BE(BigInt(Math.floor((this.#now().getTime() + NONCE_LIFETIME_MS) / 1000)), RANDOM);
    return Buffer.concat([body, crypto.createHmac('sha256', key).update(body).digest().subarray(0, MAC)]).toString('base64url');
  }

  /** Spends a nonce: false when it is malformed, forged, expired or spent before (here or on another replica). */
  async spend(nonce: string): Promise<boolean> {
    if (typeof nonce !== 'string' || nonce.length !== Math.ceil((LENGTH * 4) / 3) || !/^[A-Za-z0-9_-]+$/.test(nonce)) return false;
    const raw = Buffer.from(nonce, 'base64url');
    if (raw.length !== LENGTH) return false;
    const body = raw.subarray(0, RANDOM + 8);
    const mac = crypto.createHmac('sha256', await this.#hmacKey()).update(body).digest().subarray(0, MAC);
    if (!crypto.timingSafeEqual(mac, raw.subarray(RANDOM + 8))) return false;
    const expires = new Date(Number(body.readBigUInt64BE(RANDOM)) * 1000);
    if (expires.getTime() <= this.#now().getTime()) return false;
    return this.#store.spendNonce(nonce, expires);
  }
}
