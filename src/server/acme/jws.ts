/**
 * The JWS of every ACME POST (RFC 8555 section 6.2), read and checked before any handler sees the
 * request: the flattened form only, a protected header with an allowed `alg`, exactly one of
 * `jwk` and `kid`, the nonce, and a `url` equal to the one requested; then the signature, verified
 * by jose. Everything here is bounded: the body, each header field and the keys accepted.
 *
 * The order of the checks is deliberate: what needs no store comes first (shape, algorithm, url,
 * key), then the account (a read), then the signature (CPU), and the nonce is spent last, so a
 * request that fails anything else does not use up the client's nonce, and only a request that
 * verified with the right key can spend one.
 *
 * The signature is checked with node:crypto on the calling thread (jose's verify goes through
 * WebCrypto, a thread-pool hop per request), and account keys are imported once and kept
 * (bounded), since an ACME client signs every request with the same key.
 */
import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { calculateJwkThumbprint } from 'jose';
import type { AcmeAccount, AcmeService, FlattenedJws } from '../../ca/index.ts';
import { isMutualError, MutualError } from '../../core/errors.ts';
import { readBody } from '../http-util.ts';

/**
 * Largest ACME request body read. The largest legitimate one is a finalize with a CSR (an RSA-4096
 * CSR of 100 names is ~12 KB, ~16 KB once base64url twice); 64 KiB leaves room and bounds the work.
 */
export const MAX_JWS_BYTES = 64 * 1024;
/** Longest protected header (base64url): an RSA-4096 `jwk` is ~750 characters, url, kid and nonce a few hundred. */
export const MAX_PROTECTED_CHARS = 4096;
/** Longest signature (base64url): RSA-4096 is 512 bytes, 683 characters. */
const MAX_SIGNATURE_CHARS = 1024;
/** Longest `nonce`, `url` or `kid`. */
const MAX_HEADER_FIELD_CHARS = 1024;
/** RSA account keys: RFC 8555 leaves sizes to the server; these are the CA's own limits for CSR keys. */
const RSA_MIN_BITS = 2048;
const RSA_MAX_BITS = 4096;

/**
 * The signature algorithms accepted (RFC 8555 section 6.2: `none` and MAC algorithms MUST NOT be
 * accepted). Each names the one key type it goes with.
 */
export const ACME_ALGORITHMS = ['ES256', 'ES384', 'RS256', 'EdDSA'] as const;
export type AcmeAlgorithm = (typeof ACME_ALGORITHMS)[number];

/** The members of a public JWK per key type (RFC 7638 section 3.2: the thumbprint's members). */
const PUBLIC_MEMBERS = { EC: ['crv', 'x', 'y'], RSA: ['e', 'n'], OKP: ['crv', 'x'] } as const;
/** Members that make a JWK private or symmetric (RFC 7518 sections 6.2.2, 6.3.2, 6.4.1; RFC 8037). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

const B64URL = /^[A-Za-z0-9_-]*$/;
/** An account id in a kid: opaque and URL-safe (acme-api.ts). */
const ACCOUNT_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** The checked protected header of an ACME JWS. */
export interface ProtectedHeader {
  alg: AcmeAlgorithm;
  /** Absent only in the inner JWS of a key change. */
  nonce?: string;
  url: string;
  /** The public key, with its public members only. */
  jwk?: JsonWebKey;
  kid?: string;
}

/** What an authenticated ACME POST carries. */
export interface AcmeRequest {
  header: ProtectedHeader;
  jws: FlattenedJws;
  /** The payload object; undefined for POST-as-GET (an empty payload, RFC 8555 section 6.3). */
  payload: Record<string, unknown> | undefined;
  /** The account of a `kid` request. */
  account?: AcmeAccount;
  /** The key and its RFC 7638 thumbprint of a `jwk` request. */
  jwk?: JsonWebKey;
  thumbprint?: string;
}

