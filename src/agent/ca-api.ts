/**
 * The agent's calls to `mutual serve`, always with the pinned root: enrollment with a one-time
 * token (a CSR for the names in agent.yaml), renewal over mTLS with the current certificate, and
 * the public CA certificates and CRLs. Built on the SDK's `call`.
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { generateKeyPair, type KeyType } from '../core/algorithms.ts';
import { buildCsr } from '../core/csr.ts';
import { ERRORS, MutualError, type ErrorCode } from '../core/errors.ts';
import { readCertificateDers, readPemOrDer, toPem } from '../core/pem.ts';
import type { SubjectAltNames } from '../core/names.ts';
import { call, readTokenClaims, type IssuedCertificate } from '../sdk/ca-client.ts';
import { parseCertificate } from '../core/certificate.ts';
import { OID } from '../core/oids.ts';
import { keyIdOf, type CrlSlot } from './trust-cache.ts';

/** Turns a non-2xx answer into the MutualError it names (problem+json `code`), else CA_UNAVAILABLE. */
function refusal(r: { status: number; json?: unknown }, what: string): MutualError {
  const p = r.json as { code?: string; detail?: string } | undefined;
  const known = p?.code !== undefined && Object.hasOwn(ERRORS, p.code);
  const code: ErrorCode = known ? (p!.code as ErrorCode) : r.status === 401 ? 'AUTH_REQUIRED' : 'CA_UNAVAILABLE';
  return new MutualError(code, { detail: `${what}: ${p?.detail ?? `HTTP ${r.status}`}` });
}

/** Runs a parse of something the CA sent; a failure is CA_UNTRUSTED (what it sent is not what a CA sends). */
function untrustedParse<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new MutualError('CA_UNTRUSTED', { detail: `${what}: the CA sent something that is not a certificate (${(e as Error).message})` });
  }
}

/** SHA-256 of a certificate's DER, lowercase hex. */
export function fingerprintOf(pem: string): string {
  return crypto.createHash('sha256').update(readPemOrDer(pem, ['CERTIFICATE'])).digest('hex');
}

/** Fetches /roots.pem without trusting the server yet, and accepts it only if it has the pinned fingerprint. */
export async function fetchPinnedRoot(caUrl: string, fingerprint: string): Promise<string> {
  const r = await call(`${caUrl}/roots.pem`, { tls: { insecure: true }, raw: true });
  if (r.status !== 200) throw refusal(r, 'GET /roots.pem');
  const pem = r.body.toString('utf8');
  const got = untrustedParse('/roots.pem', () => fingerprintOf(pem));
  if (got !== fingerprint) throw new MutualError('CA_UNTRUSTED', { detail: `the CA's root is ${got.slice(0, 16)}..; agent.yaml pins ${fingerprint.slice(0, 16)}..` });
  return pem;
}

/** The CA's 201 answer, checked for shape. */
function issuedFrom(r: { json?: unknown }, what: string): IssuedCertificate {
  const j = r.json as Partial<IssuedCertificate> | undefined;
  if (!j || typeof j.certificate !== 'string' || typeof j.chain !== 'string' || typeof j.fullchain !== 'string' || typeof j.serial !== 'string') {
    throw new MutualError('CA_UNTRUSTED', { detail: `${what}: the CA's answer has no certificate, chain and fullchain` });
  }
  return j as IssuedCertificate;
}

/** What enrollment and renewal return: the CA's answer and the key it certifies (when made here). */
export interface Obtained extends IssuedCertificate {
  key?: KeyObject;
}

/** Enrolls with a one-time token: a new key and a CSR for `names` (the CA checks them against the token). */
export async function enrollWithToken(o: { caUrl: string; root: string; token: string; names: SubjectAltNames; keyType: KeyType }): Promise<Obtained & { key: KeyObject }> {
  const claims = readTokenClaims(o.token.trim());
  if (claims.rootFingerprint.toLowerCase() !== fingerprintOf(o.root)) {
    throw new MutualError('CA_UNTRUSTED', { detail: 'the token was made by a CA with another root than the one agent.yaml pins' });
  }
  const { privateKey } = generateKeyPair(o.keyType);
  const cn = o.names.uri[0]?.split('/').pop() ?? o.names.dns[0] ?? o.names.ip[0] ?? 'agent';
  const csr = toPem(buildCsr({ privateKey, commonName: cn, names: o.names }), 'CERTIFICATE REQUEST');
  const r = await call(`${o.caUrl}/v1/enroll`, { body: { csr }, headers: { authorization: `Bearer ${o.token.trim()}` }, tls: { ca: o.root } });
  if (r.status !== 201) throw refusal(r, 'enrollment');
  return { ...issuedFrom(r, 'enrollment'), key: privateKey };
}

/** Renews over mTLS with the current certificate and key; with `newKeyType`, for a new key. */
export async function renewWithCertificate(o: { caUrl: string; root: string; certificate: string; key: string; newKeyType?: KeyType }): Promise<Obtained> {
  let key: KeyObject | undefined;
  let body: unknown = {};
  if (o.newKeyType) {
    key = generateKeyPair(o.newKeyType).privateKey;
    body = { csr: toPem(buildCsr({ privateKey: key, commonName: 'renewal' }), 'CERTIFICATE REQUEST') };
  }
  const r = await call(`${o.caUrl}/v1/renew`, { body, tls: { ca: o.root, cert: o.certificate, key: o.key } });
  if (r.status !== 201) throw refusal(r, 'renewal');
  return { ...issuedFrom(r, 'renewal'), key };
}

