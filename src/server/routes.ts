/**
 * The routes of `mutual serve`, as a table: each handler authenticates, parses the request, asks
 * the authority or one of its services (src/ca/), and answers. No lifecycle policy lives here:
 * renewal windows and lineage are the authority's, revocation propagation the revocation feed's,
 * CRL scheduling the CRL schedule's, tokens the enrollment service's.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  type AcmeService, type CertificateAuthority, type IssueResult, type LeafRole, type CrlSchedule, type Enrollment, type KeyHealth, type RevocationFeed, MAX_TOKEN_TTL_SECONDS, crossCertificate, rootsDocument, trustBundleText,
} from '../ca/index.ts';
import type { StoredCertificate } from '../ca/store.ts';
import type { CertificateInfo } from '../core/certificate.ts';
import { parseCsr } from '../core/csr.ts';
import { parseRevocationReason } from '../core/crl.ts';
import { MutualError } from '../core/errors.ts';
import { readCertificateDers, readPemOrDer, toPem } from '../core/pem.ts';
import { acmeRoute } from './acme/acme-routes.ts';
import type { AcmeProblemContext } from './acme/problems.ts';
import type { AdminAuthenticator, AdminStatus } from './admin-auth.ts';
import { readJson, sendJson, type RateLimiter } from './http-util.ts';
import type { CaMetrics } from './metrics.ts';
import type { OcspService } from './ocsp-service.ts';
import { parseRequestTarget } from './request-target.ts';
import { splitNames } from '../core/names.ts';

/** How long without a store answer before /ready says 503, in revocation polls. */
const READY_STALE_POLLS = 5;
/** Most certificates one GET /v1/certificates lists. */
const MAX_LIST_LIMIT = 10_000;
/** Most names one token may carry. */
const MAX_TOKEN_NAMES = 100;
/** Default lifetime of a token, seconds. */
const DEFAULT_TOKEN_TTL_SECONDS = 600;

/** What the routes answer with; `crls` and `ocsp` are replaced by a reload. */
export interface ServerState {
  ca: CertificateAuthority;
  now: () => Date;
  metrics: CaMetrics;
  feed: RevocationFeed;
  crls: CrlSchedule;
  ocsp: OcspService;
  enrollment: Enrollment;
  /** Whether the keys can sign (a token's may be away), for readiness. */
  keyHealth: KeyHealth;
  adminAuth: AdminAuthenticator;
  limiter?: RateLimiter;
  /** Renewal of certificates expired less than this long ago. */
  graceSeconds: number;
  /** The revocation poll interval (for readiness). */
  pollMs: number;
  /**
   * The HTTPS base URL ACME's absolute URLs start with (`https://ca.example:8443`, RFC 8555 section
   * 7.1); absent, each request's own (its Host), see acme-routes.ts.
   */
  acmeBaseUrl?: string;
  /** The ACME lifecycle, when `acme.enabled` in config.yaml; `/acme/` answers ACME_DISABLED without it. */
  acme?: AcmeService;
}

/** One request, as the routes see it. */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  id: string;
  peer?: CertificateInfo;
  /** True when OpenSSL verified the peer chain up to the client CA. */
  peerChainOk: boolean;
  /** True on the plain-HTTP listener, which serves only {@link isPublicPath} paths. */
  isPublic: boolean;
  /** The store's word on a presented admin certificate, read for this request before an API route runs. */
  adminStatus?: AdminStatus;
  /** Set for `/acme/` requests: refusals are answered as ACME problem documents (acme/problems.ts). */
  acme?: AcmeProblemContext;
}

type Handler = (s: ServerState, c: RequestContext, url: URL, match: RegExpExecArray | undefined) => Promise<void> | void;
interface Route {
  method: 'GET' | 'POST';
  path: string | RegExp;
  handler: Handler;
}