/** What {@link authenticate} checks a request against. */
export interface AuthenticateOptions {
  /** The absolute URL requested, built from the server's base URL (RFC 8555 section 6.4). */
  url: string;
  /** `${base}/acme/acct/`: a kid must be this followed by an account id. */
  accountUrlPrefix: string;
  /** Which key the endpoint takes: `jwk` (newAccount), `kid` (the rest), or either (revokeCert). */
  key: 'jwk' | 'kid' | 'either';
}

const malformed = (detail: string): MutualError => new MutualError('ACME_MALFORMED', { detail });

/**
 * Reads, checks and verifies the JWS of an ACME POST and spends its nonce. Throws a MutualError
 * with an ACME_* code (or INPUT_TOO_LARGE) naming what was wrong.
 */
export async function authenticate(service: Pick<AcmeService, 'spendNonce' | 'account'>, req: IncomingMessage, o: AuthenticateOptions): Promise<AcmeRequest> {
  const jws = await readJoseBody(req);
  const header = parseProtectedHeader(jws);
  if (header.url !== o.url) throw new MutualError('ACME_UNAUTHORIZED', { detail: `the JWS url is not the URL requested (${o.url})` });
  if (o.key === 'jwk' && !header.jwk) throw malformed('this endpoint takes a jwk, not a kid, in the protected header');
  if (o.key === 'kid' && !header.kid) throw malformed('this endpoint takes a kid (the account URL), not a jwk, in the protected header');
  let account: AcmeAccount | undefined;
  let thumbprint: string | undefined;
  let key: crypto.KeyObject;
  if (header.kid !== undefined) {
    account = await accountOf(service, header.kid, o.accountUrlPrefix);
    key = publicKeyOf(account.jwk, header.alg);
  } else {
    key = publicKeyOf(header.jwk!, header.alg);
    thumbprint = await calculateJwkThumbprint(header.jwk!, 'sha256');
  }
  const payloadBytes = await verifySignature(jws, key, header.alg);
  if (!(await service.spendNonce(header.nonce!))) throw new MutualError('ACME_BAD_NONCE', { detail: 'the nonce is unknown, expired or spent; retry with the one in Replay-Nonce' });
  return { header, jws, payload: parsePayload(payloadBytes), account, jwk: header.jwk, thumbprint };
}

/**
 * Reads the body of an ACME POST: `Content-Type: application/jose+json` (ACME_UNSUPPORTED_MEDIA_TYPE,
 * 415, RFC 8555 section 6.2), at most {@link MAX_JWS_BYTES} (INPUT_TOO_LARGE), and a flattened JWS.
 */
export async function readJoseBody(req: IncomingMessage): Promise<FlattenedJws> {
  const type = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/jose+json') throw new MutualError('ACME_UNSUPPORTED_MEDIA_TYPE', { detail: `content-type ${type.slice(0, 60) || '(none)'}` });
  let body: Buffer;
  try {
    body = await readBody(req, MAX_JWS_BYTES);
  } catch (e) {
    if (isMutualError(e, 'REQUEST_TOO_LARGE')) throw new MutualError('INPUT_TOO_LARGE', { detail: `the JWS is over ${MAX_JWS_BYTES} bytes` });
    throw e;
  }
  return parseFlattenedJws(parseJson(body.toString('utf8'), 'the body'));
}

/**
 * Checks that `v` is a flattened JWS with a protected header, a payload and one signature, and
 * nothing else: RFC 8555 section 6.2 forbids the unprotected header and several signatures.
 */
export function parseFlattenedJws(v: unknown): FlattenedJws {
  if (!isObject(v)) throw malformed('the JWS must be a JSON object (flattened serialization)');
  const extra = Object.keys(v).filter((k) => k !== 'protected' && k !== 'payload' && k !== 'signature');
  if (extra.length > 0) throw malformed(`the JWS has members other than protected, payload and signature (${extra.slice(0, 3).join(', ').slice(0, 60)}); no unprotected header, one signature`);
  const { protected: p, payload, signature } = v;
  if (typeof p !== 'string' || typeof payload !== 'string' || typeof signature !== 'string') throw malformed('protected, payload and signature must be strings');
  if (p.length === 0 || p.length > MAX_PROTECTED_CHARS) throw malformed(`the protected header must be 1 to ${MAX_PROTECTED_CHARS} characters`);
  // An empty signature is left to the checks that follow: with alg "none" it is badSignatureAlgorithm.
  if (signature.length > MAX_SIGNATURE_CHARS) throw malformed(`the signature must be at most ${MAX_SIGNATURE_CHARS} characters`);
  if (!B64URL.test(p) || !B64URL.test(payload) || !B64URL.test(signature)) throw malformed('protected, payload and signature must be base64url without padding');
  return { protected: p, payload, signature };
}

