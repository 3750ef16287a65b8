/**
 * The ACME endpoints of `mutual serve` (RFC 8555 section 7, RFC 9773), under `/acme/` on the HTTPS
 * listener only. Each POST is authenticated by its JWS first (jws.ts), its payload parsed here, and
 * the lifecycle (`AcmeService`, src/ca/acme/) decides; this file answers with the RFC's objects
 * (acme-views.ts) and headers. Every answer carries Link rel="index" and a fresh Replay-Nonce,
 * both set before the handler runs so refusals carry them too (RFC 8555 section 6.5). Refusals
 * are problem documents (problems.ts, from the request loop).
 */
import type { AcmeAccount, AcmeIdentifier, AcmeService } from '../../ca/index.ts';
import { parseCertificate } from '../../core/certificate.ts';
import { MutualError } from '../../core/errors.ts';
import { sendJson } from '../http-util.ts';
import type { RequestContext, ServerState } from '../routes.ts';
import { accountView, acmeUrls, authorizationView, challengeView, directoryView, orderView, renewalInfoView, type AcmeUrls } from './acme-views.ts';
import { authenticate, parseFlattenedJws, verifyKeyChange, type AcmeRequest } from './jws.ts';
import { appendLink } from './problems.ts';

/** Retry-After on an order or challenge that is processing: how soon a client should poll again, seconds. */
export const PROCESSING_RETRY_AFTER_SECONDS = 2;
/** Most identifiers one newOrder takes (the CA's limit on names per certificate). */
export const MAX_ORDER_IDENTIFIERS = 100;
/** Most contact URLs one account has. */
const MAX_CONTACTS = 10;
/** Longest contact URL or identifier value (a DNS name is at most 253 characters). */
const MAX_VALUE_CHARS = 1024;
/** Orders per page of an account's orders list (RFC 8555 section 7.1.2.1, Link rel="next"). */
const ORDERS_PAGE_SIZE = 100;
/** Highest `?alt=N` read on a certificate URL (the CA has a handful of alternate chains at most). */
const MAX_ALTERNATE = 100;
/** Longest Host header a base URL is made of (a 253-character name, `:`, a port). */
const MAX_HOST_CHARS = 260;

const ID = '([A-Za-z0-9_-]{1,128})';
/** An RFC 9773 certificate id: base64url(AKI keyIdentifier) "." base64url(serial). */
const CERT_ID = '([A-Za-z0-9_-]{1,256}\\.[A-Za-z0-9_-]{1,256})';
const B64URL = /^[A-Za-z0-9_-]+$/;

/** One ACME request being answered: the service, its URLs and the request. */
interface Call {
  s: ServerState;
  acme: AcmeService;
  u: AcmeUrls;
  c: RequestContext;
  m: RegExpExecArray;
  query: URLSearchParams;
}
type PostHandler = (x: Call, a: AcmeRequest & { account: AcmeAccount }) => Promise<void>;
interface AcmeRoute {
  path: RegExp;
  /** GET (and HEAD) handler: the directory, new-nonce and renewal information only. */
  get?: (x: Call) => Promise<void> | void;
  /** POST: which key the JWS carries, and the handler. */
  post?: { key: 'jwk' | 'kid' | 'either'; handler: (x: Call, a: AcmeRequest) => Promise<void> };
}

const kid = (handler: PostHandler): AcmeRoute['post'] => ({ key: 'kid', handler: (x, a) => handler(x, a as AcmeRequest & { account: AcmeAccount }) });

const ROUTES: AcmeRoute[] = [
  { path: /^\/acme\/directory$/, get: directory },
  { path: /^\/acme\/new-nonce$/, get: newNonce },
  { path: new RegExp(`^/acme/renewal-info/${CERT_ID}$`), get: renewalInfo },
  { path: /^\/acme\/new-account$/, post: { key: 'jwk', handler: newAccount } },
  { path: /^\/acme\/new-order$/, post: kid(newOrder) },
  { path: /^\/acme\/revoke-cert$/, post: { key: 'either', handler: revokeCert } },
  { path: /^\/acme\/key-change$/, post: kid(keyChange) },
  { path: new RegExp(`^/acme/acct/${ID}$`), post: kid(account) },
  { path: new RegExp(`^/acme/acct/${ID}/orders$`), post: kid(orders) },
  { path: new RegExp(`^/acme/order/${ID}$`), post: kid(order) },
  { path: new RegExp(`^/acme/order/${ID}/finalize$`), post: kid(finalize) },
  { path: new RegExp(`^/acme/authz/${ID}$`), post: kid(authorization) },
  { path: new RegExp(`^/acme/chall/${ID}/${ID}$`), post: kid(challenge) },
  { path: new RegExp(`^/acme/cert/${ID}$`), post: kid(certificate) },
];