/** Routes outside /v1 (GET and HEAD): liveness, metrics and the public, signed data. */
const PUBLIC_ROUTES: Route[] = [
  { method: 'GET', path: '/health', handler: (_s, c) => sendJson(c.res, 200, { ok: true }) },
  { method: 'GET', path: '/ready', handler: ready },
  { method: 'GET', path: '/metrics', handler: metricsRoute },
  // The trust bundle and the rotation (read when asked for: `mutual root install/retire` write them).
  { method: 'GET', path: '/roots.pem', handler: (s, c) => sendText(c.res, trustBundleText(s.ca.layout), 'application/x-pem-file') },
  { method: 'GET', path: '/roots.json', handler: (s, c) => sendJson(c.res, 200, rootsDocument(s.ca.layout)) },
  { method: 'GET', path: /^\/ca\/cross\/([a-z0-9-]{1,64})\.pem$/, handler: cross },
  { method: 'GET', path: /^\/(ca|crl)\/(server|client)\.all\.pem$/, handler: allOfRole },
  // The intermediates by the names of their CRLs (a retired one's is needed to check its CRL) and of their keys.
  { method: 'GET', path: /^\/ca\/((?:server|client)(?:\.prev-[0-9a-f]{16}|\.[0-9a-f]{16})?)\.(pem|crt)$/, handler: intermediate },
  { method: 'GET', path: /^\/crl\/(root|root-[0-9a-f]{16}|server|client|(?:server|client)\.(?:prev-)?[0-9a-f]{16})\.(crl|pem)$/, handler: crlRoute },
];

/** The API: rate limited, and the admin status of the peer is read before any of these runs. */
const API_ROUTES: Route[] = [
  { method: 'POST', path: '/v1/sign', handler: sign },
  { method: 'POST', path: '/v1/enroll', handler: enroll },
  { method: 'POST', path: '/v1/renew', handler: renew },
  { method: 'POST', path: '/v1/revoke', handler: revoke },
  { method: 'GET', path: '/v1/certificates', handler: listCertificates },
  { method: 'GET', path: /^\/v1\/certificates\/([0-9a-fA-F]{1,64})$/, handler: getCertificate },
  { method: 'POST', path: '/v1/tokens', handler: tokens },
];

/** The ACME resources, as latency labels (`/acme/order`: every order). */
const ACME_LABELS = new Set(['directory', 'new-nonce', 'new-account', 'new-order', 'revoke-cert', 'key-change', 'renewal-info', 'acct', 'order', 'authz', 'chall', 'cert']);

/** The label of a request in the latency histogram (a bounded set). */
export function routeLabel(u: string | undefined): string {
  const p = (u ?? '/').split('?')[0];
  if (p.startsWith('/ocsp')) return '/ocsp';
  if (p.startsWith('/v1/certificates/')) return '/v1/certificates/:serial';
  if (p.startsWith('/acme/')) return ACME_LABELS.has(p.split('/')[2]) ? `/acme/${p.split('/')[2]}` : '/acme';
  if ([...PUBLIC_ROUTES, ...API_ROUTES].some((r) => r.path === p)) return p;
  return p.startsWith('/crl/') ? '/crl' : p.startsWith('/ca/') ? '/ca' : 'other';
}

function find(table: Route[], method: string, p: string): { route: Route; match?: RegExpExecArray } | undefined {
  for (const route of table) {
    if (route.method !== method) continue;
    if (route.path === p) return { route };
    const match = typeof route.path === 'string' ? null : route.path.exec(p);
    if (match) return { route, match };
  }
  return undefined;
}