/**
 * Decodes and checks the protected header. `alg` first (ACME_BAD_SIGNATURE_ALGORITHM), then
 * exactly one of `jwk` and `kid`, a `jwk` with public members only, `url` and `nonce` (absent in
 * the inner JWS of a key change, `inner`).
 */
export function parseProtectedHeader(jws: FlattenedJws, o: { inner?: boolean } = {}): ProtectedHeader {
  const h = parseJson(Buffer.from(jws.protected, 'base64url').toString('utf8'), 'the protected header');
  if (!isObject(h)) throw malformed('the protected header must be a JSON object');
  const alg = h.alg;
  if (typeof alg !== 'string' || !(ACME_ALGORITHMS as readonly string[]).includes(alg)) {
    throw new MutualError('ACME_BAD_SIGNATURE_ALGORITHM', { detail: `alg ${JSON.stringify(alg ?? null).slice(0, 20)}`, algorithms: [...ACME_ALGORITHMS] });
  }
  // RFC 8555 uses neither: refused rather than handed to jose, which would honour b64: false (RFC 7797).
  if (h.crit !== undefined || h.b64 !== undefined) throw malformed('crit and b64 are not used in ACME');
  if ((h.jwk === undefined) === (h.kid === undefined)) throw malformed('the protected header must have exactly one of jwk and kid');
  if (o.inner && h.jwk === undefined) throw malformed('the inner JWS of a key change must carry the new key as jwk');
  const url = field(h, 'url');
  if (url === undefined) throw malformed('the protected header has no url');
  const nonce = field(h, 'nonce');
  if (o.inner && nonce !== undefined) throw malformed('the inner JWS of a key change must not have a nonce (RFC 8555 section 7.3.5)');
  if (!o.inner && nonce === undefined) throw new MutualError('ACME_BAD_NONCE', { detail: 'the protected header has no nonce' });
  if (nonce !== undefined && (nonce.length === 0 || !B64URL.test(nonce))) throw new MutualError('ACME_BAD_NONCE', { detail: 'the nonce must be base64url' });
  const kid = field(h, 'kid');
  return { alg: alg as AcmeAlgorithm, url, ...(nonce !== undefined ? { nonce } : {}), ...(h.jwk !== undefined ? { jwk: publicJwk(h.jwk) } : {}), ...(kid !== undefined ? { kid } : {}) };
}

/**
 * The public JWK of a header: an object of a supported key type, no private or symmetric members
 * (ACME_MALFORMED), reduced to its public members (what the account keeps and the thumbprint hashes).
 */
export function publicJwk(v: unknown): JsonWebKey {
  if (!isObject(v)) throw malformed('jwk must be a JSON object');
  const priv = PRIVATE_MEMBERS.filter((m) => m in v);
  if (priv.length > 0) throw malformed(`jwk has private or symmetric key members (${priv.join(', ')}); send the public key only`);
  const kty = v.kty;
  if (kty !== 'EC' && kty !== 'RSA' && kty !== 'OKP') throw new MutualError('ACME_BAD_PUBLIC_KEY', { detail: `key type ${JSON.stringify(kty ?? null).slice(0, 20)}` });
  const out: Record<string, string> = { kty };
  for (const m of PUBLIC_MEMBERS[kty]) {
    const x = v[m];
    if (typeof x !== 'string' || x.length === 0 || x.length > MAX_PROTECTED_CHARS || (m !== 'crv' && !B64URL.test(x))) throw malformed(`jwk member ${m} is missing or not base64url`);
    out[m] = x;
  }
  return out as JsonWebKey;
}

