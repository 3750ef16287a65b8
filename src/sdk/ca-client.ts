/**
 * A client of `mutual serve`: enrollment with a one-time token (pinning the root named in the
 * token), renewal over mTLS with the current certificate, and the admin calls.
 */
import https from 'node:https';
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { generateKeyPair, type KeyType } from '../core/algorithms.ts';
import { buildCsr } from '../core/csr.ts';
import { MutualError, ERRORS, isMutualError, type ErrorCode } from '../core/errors.ts';
import { readPemOrDer, toPem } from '../core/pem.ts';
import type { SubjectAltNames } from '../core/names.ts';

/** Largest answer read from the CA. */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** Time allowed for one call. */
export const REQUEST_TIMEOUT_MS = 15_000;

/** TLS material for a call. */
export interface CallTls {
  /** Trusted root(s), PEM. */
  ca?: string;
  cert?: string;
  key?: string | KeyObject;
  /** Certificate and key as a PKCS#12 bundle, instead of `cert` and `key`. */
  pfx?: Buffer;
  /** The bundle's password. */
  passphrase?: string;
  /** Only for fetching the root before it is pinned. */
  insecure?: boolean;
}

/** A certificate the CA returned. */
export interface IssuedCertificate {
  serial: string;
  notAfter: string;
  certificate: string;
  chain: string;
  fullchain: string;
  identity?: string;
}

/** Makes one HTTPS call and returns status and body; CA_UNAVAILABLE when the CA cannot be reached. */
export function call(url: string, o: { method?: string; body?: unknown; headers?: Record<string, string>; tls?: CallTls; raw?: boolean }): Promise<{ status: number; body: Buffer; json?: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body));
    const req = https.request(url, {
      method: o.method ?? (payload ? 'POST' : 'GET'),
      headers: { ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}), ...o.headers },
      ca: o.tls?.ca, cert: o.tls?.cert, key: o.tls?.key as string | undefined, pfx: o.tls?.pfx, passphrase: o.tls?.passphrase, rejectUnauthorized: !o.tls?.insecure, agent: false, timeout: REQUEST_TIMEOUT_MS,
      minVersion: 'TLSv1.2',
    }, (res) => {
      const parts: Buffer[] = [];
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n > MAX_RESPONSE_BYTES) req.destroy(new MutualError('CA_ANSWER_INVALID', { detail: `${url}: answer larger than ${MAX_RESPONSE_BYTES} bytes` }));
        else parts.push(c);
      });
      res.on('end', () => {
        const body = Buffer.concat(parts);
        let json: unknown;
        if (!o.raw && /json/.test(String(res.headers['content-type']))) {
          try {
            json = JSON.parse(body.toString('utf8'));
          } catch {
            json = undefined;
          }
        }
        resolve({ status: res.statusCode ?? 0, body, json });
      });
    });
    req.on('timeout', () => req.destroy(new MutualError('CA_UNAVAILABLE', { detail: `${url}: no answer within ${REQUEST_TIMEOUT_MS} ms` })));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (isMutualError(e)) reject(e);
      else if (/self.signed|unable to (get|verify)|certificate/i.test(e.message) && !/ECONNREFUSED/.test(e.message)) {
        reject(new MutualError('CA_UNTRUSTED', { detail: e.message }));
      } else reject(new MutualError('CA_UNAVAILABLE', { detail: `${url}: ${e.message}` }));
    });
    req.end(payload);
  });
}

/** Turns a problem+json answer into the MutualError it names. */
function fail(r: { status: number; json?: unknown }): never {
  const p = r.json as { code?: string; detail?: string } | undefined;
  const code = p?.code && Object.hasOwn(ERRORS, p.code) ? (p.code as ErrorCode) : r.status === 401 ? 'AUTH_REQUIRED' : 'CA_UNAVAILABLE';
  throw new MutualError(code, { detail: p?.detail ?? `HTTP ${r.status}` });
}

