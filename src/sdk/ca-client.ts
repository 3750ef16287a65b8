/**
 * The project's one client of `mutual serve`: enrollment with a one-time token (pinning the root
 * named in the token), renewal over mTLS with the current certificate, the public CA
 * certificates and CRLs (what the agent keeps on disk), and the admin calls. Every call goes
 * through the one bounded fetcher ({@link createFetchBytes}), HTTPS only; every answer is checked
 * for shape before it is returned, and anything the CA sends that is not what a CA sends is
 * CA_UNTRUSTED.
 */
import crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { generateKeyPair, type KeyType } from '../core/algorithms.ts';
import { keyIdOf, parseCertificate } from '../core/certificate.ts';
import { buildCsr } from '../core/csr.ts';
import { MutualError, ERRORS, isMutualError, type ErrorCode } from '../core/errors.ts';
import { readCertificateDers, readPemOrDer, toPem } from '../core/pem.ts';
import type { SubjectAltNames } from '../core/names.ts';
import { OID } from '../core/oids.ts';
import { createFetchBytes } from './fetch-bytes.ts';

/** Largest answer read from the CA. */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** Time allowed for one call, the whole exchange. */
export const REQUEST_TIMEOUT_MS = 15_000;
/**
 * Most retired intermediates of one role taken from the CA: each key rotation retires one for at
 * most the intermediate's lifetime, so more than this is not a CA we know.
 */
export const MAX_RETIRED_PER_ROLE = 8;
/**
 * Most roots and most cross-certificates taken from /roots.json: a rollover has two roots and two
 * cross-certificates; more than this is not a CA we know.
 */
export const MAX_ROOTS = 8;

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

/** What {@link call} resolves with: the status, the body, and the body parsed when it is JSON. */
export interface CallResult {
  status: number;
  body: Buffer;
  json?: unknown;
}

const base = (caUrl: string): string => caUrl.replace(/\/+$/, '');

/**
 * Makes one HTTPS call to the CA and returns status and body (JSON parsed unless `raw`).
 * Rejects with CA_UNTRUSTED when the server's certificate does not verify against `tls.ca`,
 * CA_UNAVAILABLE when the CA cannot be reached, does not answer within
 * {@link REQUEST_TIMEOUT_MS}, answers more than {@link MAX_RESPONSE_BYTES}, or the URL is not https.
 */
export async function call(url: string, o: { method?: string; body?: unknown; headers?: Record<string, string>; tls?: CallTls; raw?: boolean }): Promise<CallResult> {
  const payload = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body));
  const fetchBytes = createFetchBytes({ ...o.tls, httpsOnly: true, timeoutMs: REQUEST_TIMEOUT_MS });
  let r;
  try {
    r = await fetchBytes(url, {
      method: (o.method ?? (payload ? 'POST' : 'GET')) as 'GET' | 'POST',
      body: payload, contentType: payload ? 'application/json' : undefined, headers: o.headers, maxBytes: MAX_RESPONSE_BYTES,
    });
  } catch (e) {
    // The CA answered, but more than any CA answer can be: not a reachability problem.
    if (isMutualError(e, 'FETCH_FAILED') && e.fields.reason === 'EFBIG') throw new MutualError('CA_ANSWER_INVALID', { detail: `${url}: answer larger than ${MAX_RESPONSE_BYTES} bytes` });
    if (isMutualError(e, 'FETCH_FAILED')) throw new MutualError('CA_UNAVAILABLE', { detail: `${url}: ${e.fields.detail ?? e.message}` });
    const message = (e as Error).message;
    if (/self.signed|unable to (get|verify)|certificate/i.test(message) && !/ECONNREFUSED/.test(message)) throw new MutualError('CA_UNTRUSTED', { detail: message });
    throw new MutualError('CA_UNAVAILABLE', { detail: `${url}: ${message}` });
  }
  let json: unknown;
  if (!o.raw && /json/.test(String(r.contentType))) {
    try {
      json = JSON.parse(r.body.toString('utf8'));
    } catch {
      json = undefined;
    }
  }
  return { status: r.status, body: r.body, json };
}