/**
 * The key of `jwk` for verifying with `alg`: the algorithm must be the key's (ES256 with P-256,
 * ES384 with P-384, RS256 with RSA, EdDSA with Ed25519: ACME_BAD_SIGNATURE_ALGORITHM otherwise),
 * and the key acceptable (RSA 2048-4096 bits with exponent 65537, a point on the curve:
 * ACME_BAD_PUBLIC_KEY otherwise).
 */
export function publicKeyOf(jwk: JsonWebKey, alg: AcmeAlgorithm): crypto.KeyObject {
  const wanted = jwk.kty === 'RSA' ? 'RS256' : jwk.kty === 'OKP' ? (jwk.crv === 'Ed25519' ? 'EdDSA' : undefined) : jwk.crv === 'P-256' ? 'ES256' : jwk.crv === 'P-384' ? 'ES384' : undefined;
  if (!wanted) throw new MutualError('ACME_BAD_PUBLIC_KEY', { detail: `curve ${String(jwk.crv).slice(0, 20)}` });
  if (wanted !== alg) throw new MutualError('ACME_BAD_SIGNATURE_ALGORITHM', { detail: `alg ${alg} does not go with a ${jwk.kty} ${jwk.crv ?? ''} key; use ${wanted}`, algorithms: [...ACME_ALGORITHMS] });
  const id = `${jwk.kty}|${jwk.crv ?? ''}|${jwk.x ?? ''}|${jwk.y ?? ''}|${jwk.n ?? ''}|${jwk.e ?? ''}`;
  const known = importedKeys.get(id);
  if (known) return known;
  let key: crypto.KeyObject;
  try {
    key = crypto.createPublicKey({ key: jwk as crypto.JsonWebKey, format: 'jwk' });
  } catch {
    throw new MutualError('ACME_BAD_PUBLIC_KEY', { detail: 'the jwk is not a valid public key (a point off the curve, or bad encoding)' });
  }
  if (jwk.kty === 'RSA') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS || bits % 8 !== 0) throw new MutualError('ACME_BAD_PUBLIC_KEY', { detail: `RSA key of ${bits} bits; use ${RSA_MIN_BITS} to ${RSA_MAX_BITS}` });
    if (jwk.e !== 'AQAB') throw new MutualError('ACME_BAD_PUBLIC_KEY', { detail: 'RSA public exponent must be 65537' });
  }
  if (importedKeys.size >= MAX_IMPORTED_KEYS) importedKeys.clear();
  importedKeys.set(id, key);
  return key;
}

/** Account keys already imported (and checked), by their public members: see the module comment. */
const importedKeys = new Map<string, crypto.KeyObject>();
/** Keys kept before the cache starts over (a few MB at most). */
const MAX_IMPORTED_KEYS = 10_000;

/** The digest and signature encoding of each algorithm for node:crypto (RFC 7518 section 3; RFC 8037). */
const VERIFY_PARAMS: Record<AcmeAlgorithm, { digest: string | null; dsaEncoding?: 'ieee-p1363' }> = {
  ES256: { digest: 'sha256', dsaEncoding: 'ieee-p1363' },
  ES384: { digest: 'sha384', dsaEncoding: 'ieee-p1363' },
  RS256: { digest: 'sha256' },
  EdDSA: { digest: null },
};
/** The signature length each ECDSA algorithm must have (r || s, RFC 7518 section 3.4). */
const ECDSA_SIGNATURE_BYTES: Partial<Record<AcmeAlgorithm, number>> = { ES256: 64, ES384: 96 };