/** The claims of a token, read without verifying it (the CA verifies; the client needs the names and root pin). */
export function readTokenClaims(token: string): { names: SubjectAltNames; rootFingerprint: string } {
  const part = token.split('.')[1];
  try {
    const p = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as { sans: SubjectAltNames; sha: string };
    if (!p.sans || typeof p.sha !== 'string') throw new MutualError('TOKEN_INVALID', { detail: 'the token cannot be read; copy it whole' });
    return { names: { dns: p.sans.dns ?? [], ip: p.sans.ip ?? [], uri: p.sans.uri ?? [] }, rootFingerprint: p.sha };
  } catch {
    throw new MutualError('TOKEN_INVALID', { detail: 'the token cannot be read; copy it whole' });
  }
}

/** Fetches the CA's root and checks it against a pinned SHA-256 fingerprint. */
export async function fetchPinnedRoot(caUrl: string, fingerprint: string): Promise<string> {
  const r = await call(`${caUrl.replace(/\/+$/, '')}/roots.pem`, { tls: { insecure: true }, raw: true });
  if (r.status !== 200) fail(r);
  const pem = r.body.toString('utf8');
  const der = readPemOrDer(pem, ['CERTIFICATE']);
  const got = crypto.createHash('sha256').update(der).digest('hex');
  if (got !== fingerprint.toLowerCase().replace(/:/g, '')) throw new MutualError('CA_UNTRUSTED', { detail: `root ${got.slice(0, 16)}.. is not the pinned ${fingerprint.slice(0, 16)}..` });
  return pem;
}

/**
 * Enrolls with a one-time token: makes a key and a CSR for the token's names. The certificate's
 * lifetime is the one the admin set in the token (or the profile's default): the holder has no say.
 */
export async function enroll(o: { caUrl: string; token: string; keyType?: KeyType; root?: string }): Promise<IssuedCertificate & { key: KeyObject; root: string }> {
  const claims = readTokenClaims(o.token);
  const root = o.root ?? (await fetchPinnedRoot(o.caUrl, claims.rootFingerprint));
  const { privateKey } = generateKeyPair(o.keyType ?? 'p256');
  const cn = claims.names.uri[0]?.split('/').pop() ?? claims.names.dns[0] ?? claims.names.ip[0] ?? 'enrolled';
  const csr = toPem(buildCsr({ privateKey, commonName: cn, names: claims.names }), 'CERTIFICATE REQUEST');
  const r = await call(`${o.caUrl.replace(/\/+$/, '')}/v1/enroll`, { body: { csr }, headers: { authorization: `Bearer ${o.token}` }, tls: { ca: root } });
  if (r.status !== 201) fail(r);
  return { ...(r.json as IssuedCertificate), key: privateKey, root };
}

/** Renews over mTLS with the current certificate; with `newKey`, a new key and CSR. */
export async function renew(o: { caUrl: string; certificate: string; key: string | KeyObject; root: string; newKey?: boolean; keyType?: KeyType }): Promise<IssuedCertificate & { key?: KeyObject }> {
  let key: KeyObject | undefined;
  let body: unknown = {};
  if (o.newKey) {
    key = generateKeyPair(o.keyType ?? 'p256').privateKey;
    body = { csr: toPem(buildCsr({ privateKey: key, commonName: 'renewal' }), 'CERTIFICATE REQUEST') };
  }
  const keyPem = typeof o.key === 'string' ? o.key : (o.key.export({ type: 'pkcs8', format: 'pem' }) as string);
  const r = await call(`${o.caUrl.replace(/\/+$/, '')}/v1/renew`, { body, tls: { ca: o.root, cert: o.certificate, key: keyPem } });
  if (r.status !== 201) fail(r);
  return { ...(r.json as IssuedCertificate), key };
}

/** An admin call (mTLS with an admin certificate: `cert` and `key` PEM, or a PKCS#12 `pfx` and its `passphrase`). */
export async function adminCall(o: { caUrl: string; path: string; method?: string; body?: unknown; cert?: string; key?: string; pfx?: Buffer; passphrase?: string; root: string }): Promise<unknown> {
  const r = await call(`${o.caUrl.replace(/\/+$/, '')}${o.path}`, { method: o.method, body: o.body, tls: { ca: o.root, cert: o.cert, key: o.key, pfx: o.pfx, passphrase: o.passphrase } });
  if (r.status >= 300) fail(r);
  return r.json;
}