/** Turns a non-2xx answer into the MutualError it names (problem+json `code`), else AUTH_REQUIRED (401) or CA_UNAVAILABLE. */
function refusal(r: { status: number; json?: unknown }, what: string): MutualError {
  const p = r.json as { code?: string; detail?: string } | undefined;
  const code: ErrorCode = p?.code !== undefined && Object.hasOwn(ERRORS, p.code) ? (p.code as ErrorCode) : r.status === 401 ? 'AUTH_REQUIRED' : 'CA_UNAVAILABLE';
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

/** The CA's 201 answer to an enrollment or renewal, checked for shape. */
function issuedFrom(r: CallResult, what: string): IssuedCertificate {
  const j = r.json as Partial<IssuedCertificate> | undefined;
  if (!j || typeof j.certificate !== 'string' || typeof j.chain !== 'string' || typeof j.fullchain !== 'string' || typeof j.serial !== 'string') {
    throw new MutualError('CA_UNTRUSTED', { detail: `${what}: the CA's answer has no certificate, chain and fullchain` });
  }
  return j as IssuedCertificate;
}

/** SHA-256 of a certificate's DER (PEM or DER in), lowercase hex. */
export function fingerprintOf(pem: string): string {
  return crypto.createHash('sha256').update(readPemOrDer(pem, ['CERTIFICATE'])).digest('hex');
}

/** The claims of a token, read without verifying it (the CA verifies; the client needs the names and root pin). */
export function readTokenClaims(token: string): { names: SubjectAltNames; rootFingerprint: string } {
  // An empty token is a missing one (an empty --token-file, a token command that failed), not a
  // damaged one: "copy it whole" would send the user looking in the wrong place.
  if (typeof token !== 'string' || token.trim() === '') throw new MutualError('TOKEN_MISSING', { detail: 'the token is empty' });
  const part = token.trim().split('.')[1];
  try {
    const p = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as { sans: SubjectAltNames; sha: string };
    if (!p.sans || typeof p.sha !== 'string') throw new MutualError('TOKEN_INVALID', { detail: 'the token cannot be read; copy it whole' });
    return { names: { dns: p.sans.dns ?? [], ip: p.sans.ip ?? [], uri: p.sans.uri ?? [] }, rootFingerprint: p.sha };
  } catch {
    throw new MutualError('TOKEN_INVALID', { detail: 'the token cannot be read; copy it whole' });
  }
}

/**
 * Fetches /roots.pem without trusting the server yet, and accepts the root in it that has the
 * pinned SHA-256 fingerprint (hex, any case, colons allowed); during a root rollover the bundle
 * holds two roots and tokens name the current one. Resolves that root's PEM; CA_UNTRUSTED when
 * none matches.
 */
export async function fetchPinnedRoot(caUrl: string, fingerprint: string): Promise<string> {
  const r = await call(`${base(caUrl)}/roots.pem`, { tls: { insecure: true }, raw: true });
  if (r.status !== 200) throw refusal(r, 'GET /roots.pem');
  const ders = untrustedParse('/roots.pem', () => readCertificateDers(r.body.toString('utf8'), { maxBlocks: MAX_ROOTS }));
  const pin = fingerprint.toLowerCase().replace(/:/g, '');
  const hash = (d: Buffer) => crypto.createHash('sha256').update(d).digest('hex');
  const match = ders.find((d) => hash(d) === pin);
  if (!match) throw new MutualError('CA_UNTRUSTED', { detail: `the CA's root is ${ders.map((d) => `${hash(d).slice(0, 16)}..`).join(', ') || 'missing'}; the pinned root is ${pin.slice(0, 16)}..` });
  return toPem(match, 'CERTIFICATE');
}

/**
 * Enrolls with a one-time token: makes a key (`keyType`, default p256) and a CSR for `names`
 * (default the token's; the CA checks them against the token). Without `root`, the root is
 * fetched and pinned by the fingerprint the token names. The certificate's lifetime is the one
 * the admin set in the token (or the profile's default): the holder has no say.
 */
export async function enroll(o: { caUrl: string; token: string; keyType?: KeyType; root?: string; names?: SubjectAltNames }): Promise<IssuedCertificate & { key: KeyObject; root: string }> {
  const token = o.token.trim();
  const claims = readTokenClaims(token);
  const root = o.root ?? (await fetchPinnedRoot(o.caUrl, claims.rootFingerprint));
  const names = o.names ?? claims.names;
  const { privateKey } = generateKeyPair(o.keyType ?? 'p256');
  const cn = names.uri[0]?.split('/').pop() ?? names.dns[0] ?? names.ip[0] ?? 'enrolled';
  const csr = toPem(buildCsr({ privateKey, commonName: cn, names }), 'CERTIFICATE REQUEST');
  const r = await call(`${base(o.caUrl)}/v1/enroll`, { body: { csr }, headers: { authorization: `Bearer ${token}` }, tls: { ca: root } });
  if (r.status !== 201) throw refusal(r, 'enrollment');
  return { ...issuedFrom(r, 'enrollment'), key: privateKey, root };
}

/** Renews over mTLS with the current certificate; with `newKey`, a new key (`keyType`, default p256) and CSR. */
export async function renew(o: { caUrl: string; certificate: string; key: string | KeyObject; root: string; newKey?: boolean; keyType?: KeyType }): Promise<IssuedCertificate & { key?: KeyObject }> {
  let key: KeyObject | undefined;
  let body: unknown = {};
  if (o.newKey) {
    key = generateKeyPair(o.keyType ?? 'p256').privateKey;
    body = { csr: toPem(buildCsr({ privateKey: key, commonName: 'renewal' }), 'CERTIFICATE REQUEST') };
  }
  const keyPem = typeof o.key === 'string' ? o.key : (o.key.export({ type: 'pkcs8', format: 'pem' }) as string);
  const r = await call(`${base(o.caUrl)}/v1/renew`, { body, tls: { ca: o.root, cert: o.certificate, key: keyPem } });
  if (r.status !== 201) throw refusal(r, 'renewal');
  return { ...issuedFrom(r, 'renewal'), key };
}

/** An admin call (mTLS with an admin certificate: `cert` and `key` PEM, or a PKCS#12 `pfx` and its `passphrase`). */
export async function adminCall(o: { caUrl: string; path: string; method?: string; body?: unknown; cert?: string; key?: string; pfx?: Buffer; passphrase?: string; root: string }): Promise<unknown> {
  const r = await call(`${base(o.caUrl)}${o.path}`, { method: o.method, body: o.body, tls: { ca: o.root, cert: o.cert, key: o.key, pfx: o.pfx, passphrase: o.passphrase } });
  if (r.status >= 300) throw refusal(r, `${o.method ?? (o.body === undefined ? 'GET' : 'POST')} ${o.path}`);
  return r.json;
}

/** An intermediate replaced by a key rotation that the CA still lists while it is valid. */
export interface RetiredIntermediate {
  role: 'server' | 'client';
  pem: string;
  /** Its key id, hex ({@link keyIdOf}): what the certificates it issued carry as AKI. */
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
 * Fetches the CA certificates over TLS pinned to `root` (one root, or during a rollover the bundle
 * of every root trusted, the pinned one first): /roots.pem must still list one of them, each
 * intermediate must be a CA signed by one of them, and each retired one (/ca/<role>.all.pem, at
 * most {@link MAX_RETIRED_PER_ROLE}) a CA signed by one of them that issues that role; expired
 * retired ones (at `now`) are dropped. A CA from before key rotations (404 on the .all.pem lists)
 * lists none. `tlsCa` (default `root`) is what the TLS connection trusts: the roots trusted before
 * a rollover step too, while the CA's own certificate may still chain to one that just left; a
 * retired intermediate under such a root is dropped (nothing it issued verifies any more).
 */
export async function fetchCaCertificates(caUrl: string, root: string, now: Date = new Date(), tlsCa: string = root): Promise<CaCertificates> {
  const get = async (p: string, optional = false): Promise<string> => {
    const r = await call(`${base(caUrl)}${p}`, { tls: { ca: tlsCa }, raw: true });
    if (optional && r.status === 404) return '';
    if (r.status !== 200) throw refusal(r, `GET ${p}`);
    return r.body.toString('utf8');
  };
  const [roots, server, client, serverAll, clientAll] = await Promise.all([
    get('/roots.pem'), get('/ca/server.pem'), get('/ca/client.pem'), get('/ca/server.all.pem', true), get('/ca/client.all.pem', true),
  ]);
  const trusted = readCertificateDers(root, { maxBlocks: MAX_ROOTS }).map((d) => new crypto.X509Certificate(d));
  const rootCert = trusted[0];
  const signedByTrusted = (c: crypto.X509Certificate) => trusted.some((t) => c.checkIssued(t) && c.verify(t.publicKey));
  const former = tlsCa === root ? [] : readCertificateDers(tlsCa, { maxBlocks: 3 * MAX_ROOTS }).map((d) => new crypto.X509Certificate(d));
  const signedByFormer = (c: crypto.X509Certificate) => former.some((t) => c.checkIssued(t) && c.verify(t.publicKey));
  // The CA may list more than one root while it rolls over; one of ours must be among them.
  const listed = untrustedParse('/roots.pem', () => readCertificateDers(roots, { maxBlocks: 16 }));
  if (!listed.some((der) => trusted.some((t) => der.equals(t.raw)))) {
    throw new MutualError('CA_UNTRUSTED', { detail: 'the CA no longer lists the pinned root in /roots.pem' });
  }
  const current = { server: '', client: '' };
  for (const [name, role, pem] of [['server CA', 'server', server], ['client CA', 'client', client]] as const) {
    const c = untrustedParse(`the ${name} certificate`, () => new crypto.X509Certificate(pem));
    if (!c.ca || !signedByTrusted(c)) throw new MutualError('CA_UNTRUSTED', { detail: `the ${name} certificate the CA serves is not signed by the pinned root (or a root accepted from it)` });
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
      // Under a root that just left the bundle (a retired root): nothing it issued verifies any more.
      if (c.ca && !signedByTrusted(c) && signedByFormer(c)) continue;
      if (!c.ca || !signedByTrusted(c)) throw new MutualError('CA_UNTRUSTED', { detail: `${what} lists a certificate that is not a CA signed by the pinned root (${c.subject})` });
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

/** The CRL names the CA serves: an issuer's current one, or a retired intermediate's by its key (`client.<16 hex digits>`). */
export type CrlName = 'root' | 'server' | 'client' | `${'server' | 'client'}.${string}` | `root-${string}`;

/**
 * Fetches one CRL (DER) over TLS pinned to `root`. Its signature and freshness are the caller's
 * to check. A name that is not a {@link CrlName} is a TypeError (it is never sent).
 */
export async function fetchCrl(caUrl: string, root: string, name: CrlName): Promise<Buffer> {
  if (!/^(root|root-[0-9a-f]{16}|server|client|(server|client)\.[0-9a-f]{16})$/.test(name)) throw new TypeError(`not a CRL name: ${name}`);
  const r = await call(`${base(caUrl)}/crl/${name}.crl`, { tls: { ca: root }, raw: true });
  if (r.status !== 200) throw refusal(r, `GET /crl/${name}.crl`);
  return r.body;
}

/** A root the CA lists in /roots.json that the caller may trust. */
export interface ListedRoot {
  pem: string;
  /** SHA-256 of its DER, lowercase hex. */
  fingerprint: string;
  /** `retiring` while a rollover retires it (still trusted until it leaves the list). */
  status: 'active' | 'retiring';
  retireAt?: string;
}

/** What {@link fetchRoots} accepted. */
export interface AcceptedRoots {
  /** The fingerprint of the root new intermediates chain to, when the CA names one. */
  current?: string;
  roots: ListedRoot[];
  /** False when /roots.json was read without TLS to a trusted root: then no root was dropped. */
  authenticated: boolean;
}

interface RootsDocument {
  current?: unknown;
  roots?: { fingerprint?: unknown; pem?: unknown; status?: unknown; retireAt?: unknown }[];
  cross?: { pem?: unknown }[];
}

/**
 * Reads the CA's /roots.json (root rollover, issue 17) and keeps the roots a relying party that
 * trusts `trusted` (PEM bundle) may trust: those it trusts already, and a root it does not know
 * only when a cross-certificate for that root's subject and key, issued and signed by a root it
 * trusts, is valid at `now`. Read over TLS to the trusted roots; when the CA's TLS certificate does
 * not chain to them (it moved to the new root first), read without, and then only ADD roots (an
 * unauthenticated answer cannot drop one). Resolves undefined when the CA has no /roots.json (it
 * predates rollovers). Rejects CA_UNTRUSTED for a root no cross-certificate vouches for, a root
 * whose fingerprint is not its certificate's, or a list that keeps none of the trusted roots
 * and accepts none; nothing is accepted then.
 */
export async function fetchRoots(caUrl: string, trusted: string, now: Date = new Date()): Promise<AcceptedRoots | undefined> {
  const url = `${base(caUrl)}/roots.json`;
  let authenticated = true;
  let r: CallResult;
  try {
    r = await call(url, { tls: { ca: trusted } });
  } catch (e) {
    if (!isMutualError(e, 'CA_UNTRUSTED')) throw e;
    authenticated = false;
    r = await call(url, { tls: { insecure: true } });
  }
  if (r.status === 404) return undefined;
  if (r.status !== 200) throw refusal(r, 'GET /roots.json');
  // Read whatever the content type says (a proxy in between may drop it); checked for shape below.
  let doc: RootsDocument | undefined;
  try {
    doc = JSON.parse(r.body.toString('utf8')) as RootsDocument;
  } catch {
    doc = undefined;
  }
  if (!doc || !Array.isArray(doc.roots) || doc.roots.length === 0 || doc.roots.length > MAX_ROOTS || (doc.cross !== undefined && (!Array.isArray(doc.cross) || doc.cross.length > MAX_ROOTS))) {
    throw new MutualError('CA_UNTRUSTED', { detail: `/roots.json is not a list of at most ${MAX_ROOTS} roots and cross-certificates` });
  }
  const anchors = readCertificateDers(trusted, { maxBlocks: MAX_ROOTS }).map((d) => new crypto.X509Certificate(d));
  const fp = (x: crypto.X509Certificate) => crypto.createHash('sha256').update(x.raw).digest('hex');
  const known = new Map(anchors.map((a) => [fp(a), a]));
  const crosses = (doc.cross ?? []).map((c) => untrustedParse('/roots.json cross', () => new crypto.X509Certificate(String(c.pem))));
  const t = now.getTime();
  const vouched = (x: crypto.X509Certificate) => crosses.some((c) => c.ca && c.subject === x.subject && c.publicKey.equals(x.publicKey)
    && c.validFromDate.getTime() <= t && t < c.validToDate.getTime()
    && anchors.some((a) => c.checkIssued(a) && c.verify(a.publicKey)));
  const roots: ListedRoot[] = [];
  for (const e of doc.roots) {
    const x = untrustedParse('/roots.json root', () => new crypto.X509Certificate(String(e.pem)));
    const f = fp(x);
    if (typeof e.fingerprint === 'string' && e.fingerprint.toLowerCase().replace(/:/g, '') !== f) {
      throw new MutualError('CA_UNTRUSTED', { detail: `/roots.json lists a root under fingerprint ${e.fingerprint.slice(0, 16)}.. that is ${f.slice(0, 16)}..` });
    }
    if (!known.has(f)) {
      if (!x.ca || !x.checkIssued(x) || !x.verify(x.publicKey)) throw new MutualError('CA_UNTRUSTED', { detail: `/roots.json lists ${f.slice(0, 16)}.. ("${x.subject}"), which is not a self-signed root` });
      if (!vouched(x)) {
        throw new MutualError('CA_UNTRUSTED', { detail: `/roots.json lists a new root ${f.slice(0, 16)}.. ("${x.subject}") without a valid cross-certificate from a root trusted here; it is not accepted` });
      }
    }
    const retiring = e.status === 'retiring';
    roots.push({ pem: toPem(x.raw, 'CERTIFICATE'), fingerprint: f, status: retiring ? 'retiring' : 'active', ...(retiring && typeof e.retireAt === 'string' ? { retireAt: e.retireAt } : {}) });
  }
  if (!authenticated) {
    // Read in the clear: a root it no longer lists stays (a man in the middle must not make us drop one).
    for (const [f, a] of known) if (!roots.some((x) => x.fingerprint === f)) roots.push({ pem: toPem(a.raw, 'CERTIFICATE'), fingerprint: f, status: 'active' });
  }
  const current = typeof doc.current === 'string' && roots.some((x) => x.fingerprint === doc.current) ? doc.current : undefined;
  return { ...(current ? { current } : {}), roots, authenticated };
}
