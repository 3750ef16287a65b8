/**
 * One-time enrollment tokens: a JWS (ES256, via jose) made by an admin (`mutual token`), bound to
 * the names it allows, short-lived, and single use (the CA records each token id when it is
 * spent). The token also carries the root's SHA-256 fingerprint, so a new host can pin the CA's
 * root before it trusts anything the server says.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { jwtVerify, errors as joseErrors } from 'jose';
import { MutualError, isMutualError } from '../core/errors.ts';
import { signCompactJws } from '../core/jws.ts';
import type { SubjectAltNames } from '../core/names.ts';
import { keyObjectSigner, type Signer } from '../core/signer.ts';
import { generateSigner, openSigner, type KeyStoreSpec } from '../keys/index.ts';
import { MIN_CERT_LIFETIME_SECONDS } from './issue-request.ts';
import type { LeafRole } from './load-intermediates.ts';
import { MAX_TOKEN_TTL_SECONDS } from './limits.ts';
import { newKeyOptions } from './key-store-choice.ts';

/** Longest token accepted. */
export const MAX_TOKEN_LENGTH = 8 * 1024;
/** See ./limits.ts (kept there so option parsing need not load this file). */
export { MAX_TOKEN_TTL_SECONDS };
/**
 * Clock skew tolerated between the token maker and the CA. Small: a token is made on (or next
 * to) the CA, and every second of tolerance lengthens a short token's life (a 1-second token was
 * accepted 12 s after expiry with 30).
 */
export const TOKEN_CLOCK_TOLERANCE_SECONDS = 5;

const ISSUER = 'mutual';
const AUDIENCE = 'mutual:enroll';

/** What a verified token allows. */
export interface TokenClaims {
  jti: string;
  role: LeafRole;
  names: SubjectAltNames;
  /** SHA-256 of the root certificate (DER), hex. */
  rootFingerprint: string;
  expiresAt: Date;
  /** Who made it. */
  subject: string;
  /**
   * Lifetime of the certificate it enrolls, in seconds, chosen by the admin who made it (claim
   * `lft`); absent: the profile's default. The enrollment request cannot choose it.
   */
  certLifetimeSeconds?: number;
}

/** The token signing key's file in a state folder's keys folder. */
export function tokenKeyFile(keysDir: string): string {
  return path.join(keysDir, 'token.key.pem');
}

/**
 * Makes the token signing key in a state folder (`mutual init` does, so replicas copied from the
 * folder share it): an encrypted key file, or with `store` (config.yaml's `keys.enrollmentTokenKey:
 * store`) a key on the token and its reference in the file. Does nothing when it is there already.
 */
export function createTokenKey(keysDir: string, passphrase: string, store?: KeyStoreSpec): void {
  const file = tokenKeyFile(keysDir);
  if (fs.existsSync(file)) return;
  try {
    // save links a complete temporary file into place, so a reader never sees half a key (or
    // reference), and a second maker gets KEY_FILE_EXISTS instead of replacing the first one's.
    generateSigner('p256', newKeyOptions(store, 'token')).save(file, passphrase);
  } catch (e) {
    // Another process (`mutual serve` and `mutual token` started together, two replicas) made it
    // first: theirs is the one every token is signed with.
    if (!isMutualError(e, 'KEY_FILE_EXISTS')) throw e;
  }
}

/**
 * Opens the token signing key of the state folder, as a Signer (a file key or a token key, as its
 * file says). A folder made before `mutual init` made the key gets one on first use, in `store`
 * (see createTokenKey), made safely against another process making it at the same time.
 */
export function loadTokenKey(keysDir: string, passphrase: string, store?: KeyStoreSpec): Signer {
  createTokenKey(keysDir, passphrase, store);
  return openSigner(tokenKeyFile(keysDir), passphrase);
}

/**
 * Makes a token for the given names, signed ES256 by `key`: the token Signer (see loadTokenKey),
 * or a P-256 private KeyObject the caller holds. `certLifetimeSeconds` (checked by the caller
 * against the profile with checkLifetime) fixes the lifetime of the certificate it enrolls.
 */