/** Verifies the signature over `protected.payload`; returns the payload bytes. ACME_BAD_SIGNATURE when it does not verify. */
export async function verifySignature(jws: FlattenedJws, key: crypto.KeyObject, alg: AcmeAlgorithm): Promise<Uint8Array> {
  const bad = () => new MutualError('ACME_BAD_SIGNATURE', { detail: 'the signature does not verify with the key' });
  if (!B64URL.test(jws.signature) || !B64URL.test(jws.payload)) throw bad();
  const signature = Buffer.from(jws.signature, 'base64url');
  const wantLength = ECDSA_SIGNATURE_BYTES[alg];
  if (signature.length === 0 || (wantLength !== undefined && signature.length !== wantLength)) throw bad();
  const { digest, dsaEncoding } = VERIFY_PARAMS[alg];
  const input = Buffer.from(`${jws.protected}.${jws.payload}`, 'ascii');
  let ok: boolean;
  try {
    ok = crypto.verify(digest, input, dsaEncoding ? { key, dsaEncoding } : key, signature);
  } catch (e) {
    throw new MutualError('ACME_BAD_SIGNATURE', { detail: 'the signature does not verify with the key' }, { cause: e });
  }
  if (!ok) throw bad();
  return Buffer.from(jws.payload, 'base64url');
}

/** The payload: empty for POST-as-GET (undefined), else a JSON object (ACME_MALFORMED otherwise). */
export function parsePayload(bytes: Uint8Array): Record<string, unknown> | undefined {
  if (bytes.length === 0) return undefined;
  const v = parseJson(Buffer.from(bytes).toString('utf8'), 'the payload');
  if (!isObject(v)) throw malformed('the payload must be a JSON object, or empty for POST-as-GET');
  return v;
}

/**
 * The inner JWS of a key change (RFC 8555 section 7.3.5), the outer one verified already: signed
 * by the new key (`jwk`, no nonce), the same url as the outer, and a payload naming the account
 * and its current key. Returns the new key and its thumbprint.
 */
export async function verifyKeyChange(inner: unknown, o: { url: string; accountUrl: string; account: AcmeAccount }): Promise<{ jwk: JsonWebKey; thumbprint: string }> {
  const jws = parseFlattenedJws(inner);
  const header = parseProtectedHeader(jws, { inner: true });
  if (header.url !== o.url) throw malformed('the inner JWS url must be the outer one');
  const jwk = header.jwk!;
  const payload = parsePayload(await verifySignature(jws, publicKeyOf(jwk, header.alg), header.alg));
  if (!payload) throw malformed('the inner JWS payload must name the account and the old key');
  if (payload.account !== o.accountUrl) throw malformed('the inner JWS names another account than the outer kid');
  let oldThumbprint: string;
  try {
    oldThumbprint = await calculateJwkThumbprint(publicJwk(payload.oldKey), 'sha256');
  } catch {
    throw malformed('the inner JWS oldKey is not a public JWK');
  }
  if (oldThumbprint !== o.account.thumbprint) throw malformed('oldKey is not the account\'s current key');
  const thumbprint = await calculateJwkThumbprint(jwk, 'sha256');
  if (thumbprint === o.account.thumbprint) throw malformed('the new key is the account\'s current key');
  return { jwk, thumbprint };
}

/** The account a kid names: a URL of this server (ACME_MALFORMED), known (ACME_ACCOUNT_DOES_NOT_EXIST), valid. */
async function accountOf(service: Pick<AcmeService, 'account'>, kid: string, prefix: string): Promise<AcmeAccount> {
  const id = kid.startsWith(prefix) ? kid.slice(prefix.length) : '';
  if (!ACCOUNT_ID.test(id)) throw malformed(`kid must be an account URL of this server (${prefix}...)`);
  const account = await service.account(id);
  if (!account) throw new MutualError('ACME_ACCOUNT_DOES_NOT_EXIST', { detail: 'no account at this kid' });
  // RFC 8555 section 7.3.6: no request authorized by a deactivated account's key is accepted.
  if (account.status === 'deactivated') throw new MutualError('ACME_ACCOUNT_DEACTIVATED');
  if (account.status !== 'valid') throw new MutualError('ACME_UNAUTHORIZED', { detail: `the account is ${account.status}` });
  return account;
}

/** A string header field, bounded; undefined when absent; ACME_MALFORMED when not a string. */
function field(h: Record<string, unknown>, name: string): string | undefined {
  const v = h[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > MAX_HEADER_FIELD_CHARS) throw malformed(`${name} must be a string of at most ${MAX_HEADER_FIELD_CHARS} characters`);
  return v;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw malformed(`${what} is not valid JSON`);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