/**
 * Answers a request under `/acme/` (the path canonical, checked by the caller). ACME_DISABLED when
 * the server has no ACME service; METHOD_NOT_ALLOWED for a GET on a POST-as-GET resource (RFC 8555
 * section 6.3) or a POST on a GET one.
 */
export async function acmeRoute(s: ServerState, c: RequestContext, path: string, query: string): Promise<void> {
  const acme = s.acme;
  if (!acme) throw new MutualError('ACME_DISABLED');
  const base = s.acmeBaseUrl ?? requestBase(c);
  const u = acmeUrls(base);
  c.acme = { accountUrl: u.account, termsOfService: acme.meta().termsOfService };
  c.res.setHeader('link', `<${u.directory}>;rel="index"`);
  let found: { r: AcmeRoute; m: RegExpExecArray } | undefined;
  for (const r of ROUTES) {
    const m = r.path.exec(path);
    if (m) {
      found = { r, m };
      break;
    }
  }
  if (!found) throw new MutualError('ACME_NOT_FOUND', { detail: path.slice(0, 100) });
  const method = c.req.method ?? 'GET';
  const x: Call = { s, acme, u, c, m: found.m, query: new URLSearchParams(query) };
  // Every answer, a refusal included, carries a fresh nonce to go on with (RFC 8555 section 6.5);
  // making one is an HMAC, no store write.
  c.res.setHeader('replay-nonce', await acme.newNonce());
  if ((method === 'GET' || method === 'HEAD') && found.r.get) return found.r.get(x);
  if (method === 'POST' && found.r.post) {
    const a = await authenticate(acme, c.req, { url: `${base.replace(/\/+$/, '')}${path}${query}`, accountUrlPrefix: u.accountPrefix, key: found.r.post.key });
    return found.r.post.handler(x, a);
  }
  throw new MutualError('METHOD_NOT_ALLOWED', found.r.post
    ? { detail: 'this ACME resource is read with POST-as-GET (RFC 8555 section 6.3)', allow: 'POST' }
    : { detail: `${method.slice(0, 10)} on ${path.slice(0, 60)}`, allow: 'GET, HEAD' });
}

/** A Host header: a DNS name or an IPv4 address, or a bracketed IPv6 address, and an optional port. */
const HOST = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]{2,45}\])(?::\d{1,5})?$/;

/**
 * The base URL of a request when the server has no configured one: `https://` and its Host. The
 * URLs a client gets then point where it connected, and "the URL requested" of RFC 8555 section
 * 6.4 is the one it used. A missing or malformed Host is ACME_MALFORMED.
 */
function requestBase(c: RequestContext): string {
  const host = String(c.req.headers.host ?? '').toLowerCase();
  if (host.length > MAX_HOST_CHARS || !HOST.test(host)) throw new MutualError('ACME_MALFORMED', { detail: 'the request has no valid Host header' });
  return `https://${host}`;
}

// ---- GET resources

function directory(x: Call): void {
  sendJson(x.c.res, 200, directoryView(x.u, x.acme.meta()));
}

/** RFC 8555 section 7.2: HEAD answers 200, GET 204, with the Replay-Nonce every answer has; never cached. */
function newNonce(x: Call): void {
  x.c.res.writeHead(x.c.req.method === 'HEAD' ? 200 : 204, { 'cache-control': 'no-store' });
  x.c.res.end();
}

/** RFC 9773 section 4.2: the window, and Retry-After for the next poll. */
async function renewalInfo(x: Call): Promise<void> {
  const r = await x.acme.renewalInfo(x.m[1]);
  x.c.res.setHeader('retry-after', String(Math.max(1, Math.round(r.retryAfterSeconds))));
  sendJson(x.c.res, 200, renewalInfoView(r));
}

// ---- accounts

