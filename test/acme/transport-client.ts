/**
 * A small, real ACME client for the tests, written with jose as RFC 8555 describes a client: it
 * keeps the last Replay-Nonce, signs each POST as a flattened JWS (jwk or kid), and can be told to
 * get things wrong on purpose (another url, another key, another alg, a spent nonce, a content
 * type) so the server's refusals can be driven one at a time.
 */
import { FlattenedSign, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { send, type SendAnswer } from '../helpers/server.ts';

/** An account key as an ACME client holds it. */
export interface ClientKey {
  alg: 'ES256' | 'ES384' | 'RS256' | 'EdDSA';
  privateKey: CryptoKey;
  jwk: JWK;
  thumbprint: string;
}

/** A fresh account key. */
export async function clientKey(alg: ClientKey['alg'] = 'ES256'): Promise<ClientKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg, privateKey, jwk, thumbprint: await calculateJwkThumbprint(jwk) };
}

/** The directory's URLs. */
export interface Directory {
  newNonce: string;
  newAccount: string;
  newOrder: string;
  revokeCert: string;
  keyChange: string;
  renewalInfo: string;
  meta: Record<string, unknown>;
}

/** What to get wrong in one POST. */
export interface PostOptions {
  /** Sign with the jwk instead of the kid. */
  jwk?: boolean;
  /** Sign with this key (the header still names the client's). */
  signWith?: ClientKey;
  /** Header members to set or replace (`undefined` removes one). */
  header?: Record<string, unknown>;
  /** The protected header's `url` (default: the URL posted to). */
  url?: string;
  /** Replace the JWS as sent. */
  raw?: string | Buffer;
  contentType?: string;
}

const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** See the module comment. */
export class AcmeTestClient {
  readonly root: string;
  key: ClientKey;
  kid?: string;
  nonce?: string;
  dir!: Directory;
  readonly directoryUrl: string;

  constructor(directoryUrl: string, root: string, key: ClientKey) {
    this.directoryUrl = directoryUrl;
    this.root = root;
    this.key = key;
  }

  async start(): Promise<this> {
    this.dir = (await this.get(this.directoryUrl)).json;
    return this;
  }

  /** A GET (or HEAD) without a JWS. */
  async get(url: string, method = 'GET'): Promise<SendAnswer> {
    const r = await send(url, { method, tls: { ca: this.root } });
    this.keepNonce(r);
    return r;
  }

  /** A fresh nonce from new-nonce. */
  async freshNonce(): Promise<string> {
    const r = await this.get(this.dir.newNonce, 'HEAD');
    return r.headers['replay-nonce'] as string;
  }

  /** A signed JWS for `url` (the nonce is the client's last one, spent here). */
  async jws(url: string, payload: unknown, o: PostOptions = {}): Promise<string> {
    const nonce = this.nonce ?? (await this.freshNonce());
    this.nonce = undefined;
    const header: Record<string, unknown> = { alg: this.key.alg, nonce, url: o.url ?? url, ...(o.jwk || !this.kid ? { jwk: this.key.jwk } : { kid: this.kid }), ...o.header };
    for (const k of Object.keys(header)) if (header[k] === undefined) delete header[k];
    const bytes = payload === '' ? new Uint8Array() : Buffer.from(JSON.stringify(payload));
    const signer = o.signWith ?? this.key;
    const s = await new FlattenedSign(bytes).setProtectedHeader(header as { alg: string }).sign(signer.privateKey);
    return JSON.stringify({ protected: s.protected, payload: s.payload, signature: s.signature });
  }

  /** A signed POST; `payload` '' is POST-as-GET. */
  async post(url: string, payload: unknown, o: PostOptions = {}): Promise<SendAnswer> {
    const body = o.raw ?? (await this.jws(url, payload, o));
    const r = await send(url, { method: 'POST', body, headers: { 'content-type': o.contentType ?? 'application/jose+json' }, tls: { ca: this.root } });
    this.keepNonce(r);
    return r;
  }

  /** An unsigned JWS with any header (alg none, HS256...), as a broken or hostile client sends it. */
  static unsigned(header: Record<string, unknown>, payload: unknown, signature = 'AA'): string {
    return JSON.stringify({ protected: b64(header), payload: payload === '' ? '' : b64(payload), signature });
  }

  private keepNonce(r: SendAnswer): void {
    const n = r.headers['replay-nonce'];
    if (typeof n === 'string') this.nonce = n;
  }
}