/** Routes a request (not OCSP: see the request loop). */
export async function route(s: ServerState, c: RequestContext): Promise<void> {
  // Refused unless canonical, before any route decision: see request-target.ts.
  const target = parseRequestTarget(c.req.url ?? '/');
  const p = target.path;
  if (c.isPublic && !isPublicPath(p)) throw new MutualError('NOT_FOUND', { detail: 'the API is served over HTTPS only' });
  const url = new URL(`https://x${p}${target.query}`);
  const m = c.req.method ?? 'GET';
  const pub = m === 'GET' || m === 'HEAD' ? find(PUBLIC_ROUTES, 'GET', p) : undefined;
  if (pub) return pub.route.handler(s, c, url, pub.match);
  if (p.startsWith('/acme/')) {
    c.acme = {};
    if (s.limiter && !s.limiter.take(c.req.socket.remoteAddress ?? '?')) throw new MutualError('RATE_LIMITED');
    return acmeRoute(s, c, p, target.query);
  }
  if (p.startsWith('/v1/')) {
    if (s.limiter && !s.limiter.take(c.req.socket.remoteAddress ?? '?')) throw new MutualError('RATE_LIMITED');
    c.adminStatus = await s.adminAuth.readStatus(c.peer, c.peerChainOk);
    const api = find(API_ROUTES, m, p);
    if (api) return api.route.handler(s, c, url, api.match);
    if (API_ROUTES.some((r) => r.path === p)) throw new MutualError('METHOD_NOT_ALLOWED');
  }
  throw new MutualError('NOT_FOUND', { detail: p.slice(0, 100) });
}

/**
 * What the plain-HTTP listener serves besides OCSP: the public, signed data relying parties fetch
 * (CRLs, CA certificates, the roots) and liveness. Checked on the canonical path, so no spelling
 * of `/v1/...` or `/metrics` gets through.
 */
function isPublicPath(p: string): boolean {
  return p === '/health' || p === '/ready' || p === '/roots.pem' || p === '/roots.json' || p.startsWith('/crl/') || p.startsWith('/ca/');
}

/** A path a route's pattern matched that names nothing served (the match is the whole path). */
const notFound = (m: RegExpExecArray): MutualError => new MutualError('NOT_FOUND', { detail: m[0].slice(0, 100) });

// ---- public routes

async function ready(s: ServerState, c: RequestContext): Promise<void> {
  // Ready while the store answers (the revocation poll reaches it every second) and every key can
  // sign (asking a token's key is also what brings it back after the token returns).
  const keys = await s.keyHealth.check();
  const last = s.feed.lastContact;
  const stale = s.now().getTime() - last.getTime() > READY_STALE_POLLS * s.pollMs;
  const reasons = [...(stale ? ['the store has not answered'] : []), ...keys.unavailable.map((k) => `key ${k.name} unavailable${k.detail ? ` (${k.detail})` : ''}`)];
  const ok = reasons.length === 0;
  sendJson(c.res, ok ? 200 : 503, {
    ready: ok, lastStoreContact: last.toISOString(), ...(ok ? {} : { reason: reasons.join('; ') }),
    ...(keys.unavailable.length ? { unavailableKeys: keys.unavailable.map((k) => k.name) } : {}),
  });
}

async function metricsRoute(s: ServerState, c: RequestContext): Promise<void> {
  c.res.writeHead(200, { 'content-type': s.metrics.registry.contentType });
  c.res.end(await s.metrics.registry.metrics());
}

/**
 * Every valid intermediate of a role, current first, and their CRLs: what a relying party
 * (nginx's ssl_client_certificate and ssl_crl) needs to accept what an old key issued after a
 * key rotation.
 */
function allOfRole(s: ServerState, c: RequestContext, _url: URL, m: RegExpExecArray | undefined): void {
  // Only those under a root of the trust bundle: once a root is retired, the intermediates it
  // signed (still valid, still able to sign their CRLs) are no longer anything a relying party
  // should trust, and an agent refuses a list holding a CA that no trusted root signed.
  const roots = readCertificateDers(trustBundleText(s.ca.layout)).map((der) => new crypto.X509Certificate(der));
  const inters = s.crls.intermediatesOf(m![2] === 'server' ? 'server-ca' : 'client-ca')
    .filter((i) => roots.some((r) => new crypto.X509Certificate(i.info.der).verify(r.publicKey)));
  const pem = m![1] === 'ca' ? inters.map((i) => i.pem).join('') : inters.map((i) => s.crls.crl(s.ca.crlName(i))?.pem ?? '').join('');
  sendText(c.res, pem, 'application/x-pem-file');
}