/** RFC 8555 section 7.3: 201 with Location for a new account, 200 for the key's existing one. */
async function newAccount(x: Call, a: AcmeRequest): Promise<void> {
  const p = objectPayload(a);
  const contact = contacts(p.contact);
  const agreed = optional(p.termsOfServiceAgreed, 'boolean', 'termsOfServiceAgreed') ?? false;
  const onlyExisting = optional(p.onlyReturnExisting, 'boolean', 'onlyReturnExisting') ?? false;
  const eab = p.externalAccountBinding === undefined ? undefined : parseFlattenedJws(p.externalAccountBinding);
  let account: AcmeAccount | undefined;
  let created = false;
  if (onlyExisting) {
    account = await x.acme.accountByKey(a.thumbprint!);
    if (!account) throw new MutualError('ACME_ACCOUNT_DOES_NOT_EXIST', { detail: 'onlyReturnExisting, and no account has this key' });
  } else {
    ({ account, created } = await x.acme.newAccount({ jwk: a.jwk!, thumbprint: a.thumbprint!, contact: contact ?? [], termsOfServiceAgreed: agreed, eab, accountUrl: x.u.newAccount }));
  }
  if (account.status === 'deactivated') throw new MutualError('ACME_ACCOUNT_DEACTIVATED');
  if (account.status !== 'valid') throw new MutualError('ACME_UNAUTHORIZED', { detail: `the account is ${account.status}` });
  x.c.res.setHeader('location', x.u.account(account.id));
  sendJson(x.c.res, created ? 201 : 200, accountView(x.u, account));
}

/** RFC 8555 sections 7.3.2 and 7.3.6: read (POST-as-GET), update contact, or deactivate. */
async function account(x: Call, a: AcmeRequest & { account: AcmeAccount }): Promise<void> {
  ownAccount(x, a);
  let acct = a.account;
  if (a.payload) {
    const status = a.payload.status;
    if (status !== undefined && status !== 'deactivated') throw malformed('an account update may set status to "deactivated" only');
    const contact = contacts(a.payload.contact);
    if (status !== undefined || contact !== undefined) acct = await x.acme.updateAccount(acct.id, { ...(contact ? { contact } : {}), ...(status ? { status } : {}) });
  }
  x.c.res.setHeader('location', x.u.account(acct.id));
  sendJson(x.c.res, 200, accountView(x.u, acct));
}

/** RFC 8555 section 7.1.2.1: the account's orders, a page at a time (`?cursor=N`, Link rel="next"). */
async function orders(x: Call, a: AcmeRequest & { account: AcmeAccount }): Promise<void> {
  ownAccount(x, a);
  postAsGet(a);
  const ids = await x.acme.orders(a.account.id);
  const cursor = Number(x.query.get('cursor') ?? 0);
  if (!Number.isInteger(cursor) || cursor < 0) throw malformed('cursor must be a whole number');
  const page = ids.slice(cursor * ORDERS_PAGE_SIZE, (cursor + 1) * ORDERS_PAGE_SIZE);
  if (ids.length > (cursor + 1) * ORDERS_PAGE_SIZE) appendLink(x.c.res, `<${x.u.orders(a.account.id)}?cursor=${cursor + 1}>;rel="next"`);
  sendJson(x.c.res, 200, { orders: page.map((id) => x.u.order(id)) });
}

/** RFC 8555 section 7.3.5: the inner JWS (signed by the new key) checked, then the lifecycle changes the key. */
async function keyChange(x: Call, a: AcmeRequest & { account: AcmeAccount }): Promise<void> {
  const next = await verifyKeyChange(objectPayload(a), { url: x.u.keyChange, accountUrl: x.u.account(a.account.id), account: a.account });
  let acct: AcmeAccount;
  try {
    acct = await x.acme.changeKey(a.account.id, next.jwk, next.thumbprint);
  } catch (e) {
    // 409 with the Location of the account that has the key (section 7.3.5).
    if (e instanceof MutualError && e.code === 'ACME_KEY_IN_USE' && typeof e.fields.accountId !== 'string') {
      const holder = await x.acme.accountByKey(next.thumbprint);
      if (holder) throw new MutualError('ACME_KEY_IN_USE', { ...e.fields, accountId: holder.id }, { cause: e });
    }
    throw e;
  }
  sendJson(x.c.res, 200, accountView(x.u, acct));
}

// ---- orders, authorizations, challenges, certificates

/** RFC 8555 section 7.4: 201 with the order's Location. */
async function newOrder(x: Call, a: AcmeRequest & { account: AcmeAccount }): Promise<void> {
  const p = objectPayload(a);
  const replaces = optional(p.replaces, 'string', 'replaces');
  if (replaces !== undefined && !new RegExp(`^${CERT_ID}$`).test(replaces)) throw malformed('replaces must be an RFC 9773 certificate id');
  const o = await x.acme.newOrder(a.account.id, { identifiers: identifiers(p.identifiers), notBefore: date(p.notBefore, 'notBefore'), notAfter: date(p.notAfter, 'notAfter'), ...(replaces ? { replaces } : {}) });
  x.c.res.setHeader('location', x.u.order(o.id));
  sendJson(x.c.res, 201, orderView(x.u, o));
}