/** An intermediate replaced by a key rotation that the CA still lists while it is valid. */
export interface RetiredIntermediate {
  role: 'server' | 'client';
  pem: string;
  /** Its subject key identifier, hex: what the certificates it issued carry as AKI. */
  keyId: string;
}

/**
 * The CA certificates: the root (checked against the pin), the two current intermediates and the
 * retired ones still valid (checked against the root).
 */
export interface CaCertificates {
  root: string;
  'server-ca': string;
  'client-ca': string;
  retired: RetiredIntermediate[];
}

/**
 * Most retired intermediates of one role taken from the CA: each key rotation retires one for at
 * most the intermediate's lifetime, so more than this is not a CA we know.
 */
export const MAX_RETIRED_PER_ROLE = 8;

/** Fetches the CA certificates over TLS pinned to `root`. */
export async function fetchCaCertificates(caUrl: string, root: string, now: Date = new Date()): Promise<CaCertificates> {
  const get = async (p: string, optional = false): Promise<string> => {
    const r = await call(`${caUrl}${p}`, { tls: { ca: root }, raw: true });
    // A CA from before key rotations were served lists no retired intermediates.
    if (optional && r.status === 404) return '';
    if (r.status !== 200) throw refusal(r, `GET ${p}`);
    return r.body.toString('utf8');
  };
  const [roots, server, client, serverAll, clientAll] = await Promise.all([
    get('/roots.pem'), get('/ca/server.pem'), get('/ca/client.pem'), get('/ca/server.all.pem', true), get('/ca/client.all.pem', true),
  ]);
  const rootCert = new crypto.X509Certificate(root);
  // The CA may list more than one root while it rolls over; ours must be among them.
  if (!untrustedParse('/roots.pem', () => readCertificateDers(roots, { maxBlocks: 16 })).some((der) => der.equals(rootCert.raw))) {
    throw new MutualError('CA_UNTRUSTED', { detail: 'the CA no longer lists the pinned root in /roots.pem' });
  }
  const current = { server: '', client: '' };
  for (const [name, role, pem] of [['server CA', 'server', server], ['client CA', 'client', client]] as const) {
    const c = untrustedParse(`the ${name} certificate`, () => new crypto.X509Certificate(pem));
    if (!c.ca || !c.verify(rootCert.publicKey)) throw new MutualError('CA_UNTRUSTED', { detail: `the ${name} certificate the CA serves is not signed by the pinned root` });
    current[role] = c.raw.toString('base64');
  }
  const retired: RetiredIntermediate[] = [];
  for (const [role, text] of [['server', serverAll], ['client', clientAll]] as const) {
    const what = `/ca/${role}.all.pem`;
    // An empty answer (or a 404 from a CA that predates rotation) lists none.
    const ders = text.trim() === '' ? [] : untrustedParse(what, () => readCertificateDers(text, { maxBlocks: MAX_RETIRED_PER_ROLE + 1 }));
    const seen = new Set([current[role]]);
    for (const der of ders) {
      const c = untrustedParse(what, () => new crypto.X509Certificate(der));
      if (seen.has(c.raw.toString('base64'))) continue;
      seen.add(c.raw.toString('base64'));
      if (!c.ca || !c.verify(rootCert.publicKey)) throw new MutualError('CA_UNTRUSTED', { detail: `${what} lists a certificate that is not a CA signed by the pinned root (${c.subject})` });
      const info = untrustedParse(what, () => parseCertificate(c.raw));
      // A server CA among the client CAs would let a relying party accept what it issued as clients.
      if (!info.eku.includes(role === 'server' ? OID.serverAuth : OID.clientAuth)) throw new MutualError('CA_UNTRUSTED', { detail: `${what} lists a CA that does not issue ${role} certificates (${c.subject})` });
      // Expired: nothing it issued is valid any more (the CA stops listing it too).
      if (c.validToDate.getTime() <= now.getTime()) continue;
      retired.push({ role, pem: toPem(c.raw, 'CERTIFICATE'), keyId: keyIdOf(info) });
    }
  }
  return { root: toPem(rootCert.raw, 'CERTIFICATE'), 'server-ca': server, 'client-ca': client, retired };
}

/**
 * Fetches one CRL (DER): an issuer's current one, or a retired intermediate's by its key name
 * (`client.<16 hex digits of its key id>`). Its signature and freshness are checked by the caller.
 */
export async function fetchCrl(caUrl: string, root: string, issuer: CrlSlot): Promise<Buffer> {
  if (!/^(root|server|client|(server|client)\.[0-9a-f]{16})$/.test(issuer)) throw new MutualError('CA_ANSWER_INVALID', { detail: `${JSON.stringify(issuer.slice(0, 60))} does not name a CRL (root, server, client, or server|client.<16 hex digits>)` });
  const r = await call(`${caUrl}/crl/${issuer}.crl`, { tls: { ca: root }, raw: true });
  if (r.status !== 200) throw refusal(r, `GET /crl/${issuer}.crl`);
  return r.body;
}