function intermediate(s: ServerState, c: RequestContext, _url: URL, m: RegExpExecArray | undefined): void {
  const inter = s.crls.issuer(m![1]);
  if (!inter) throw notFound(m!);
  if (m![2] === 'pem') sendText(c.res, inter.pem, 'application/x-pem-file');
  else sendBytes(c.res, inter.info.der, 'application/pkix-cert');
}

function cross(s: ServerState, c: RequestContext, _url: URL, m: RegExpExecArray | undefined): void {
  const pem = crossCertificate(s.ca.layout, m![1]);
  if (!pem) throw notFound(m!);
  sendText(c.res, pem, 'application/x-pem-file');
}

function crlRoute(s: ServerState, c: RequestContext, _url: URL, m: RegExpExecArray | undefined): void {
  const isRoot = m![1].startsWith('root');
  const crl = isRoot ? undefined : s.crls.crl(m![1]);
  if (!isRoot && !crl) throw notFound(m!);
  // The root CRLs are renewed offline and copied into the state folder; they are read when asked for.
  const rootFile = m![1] === 'root' ? s.ca.layout.rootCrl : path.join(s.ca.layout.caDir, `${m![1]}.crl`);
  if (isRoot && !fs.existsSync(rootFile)) throw notFound(m!);
  const der = crl ? crl.der : readPemOrDer(fs.readFileSync(rootFile), ['X509 CRL']);
  if (m![2] === 'crl') sendBytes(c.res, der, 'application/pkix-crl', 'max-age=60');
  else sendText(c.res, toPem(der, 'X509 CRL'), 'application/x-pem-file');
}

// ---- API routes

const requireAdmin = (s: ServerState, c: RequestContext): string => s.adminAuth.require(c.peer, c.peerChainOk, c.adminStatus);

function issued(s: ServerState, c: RequestContext, r: IssueResult, status = 201): void {
  s.metrics.issued.inc({ role: r.identity ? 'client' : 'server' });
  sendJson(c.res, status, { serial: r.serial, notAfter: r.notAfter.toISOString(), certificate: r.certificatePem, chain: r.chainPem, fullchain: r.fullchainPem, identity: r.identity });
}

const countRevoked = (s: ServerState, fresh: unknown[]): void => {
  if (fresh.length > 0) s.metrics.revoked.inc(fresh.length);
};

const role = (v: unknown): LeafRole => {
  if (v !== 'server' && v !== 'client') throw new MutualError('POLICY_UNKNOWN_PROFILE', { detail: String(v).slice(0, 20) });
  return v;
};
const str = (v: unknown, what: string, max = 64 * 1024): string => {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw new MutualError('REQUEST_MALFORMED', { detail: `${what} must be a non-empty string` });
  return v;
};
const optDays = (v: unknown): number | undefined => {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new MutualError('REQUEST_MALFORMED', { detail: 'days must be a positive integer' });
  return v;
};

async function sign(s: ServerState, c: RequestContext): Promise<void> {
  const actor = requireAdmin(s, c);
  const b = await readJson(c.req);
  issued(s, c, await s.ca.issue({ role: role(b.profile), csr: str(b.csr, 'csr'), days: optDays(b.days), actor }));
}