async function order(x: Call, a: AcmeRequest & { account: AcmeAccount }): Promise<void> {
  postAsGet(a);
  sendOrder(x, await x.acme.order(a.account.id, x.m[1]));
}

/** RFC 8555 section 7.4: the CSR (base64url DER) to the lifecycle; the order as it is now, with its Location. */
async function finalize(x: Call, a: AcmeRequest & { account: AcmeAccount }): Promise<void> {
  const csr = objectPayload(a).csr;
  if (typeof csr !== 'string' || csr.length === 0 || !B64URL.test(csr)) throw malformed('csr must be the DER CSR in base64url');
  const o = await x.acme.finalize(a.account.id, x.m[1], Buffer.from(csr, 'base64url'));
  // Counted with the API's issuances (ACME issues server certificates only).
  if (o.status === 'valid') x.s.metrics.issued.inc({ role: 'server' });
  x.c.res.setHeader('location', x.u.order(o.id));
  sendOrder(x, o);
}

function sendOrder(x: Call, o: Awaited<ReturnType<AcmeService['order']>>): void {
  if (o.status === 'processing') x.c.res.setHeader('retry-after', String(PROCESSING_RETRY_AFTER_SECONDS));
  sendJson(x.c.res, 200, orderView(x.u, o));
}

/** RFC 8555 sections 7.5 and 7.5.2: read (POST-as-GET) or deactivate. */
async function authorization(x: Call, a: AcmeRequest & { account: AcmeAccount }): Promise<void> {
  const id = x.m[1];
  if (a.payload && a.payload.status !== 'deactivated') throw malformed('an authorization update may set status to "deactivated" only');
  const authz = a.payload ? await x.acme.deactivateAuthorization(a.account.id, id) : await x.acme.authorization(a.account.id, id);
  sendJson(x.c.res, 200, authorizationView(x.u, authz));
}

/** RFC 8555 section 7.5.1: `{}` says the challenge is ready; POST-as-GET reads it. Link rel="up" to its authorization. */
async function challenge(x: Call, a: AcmeRequest & { account: AcmeAccount }): Promise<void> {
  const [authzId, id] = [x.m[1], x.m[2]];
  let ch;
  if (a.payload) {
    const r = await x.acme.respondChallenge(a.account.id, id);
    if (r.authorizationId !== authzId) throw new MutualError('ACME_NOT_FOUND', { detail: 'no such challenge under this authorization' });
    ch = r.challenge;
  } else {
    ch = (await x.acme.authorization(a.account.id, authzId)).challenges.find((c) => c.id === id);
    if (!ch) throw new MutualError('ACME_NOT_FOUND', { detail: 'no such challenge under this authorization' });
  }
  appendLink(x.c.res, `<${x.u.authorization(authzId)}>;rel="up"`);
  if (ch.status === 'processing') x.c.res.setHeader('retry-after', String(PROCESSING_RETRY_AFTER_SECONDS));
  sendJson(x.c.res, 200, challengeView(x.u, authzId, ch));
}

/** RFC 8555 section 7.4.2: the PEM chain; Link rel="alternate" to each other chain (`?alt=N`). */
async function certificate(x: Call, a: AcmeRequest & { account: AcmeAccount }): Promise<void> {
  postAsGet(a);
  const alt = Number(x.query.get('alt') ?? 0);
  if (!Number.isInteger(alt) || alt < 0 || alt > MAX_ALTERNATE) throw malformed(`alt must be a whole number from 0 to ${MAX_ALTERNATE}`);
  const chain = await x.acme.certificate(a.account.id, x.m[1], alt);
  const url = x.u.certificate(x.m[1]);
  for (let n = 0; n <= chain.alternates; n++) if (n !== alt) appendLink(x.c.res, `<${n === 0 ? url : `${url}?alt=${n}`}>;rel="alternate"`);
  const body = Buffer.from(chain.pem, 'utf8');
  x.c.res.writeHead(200, { 'content-type': 'application/pem-certificate-chain', 'content-length': body.length, 'cache-control': 'no-store' });
  x.c.res.end(body);
}