export async function mintToken(o: {
  key: Signer | KeyObject; names: SubjectAltNames; ttlSeconds: number; rootFingerprint: string; madeBy: string; now?: Date; certLifetimeSeconds?: number;
}): Promise<{ token: string; jti: string; expiresAt: Date }> {
  if (!(o.ttlSeconds > 0 && o.ttlSeconds <= MAX_TOKEN_TTL_SECONDS)) throw new MutualError('CONFIG_INVALID', { detail: `token ttl must be 1 s to ${MAX_TOKEN_TTL_SECONDS / 86_400} days` });
  if (o.names.dns.length + o.names.ip.length + o.names.uri.length === 0) throw new MutualError('POLICY_NO_NAMES', { detail: 'a token needs the names it allows' });
  if (o.certLifetimeSeconds !== undefined && !(Number.isInteger(o.certLifetimeSeconds) && o.certLifetimeSeconds >= MIN_CERT_LIFETIME_SECONDS)) {
    throw new MutualError('POLICY_VALIDITY_TOO_SHORT', { detail: `certificate lifetime ${o.certLifetimeSeconds} s` });
  }
  const now = Math.floor((o.now ?? new Date()).getTime() / 1000);
  const jti = crypto.randomBytes(16).toString('base64url');
  // The claims in the order jose's SignJWT wrote them.
  const claims = {
    sans: o.names, sha: o.rootFingerprint, ...(o.certLifetimeSeconds !== undefined ? { lft: o.certLifetimeSeconds } : {}),
    iss: ISSUER, aud: AUDIENCE, sub: o.madeBy, jti, iat: now, nbf: now - TOKEN_CLOCK_TOLERANCE_SECONDS, exp: now + o.ttlSeconds,
  };
  const signer = o.key instanceof crypto.KeyObject ? keyObjectSigner(o.key) : o.key;
  const token = await signCompactJws({ typ: 'JWT' }, claims, signer);
  return { token, jti, expiresAt: new Date((now + o.ttlSeconds) * 1000) };
}

const stringList = (v: unknown): v is string[] => Array.isArray(v) && v.length <= 100 && v.every((x) => typeof x === 'string' && x.length <= 2048);

/** Verifies a token's signature and claims (not its single use: the store does that). */
export async function verifyToken(token: string, publicKey: KeyObject, now: Date = new Date()): Promise<TokenClaims> {
  if (typeof token !== 'string' || token.trim() === '') throw new MutualError('TOKEN_MISSING', { detail: 'the request carries an empty token' });
  if (token.length > MAX_TOKEN_LENGTH) throw new MutualError('TOKEN_INVALID', { detail: `the token is longer than ${MAX_TOKEN_LENGTH} characters` });
  let payload;
  try {
    ({ payload } = await jwtVerify(token, publicKey, {
      issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'], currentDate: now, clockTolerance: TOKEN_CLOCK_TOLERANCE_SECONDS,
      requiredClaims: ['jti', 'exp', 'iat', 'sub'],
    }));
  } catch (e) {
    if (e instanceof joseErrors.JWTExpired) throw new MutualError('TOKEN_EXPIRED', { detail: 'the token is past its expiry' });
    throw new MutualError('TOKEN_INVALID', { detail: e instanceof joseErrors.JOSEError ? e.code : 'unreadable token' });
  }
  const sans = payload.sans as Record<string, unknown> | undefined;
  if (!sans || !stringList(sans.dns) || !stringList(sans.ip) || !stringList(sans.uri) || typeof payload.sha !== 'string') {
    throw new MutualError('TOKEN_INVALID', { detail: 'the token does not name what it allows' });
  }
  const names = { dns: sans.dns, ip: sans.ip, uri: sans.uri };
  const lft = payload.lft;
  if (lft !== undefined && !(typeof lft === 'number' && Number.isInteger(lft) && lft >= MIN_CERT_LIFETIME_SECONDS)) {
    throw new MutualError('TOKEN_INVALID', { detail: 'the token\'s certificate lifetime (lft) is not a whole number of seconds >= 300' });
  }
  return {
    ...(lft !== undefined ? { certLifetimeSeconds: lft } : {}),
    jti: payload.jti!, names, role: names.uri.length ? 'client' : 'server', rootFingerprint: payload.sha,
    expiresAt: new Date(payload.exp! * 1000), subject: payload.sub!,
  };
}

/** Checks that a request asks for exactly names the token allows (a subset, non-empty). */
export function checkTokenNames(claims: TokenClaims, requested: SubjectAltNames): void {
  const allowed = new Set([...claims.names.dns.map((d) => d.toLowerCase()), ...claims.names.ip, ...claims.names.uri]);
  const asked = [...requested.dns.map((d) => d.toLowerCase()), ...requested.ip, ...requested.uri];
  const extra = asked.filter((n) => !allowed.has(n));
  if (asked.length === 0 || extra.length) {
    throw new MutualError('TOKEN_NAME_MISMATCH', { detail: extra.length ? `not in the token: ${extra.slice(0, 5).join(', ')}` : 'the request names nothing' });
  }
}