/** /v1/enroll: the token is verified, the CSR parsed once here; the enrollment service decides. */
async function enroll(s: ServerState, c: RequestContext): Promise<void> {
  const auth = String(c.req.headers.authorization ?? '');
  // `Bearer` with nothing after it (HTTP trims the space) is an empty token: TOKEN_MISSING.
  const bearer = /^Bearer(?:\s+([^]*))?$/.exec(auth);
  if (!bearer) throw new MutualError('AUTH_REQUIRED', { detail: 'send Authorization: Bearer <token>' });
  const claims = await s.enrollment.verify((bearer[1] ?? '').trim());
  const b = await readJson(c.req);
  if (b.days !== undefined || b.ttlSeconds !== undefined) throw new MutualError('ENROLL_LIFETIME_FIXED', { detail: 'the request names a lifetime; the token sets it' });
  const csr = parseCsr(readPemOrDer(str(b.csr, 'csr'), ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']));
  // The lifetime is the admin's, carried by the token (or the profile's default).
  issued(s, c, await s.enrollment.enroll(claims, csr));
}

/** /v1/renew: authenticates (mTLS with the current certificate), parses, and asks the authority. */
async function renew(s: ServerState, c: RequestContext): Promise<void> {
  if (!c.peer) throw new MutualError('AUTH_REQUIRED', { detail: 'renewal needs mTLS with the current certificate' });
  // The feed answers before the store does for a revocation made on another replica.
  if (s.feed.has(c.peer.serial)) throw new MutualError('CERT_REVOKED', { serial: c.peer.serial, detail: c.peer.serial });
  const b = c.req.headers['content-length'] === '0' ? {} : await readJson(c.req).catch((e) => {
    if ((e as MutualError).code === 'REQUEST_MALFORMED' && !c.req.headers['content-type']) return {};
    throw e;
  });
  const csr = b.csr === undefined ? undefined : str(b.csr, 'csr');
  let r: IssueResult;
  try {
    // Possession of the key was proven by the TLS handshake; the authority checks the rest.
    r = await s.ca.renew({ certificate: c.peer.der, csr, graceSeconds: s.graceSeconds, now: s.now() });
  } catch (e) {
    if (e instanceof MutualError && e.code === 'RENEWAL_TOO_SOON') c.res.setHeader('retry-after', String(Math.max(1, Number(e.fields.retryAfter) || 1)));
    throw e;
  }
  s.metrics.renewals.inc();
  // Certificates the renewal superseded: answered as revoked here at once, by others on their next poll.
  const superseded = (r.superseded ?? []).map((x) => ({ issuerKeyId: x.issuerKeyId, serial: x.serial, revokedAt: x.revokedAt!, reason: 'superseded' as const }));
  countRevoked(s, s.feed.record(superseded));
  issued(s, c, r);
}

async function revoke(s: ServerState, c: RequestContext): Promise<void> {
  const b = await readJson(c.req);
  const serial = str(b.serial, 'serial', 64).toLowerCase();
  let actor: string;
  try {
    actor = requireAdmin(s, c);
  } catch (e) {
    // The holder of a certificate may revoke it, proving possession over mTLS, while it is
    // valid: a revocation covers the renewals made from it, and the holder of an expired or
    // superseded certificate (an old key, since rotated) must not reach the current ones.
    const own = c.peer && c.peer.serial === serial ? await s.ca.getCertificate(serial) : undefined;
    const holder = own && c.peer && own.der.equals(c.peer.der) && own.status === 'valid' && s.now() < own.notAfter;
    if (!holder) throw e;
    actor = `holder:${serial}`;
  }
  const reason = b.reason === undefined ? 'unspecified' : parseRevocationReason(str(b.reason, 'reason', 40));
  // The CRL is rebuilt by the revocation poller right after (coalescing a burst of revocations).
  const r = await s.ca.revoke({ serial, reason, actor, writeCrl: false });
  // The certificate and the renewals of it the revocation covered.
  const revoked = [r, ...r.covered].filter((x) => x.status === 'revoked').map((x) => ({ issuerKeyId: x.issuerKeyId, serial: x.serial, revokedAt: x.revokedAt!, reason: x.reason ?? 'unspecified' }));
  countRevoked(s, s.feed.record(revoked));
  sendJson(c.res, 200, { ...view(r), covered: r.covered.map((x) => x.serial) });
}

async function listCertificates(s: ServerState, c: RequestContext, url: URL): Promise<void> {
  requireAdmin(s, c);
  const q = url.searchParams;
  const limit = Math.min(Number(q.get('limit') ?? 100), MAX_LIST_LIMIT);
  const expiring = q.get('expiringDays');
  const rows = await s.ca.list({
    role: q.get('role') === 'server' || q.get('role') === 'client' ? (q.get('role') as LeafRole) : undefined,
    status: q.get('status') === 'valid' || q.get('status') === 'revoked' ? (q.get('status') as 'valid' | 'revoked') : undefined,
    identity: q.get('identity') ?? undefined,
    expiringBefore: expiring ? new Date(s.now().getTime() + Number(expiring) * 86_400_000) : undefined,
    notExpiredAt: q.get('all') ? undefined : s.now(),
    limit: Number.isFinite(limit) && limit > 0 ? limit : 100,
  });
  sendJson(c.res, 200, { items: rows.map(view) });
}

async function getCertificate(s: ServerState, c: RequestContext, _url: URL, m: RegExpExecArray | undefined): Promise<void> {
  requireAdmin(s, c);
  const r = await s.ca.getCertificate(m![1]);
  if (!r) throw new MutualError('CERT_NOT_FOUND', { detail: m![1] });
  sendJson(c.res, 200, { ...view(r), certificate: toPem(r.der, 'CERTIFICATE') });
}

async function tokens(s: ServerState, c: RequestContext): Promise<void> {
  const actor = requireAdmin(s, c);
  const b = await readJson(c.req);
  const names = b.names;
  if (!Array.isArray(names) || names.length === 0 || names.length > MAX_TOKEN_NAMES || !names.every((n) => typeof n === 'string' && n.length < 2048)) {
    throw new MutualError('REQUEST_MALFORMED', { detail: 'names must be a list of DNS names, IPs, or one spiffe:// identity' });
  }
  const ttl = b.ttlSeconds === undefined ? DEFAULT_TOKEN_TTL_SECONDS : b.ttlSeconds;
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) {
    throw new MutualError('REQUEST_MALFORMED', { detail: `ttlSeconds must be a whole number from 1 to ${MAX_TOKEN_TTL_SECONDS}` });
  }
  const certSeconds = b.certificateTtlSeconds;
  if (certSeconds !== undefined && (typeof certSeconds !== 'number' || !Number.isInteger(certSeconds))) {
    throw new MutualError('REQUEST_MALFORMED', { detail: 'certificateTtlSeconds must be a whole number of seconds' });
  }
  const t = await s.enrollment.mint({ names: splitNames(names as string[]), ttlSeconds: ttl, certificateTtlSeconds: certSeconds, actor });
  sendJson(c.res, 201, { token: t.token, expiresAt: t.expiresAt.toISOString(), ...(certSeconds !== undefined ? { certificateTtlSeconds: certSeconds } : {}) });
}

// ---- answers

function sendText(res: ServerResponse, text: string, type: string): void {
  res.writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendBytes(res: ServerResponse, der: Buffer, type: string, cache?: string): void {
  res.writeHead(200, { 'content-type': type, 'content-length': der.length, ...(cache ? { 'cache-control': cache } : {}) });
  res.end(der);
}

function view(r: StoredCertificate) {
  return {
    serial: r.serial, role: r.role, subject: r.subject, identity: r.identity, names: r.names, notBefore: r.notBefore.toISOString(), notAfter: r.notAfter.toISOString(),
    status: r.status, revokedAt: r.revokedAt?.toISOString(), reason: r.reason, renewedFrom: r.renewedFrom, issuedBy: r.issuedBy,
  };
}