/** RFC 8555 section 7.6: by the account (kid) or by the certificate's key (jwk); 200 with no body. */
async function revokeCert(x: Call, a: AcmeRequest): Promise<void> {
  const p = objectPayload(a);
  if (typeof p.certificate !== 'string' || p.certificate.length === 0 || !B64URL.test(p.certificate)) throw malformed('certificate must be the DER certificate in base64url');
  const reason = p.reason;
  if (reason !== undefined && !(typeof reason === 'number' && Number.isInteger(reason))) throw new MutualError('ACME_BAD_REVOCATION_REASON', { detail: 'reason must be an RFC 5280 reason code (an integer)' });
  const by = a.account ? { accountId: a.account.id } : { jwk: a.jwk! };
  const der = Buffer.from(p.certificate, 'base64url');
  await x.acme.revoke({ certificateDer: der, ...(reason !== undefined ? { reason } : {}), by });
  await announceRevocation(x.s, der);
  x.c.res.writeHead(200, { 'content-length': 0, 'cache-control': 'no-store' });
  x.c.res.end();
}

/**
 * Tells this server's OCSP and CRLs at once, as /v1/revoke does, rather than at the next poll of
 * the revocation feed (other replicas hear it then). The lifecycle parsed the certificate already;
 * this reads only its serial back from the inventory.
 */
async function announceRevocation(s: ServerState, der: Buffer): Promise<void> {
  const r = await s.ca.getCertificate(parseCertificate(der).serial);
  if (r?.status !== 'revoked' || !r.revokedAt) return;
  if (s.feed.record([{ issuerKeyId: r.issuerKeyId, serial: r.serial, revokedAt: r.revokedAt, reason: r.reason ?? 'unspecified' }]).length > 0) s.metrics.revoked.inc();
}

// ---- payloads

const malformed = (detail: string): MutualError => new MutualError('ACME_MALFORMED', { detail });

/** The account URL of the request must be the signer's (RFC 8555 section 7.3.2). */
function ownAccount(x: Call, a: AcmeRequest & { account: AcmeAccount }): void {
  if (x.m[1] !== a.account.id) throw new MutualError('ACME_UNAUTHORIZED', { detail: 'the kid is another account than the one requested' });
}

/** A resource read with POST-as-GET takes an empty payload (RFC 8555 section 6.3). */
function postAsGet(a: AcmeRequest): void {
  if (a.payload !== undefined) throw malformed('this resource is read with POST-as-GET: an empty payload');
}

function objectPayload(a: AcmeRequest): Record<string, unknown> {
  if (!a.payload) throw malformed('this request needs a JSON object payload, not POST-as-GET');
  return a.payload;
}

function optional<T extends 'string' | 'boolean'>(v: unknown, type: T, name: string): (T extends 'string' ? string : boolean) | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== type || (typeof v === 'string' && (v.length === 0 || v.length > MAX_VALUE_CHARS))) throw malformed(`${name} must be a ${type}`);
  return v as T extends 'string' ? string : boolean;
}

/** `contact`: a short list of URLs (what they may be, mailto: or not, is the lifecycle's). */
function contacts(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > MAX_CONTACTS || !v.every((c) => typeof c === 'string' && c.length > 0 && c.length <= MAX_VALUE_CHARS)) {
    throw malformed(`contact must be a list of at most ${MAX_CONTACTS} URLs`);
  }
  return v as string[];
}

/** newOrder's identifiers: 1 to {@link MAX_ORDER_IDENTIFIERS} of type dns or ip (ACME_UNSUPPORTED_IDENTIFIER otherwise). */
function identifiers(v: unknown): AcmeIdentifier[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_ORDER_IDENTIFIERS) throw malformed(`identifiers must be a list of 1 to ${MAX_ORDER_IDENTIFIERS} identifiers`);
  return v.map((i: unknown) => {
    const o = i as Record<string, unknown> | null;
    if (!o || typeof o !== 'object' || typeof o.type !== 'string' || typeof o.value !== 'string' || o.value.length === 0 || o.value.length > MAX_VALUE_CHARS) {
      throw malformed('each identifier must be {"type": ..., "value": ...}');
    }
    if (o.type !== 'dns' && o.type !== 'ip') throw new MutualError('ACME_UNSUPPORTED_IDENTIFIER', { detail: `identifier type ${o.type.slice(0, 20)}` });
    return { type: o.type, value: o.value };
  });
}

/** An RFC 3339 date-time (RFC 8555 section 7.4: notBefore, notAfter). */
function date(v: unknown, name: string): Date | undefined {
  if (v === undefined) return undefined;
  const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;
  const d = typeof v === 'string' && RFC3339.test(v) ? new Date(v) : undefined;
  if (!d || Number.isNaN(d.getTime())) throw malformed(`${name} must be an RFC 3339 date-time`);
  return d;
}
