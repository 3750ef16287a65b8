/**
 * `mutual serve`: the online CA over HTTPS. Admin routes need an admin client certificate;
 * enrollment needs a one-time token; renewal needs only mTLS with the current certificate.
 * CRLs and OCSP answers are served from memory and follow revocations made by any replica.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import crypto from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { CertificateAuthority, checkLifetime, CRL_LIFETIME_MS, MAX_RENEWAL_GRACE_SECONDS, type IntermediateCa, type IssueResult, type LeafRole } from '../ca/authority.ts';
import { MAX_TOKEN_TTL_SECONDS, checkTokenNames, loadTokenKey, mintToken, verifyToken } from '../ca/tokens.ts';
import { profileLifetimes } from '../ca/config.ts';
import type { StoredCertificate } from '../ca/store.ts';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { parseCsr } from '../core/csr.ts';
import { parseRevocationReason } from '../core/crl.ts';
import { isMutualError, MutualError } from '../core/errors.ts';
import { readPemOrDer, toPem } from '../core/pem.ts';
import { checkNames } from '../core/policy.ts';
import { isClientGone, MAX_BODY_BYTES, newRequestId, RateLimiter, readJson, sendJson, sendProblem } from './http-util.ts';
import { parseRequestTarget } from './request-target.ts';
import { createMetrics, type CaMetrics } from './metrics.ts';
import { OcspService } from './ocsp-service.ts';
import { AdminAuthenticator, type AdminStatus } from './admin-auth.ts';

/** How often a replica polls the store for revocations made elsewhere. */
export const REVOCATION_POLL_MS = 1000;
/** A CRL is rebuilt when half its lifetime has passed, long before nextUpdate. */
export const CRL_REFRESH_FRACTION = 0.5;

/** Options for {@link startCaServer}. */
export interface CaServerOptions {
  ca: CertificateAuthority;
  /** Passphrase for the token signing key. */
  passphrase: string;
  /** Default 127.0.0.1:8443. Port 0 picks a free one. */
  host?: string;
  port?: number;
  /** Public base URL (default https://<host>:<port>). */
  url?: string;
  /** Renewal of certificates expired less than this long ago (default 0: off; at most 30 days, MAX_RENEWAL_GRACE_SECONDS). */
  renewalGraceSeconds?: number;
  /** Per-client-address limit on /v1 requests; false turns it off. Default 200/s, burst 400. */
  rateLimit?: { perSecond: number; burst: number } | false;
  /** Admin identities (patterns); default spiffe://<td>/admin/*. */
  admins?: string[];
  logger?: Logger;
  /** Lifetime of the server's own certificate; default 7 days, renewed at 2/3. */
  serverCertSeconds?: number;
  /** Extra names for the server's own certificate. */
  serverNames?: string[];
  /**
   * A plain-HTTP listener for the public, signed data only (OCSP, CRLs, CA certificates): relying
   * parties fetch these without TLS (RFC 5280 4.2.1.13, RFC 6960 A.1), and an OCSP URL behind TLS
   * would need its own revocation check. Off unless a port is given (0 picks one).
   */
  publicPort?: number;
  publicHost?: string;
  now?: () => Date;
}

/** A running CA server. */
export interface CaServer {
  url: string;
  port: number;
  /** Base URL of the plain-HTTP public listener, when enabled. */
  publicUrl?: string;
  server: https.Server;
  metrics: CaMetrics;
  /** Reads the intermediates and config.yaml again (SIGHUP in `mutual serve`); see the function. */
  reload(): Promise<void>;
  /** Stops accepting, finishes in-flight requests, closes timers (not the CA). */
  close(): Promise<void>;
}

interface RequestContext {
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
}

const ipRe = /^(\d+\.\d+\.\d+\.\d+|[0-9a-f:]+)$/i;

/** Starts the CA server. */
export async function startCaServer(o: CaServerOptions): Promise<CaServer> {
  const ca = o.ca;
  const now = o.now ?? (() => new Date());
  const log = o.logger ?? pino({ level: 'info' });
  const metrics = createMetrics();
  const host = o.host ?? '127.0.0.1';
  const tokenKey = loadTokenKey(ca.layout.keysDir, o.passphrase);
  const tokenPublic = crypto.createPublicKey(tokenKey);
  const rootDer = readPemOrDer(ca.rootPem, ['CERTIFICATE']);
  const rootFingerprint = crypto.createHash('sha256').update(rootDer).digest('hex');
  const admins = o.admins ?? [`spiffe://${ca.config.trustDomain}/admin/*`];
  const limiter = o.rateLimit === false ? undefined : new RateLimiter(o.rateLimit?.perSecond ?? 200, o.rateLimit?.burst ?? 400);
  const graceMs = (o.renewalGraceSeconds ?? 0) * 1000;
  if (!(graceMs >= 0 && graceMs <= MAX_RENEWAL_GRACE_SECONDS * 1000)) throw new TypeError(`renewalGraceSeconds must be 0 to ${MAX_RENEWAL_GRACE_SECONDS}`);

  // Revoked serials (hex) of unexpired certificates, kept current from the store's revocation log.
  const revoked = new Set<string>();
  // The cursor starts at the log's head: everything before it is in the set loaded below.
  let cursor = 0;
  for (let r = await ca.store.revocationsSince(0); ; r = await ca.store.revocationsSince(cursor)) {
    if (r.cursor === cursor) break;
    cursor = r.cursor;
    if (r.items.length === 0) break;
  }
  for (const r of await ca.list({ status: 'revoked', notExpiredAt: now(), limit: 10_000_000 })) revoked.add(r.serial);

  let ocsp = await OcspService.create({ ca, now, metrics });

  // CRLs: built in memory, rebuilt on revocation (coalesced) and at half their lifetime, one per
  // intermediate: `server`, `client`, and `<role>.prev-<key id>` for those retired by a key
  // rotation (they still revoke what they issued) until they expire.
  type ServedCrl = { der: Buffer; pem: string; thisUpdate: Date; nextUpdate: Date };
  const crls = new Map<string, ServedCrl>();
  /** Signs an intermediate's CRL now (also written to the state folder). */
  async function makeCrl(inter: IntermediateCa): Promise<ServedCrl> {
    const der = await ca.writeCrlOf(inter, now());
    const t = now();
    return { der, pem: toPem(der, 'X509 CRL'), thisUpdate: t, nextUpdate: new Date(t.getTime() + CRL_LIFETIME_MS) };
  }
  // Intermediates retired by a key rotation that are still valid: they keep signing CRLs for what
  // they issued, and stay trusted for client certificates (below).
  // Recomputed by reload() after `mutual intermediate install`.
  let retiredValid = ca.retired.filter((r) => now() < r.info.notAfter);
  let crlIssuers = new Map([ca.server, ca.client, ...retiredValid].map((inter) => [ca.crlName(inter), inter]));
  // Each is also answered under its key's name, the one certificates carry (`server.<key id>`).
  let byKeyedName = new Map([...crlIssuers].map(([name, inter]) => [ca.keyedName(inter), name]));
  const crlNameOf = (n: string): string => byKeyedName.get(n) ?? n;
  async function rebuildCrl(name: string): Promise<void> {
    const inter = crlIssuers.get(name);
    if (!inter) return;
    if (now() >= inter.info.notAfter && inter !== ca.server && inter !== ca.client) {
      // A retired intermediate that has expired: nothing it issued is valid any more.
      crlIssuers.delete(name);
      crls.delete(name);
      return;
    }
    crls.set(name, await makeCrl(inter));
    metrics.crlAge.set({ ca: name }, 0);
  }
  for (const name of crlIssuers.keys()) await rebuildCrl(name);
  let crlDirty = new Set<string>();
  // The root CRL is renewed offline and copied into the state folder; it is read when asked for.
  const readRootCrl = (): Buffer => readPemOrDer(fs.readFileSync(ca.layout.rootCrl), ['X509 CRL']);

  let lastPollOk = now().getTime();
  async function pollRevocations(): Promise<void> {
    const r = await ca.store.revocationsSince(cursor);
    lastPollOk = now().getTime();
    cursor = r.cursor;
    for (const ev of r.items) {
      if (revoked.has(ev.serial)) continue;
      revoked.add(ev.serial);
      ocsp.markRevoked(ev);
      const issuer = ca.issuerByKeyId(ev.issuerKeyId);
      if (issuer) crlDirty.add(ca.crlName(issuer));
    }
    const dirty = crlDirty;
    crlDirty = new Set();
    for (const name of dirty) await rebuildCrl(name);
    for (const [name, c] of crls) {
      const age = now().getTime() - c.thisUpdate.getTime();
      metrics.crlAge.set({ ca: name }, age / 1000);
      if (age > CRL_REFRESH_FRACTION * (c.nextUpdate.getTime() - c.thisUpdate.getTime())) await ca.store.withJobLock(`crl-${name}`, () => rebuildCrl(name));
    }
  }
  let polling = false;
  let again = false;
  function poll(): void {
    if (polling) {
      again = true;
      return;
    }
    polling = true;
    pollRevocations().catch((e) => log.error({ err: e }, 'revocation poll failed')).finally(() => {
      polling = false;
      if (again) {
        again = false;
        setImmediate(poll);
      }
    });
  }
  const pollTimer = setInterval(poll, REVOCATION_POLL_MS);
  pollTimer.unref();

  // The server's own certificate, from its own server CA, renewed at 2/3 of its lifetime.
  const listenNames = new Set(['localhost', '127.0.0.1', ...(o.serverNames ?? [])]);
  if (host !== '0.0.0.0' && host !== '::') listenNames.add(host);
  if (o.url) listenNames.add(new URL(o.url).hostname);
  const serverNames = { dns: [...listenNames].filter((n) => !ipRe.test(n)), ip: [...listenNames].filter((n) => ipRe.test(n)), uri: [] };
  const lifetime = o.serverCertSeconds ?? 7 * 86_400;
  async function serverContext(): Promise<{ key: string; cert: string; issued: IssueResult }> {
    const issued = await ca.issue({ role: 'server', names: serverNames, lifetimeSeconds: lifetime, actor: 'serve' });
    return { key: issued.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.fullchainPem, issued };
  }
  const first = await serverContext();
  // Retired intermediates stay trusted for client certificates until they expire: what they
  // issued (admin certificates among them) keeps working until it is renewed.
  let tlsBase = {
    ca: [ca.rootPem, ca.client.pem, ca.server.pem, ...retiredValid.map((r) => r.pem)],
    requestCert: true,
    // Every route decides what it needs; the handshake itself never fails for a missing or
    // untrusted client certificate, so a caller gets a coded answer instead of a TLS alert.
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2' as const,
  };
  const server = https.createServer({ ...tlsBase, key: first.key, cert: first.cert, keepAliveTimeout: 65_000, requestTimeout: 30_000, headersTimeout: 10_000 });
  server.maxHeadersCount = 100;
  let renewTimer: NodeJS.Timeout | undefined;
  const scheduleRenewal = () => {
    renewTimer = setTimeout(async () => {
      try {
        const next = await serverContext();
        server.setSecureContext({ ...tlsBase, key: next.key, cert: next.cert });
        log.info({ serial: next.issued.serial }, 'renewed the server certificate');
      } catch (e) {
        log.error({ err: e }, 'could not renew the server certificate; retrying in a minute');
      }
      scheduleRenewal();
    }, Math.max(60_000, (lifetime * 1000 * 2) / 3));
    renewTimer.unref();
  };
  scheduleRenewal();

  // ---- authentication
  // The peer certificate of a keep-alive connection does not change: read and parse it once per
  // connection (getPeerCertificate() builds a large object each call: ~110 us measured here).
  const peers = new WeakMap<object, { peer?: CertificateInfo; chainOk: boolean }>();
  function peerOf(req: IncomingMessage): { peer?: CertificateInfo; chainOk: boolean } {
    const socket = req.socket as TLSSocket;
    let p = peers.get(socket);
    if (!p) {
      const raw = socket.getPeerX509Certificate?.()?.raw;
      p = raw ? { peer: parseCertificate(raw), chainOk: socket.authorized } : { chainOk: false };
      peers.set(socket, p);
    }
    return p;
  }
  // The client CA, and client CAs retired by a key rotation while they are valid.
  const adminAuth = new AdminAuthenticator({
    admins, store: ca.store, isRevoked: (serial) => revoked.has(serial),
    issuerKeyIds: [ca.client, ...retiredValid.filter((r) => r.role === 'client-ca')].map((i) => i.keyId),
  });

  /**
   * Takes up what `mutual intermediate install` (or an edited config.yaml) changed: the CA reads
   * its intermediates again (all checked before any is used), then the CRL names, the TLS trust
   * list, the admin issuers, the OCSP responders and this server's own certificate follow. On
   * failure nothing changes and the server goes on with what it had.
   */
  let reloading: Promise<void> = Promise.resolve();
  function reload(): Promise<void> {
    // One at a time: a second SIGHUP waits for the first.
    const next = reloading.catch(() => undefined).then(reloadNow);
    reloading = next;
    return next;
  }
  async function reloadNow(): Promise<void> {
    const undo = ca.reload(o.passphrase);
    let nextOcsp: OcspService | undefined;
    const nextRetired = ca.retired.filter((r) => now() < r.info.notAfter);
    const nextIssuers = new Map([ca.server, ca.client, ...nextRetired].map((inter) => [ca.crlName(inter), inter]));
    const nextCrls = new Map<string, ServedCrl>();
    let next: Awaited<ReturnType<typeof serverContext>>;
    try {
      nextOcsp = await OcspService.create({ ca, now, metrics });
      for (const [name, inter] of nextIssuers) nextCrls.set(name, await makeCrl(inter));
      next = await serverContext();
    } catch (e) {
      undo();
      nextOcsp?.close();
      throw e;
    }
    // Everything built: switch.
    const oldOcsp = ocsp;
    ocsp = nextOcsp;
    oldOcsp.close();
    retiredValid = nextRetired;
    crlIssuers = nextIssuers;
    byKeyedName = new Map([...crlIssuers].map(([name, inter]) => [ca.keyedName(inter), name]));
    crls.clear();
    for (const [name, c] of nextCrls) crls.set(name, c);
    tlsBase = { ...tlsBase, ca: [ca.rootPem, ca.client.pem, ca.server.pem, ...retiredValid.map((r) => r.pem)] };
    adminAuth.setIssuers([ca.client, ...retiredValid.filter((r) => r.role === 'client-ca')].map((i) => i.keyId));
    server.setSecureContext({ ...tlsBase, key: next.key, cert: next.cert });
    // A revocation the poll took in while the CRLs above were signed went into the old ones:
    // sign them all again.
    for (const name of crlIssuers.keys()) crlDirty.add(name);
    poll();
    log.info({ server: ca.server.keyId.slice(0, 16), client: ca.client.keyId.slice(0, 16), retired: retiredValid.length, serial: next.issued.serial }, 'reloaded the intermediates');
  }
  const requireAdmin = (c: RequestContext): string => adminAuth.require(c.peer, c.peerChainOk, c.adminStatus);

  async function issued(c: RequestContext, r: IssueResult, status = 201): Promise<void> {
    metrics.issued.inc({ role: r.identity ? 'client' : 'server' });
    sendJson(c.res, status, { serial: r.serial, notAfter: r.notAfter.toISOString(), certificate: r.certificatePem, chain: r.chainPem, fullchain: r.fullchainPem, identity: r.identity });
  }

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

  // ---- routes
  async function route(c: RequestContext): Promise<void> {
    // Refused unless canonical, before any route decision: see request-target.ts.
    const target = parseRequestTarget(c.req.url ?? '/');
    const p = target.path;
    if (c.isPublic && !isPublicPath(p)) throw new MutualError('NOT_FOUND', { detail: 'the API is served over HTTPS only' });
    const url = new URL(`https://x${p}${target.query}`);
    const m = c.req.method ?? 'GET';
    if (m === 'GET' || m === 'HEAD') {
      if (p === '/health') return sendJson(c.res, 200, { ok: true });
      if (p === '/ready') {
        // Ready while the store answers: the revocation poll reaches it every second.
        const stale = now().getTime() - lastPollOk > 5 * REVOCATION_POLL_MS;
        return sendJson(c.res, stale ? 503 : 200, { ready: !stale, lastStoreContact: new Date(lastPollOk).toISOString() });
      }
      if (p === '/metrics') {
        c.res.writeHead(200, { 'content-type': metrics.registry.contentType });
        c.res.end(await metrics.registry.metrics());
        return;
      }
      if (p === '/roots.pem') return sendText(c.res, ca.rootPem, 'application/x-pem-file');
      // Every valid intermediate of a role, current first, and their CRLs: what a relying party
      // (nginx's ssl_client_certificate and ssl_crl) needs to accept what an old key issued after a
      // key rotation.
      const allMatch = /^\/(ca|crl)\/(server|client)\.all\.pem$/.exec(p);
      if (allMatch) {
        const current = allMatch[2] === 'server' ? ca.server : ca.client;
        // crlIssuers: the current intermediates first, then the retired ones until they expire.
        const inters = [...crlIssuers.values()].filter((i) => i.role === current.role && now() < i.info.notAfter);
        const pem = allMatch[1] === 'ca' ? inters.map((i) => i.pem).join('') : inters.map((i) => crls.get(ca.crlName(i))?.pem ?? '').join('');
        return sendText(c.res, pem, 'application/x-pem-file');
      }
      // The intermediates by the names of their CRLs (a retired one's is needed to check its CRL)
      // and of their keys.
      const caMatch = /^\/ca\/((?:server|client)(?:\.prev-[0-9a-f]{16}|\.[0-9a-f]{16})?)\.(pem|crt)$/.exec(p);
      const inter = caMatch && crlIssuers.get(crlNameOf(caMatch[1]));
      if (caMatch && inter) {
        return caMatch[2] === 'pem' ? sendText(c.res, inter.pem, 'application/x-pem-file') : sendBytes(c.res, inter.info.der, 'application/pkix-cert');
      }
      const crlMatch = /^\/crl\/(root|server|client|(?:server|client)\.(?:prev-)?[0-9a-f]{16})\.(crl|pem)$/.exec(p);
      const crl = crlMatch && (crlMatch[1] === 'root' ? undefined : crls.get(crlNameOf(crlMatch[1])));
      if (crlMatch && (crlMatch[1] === 'root' || crl)) {
        const der = crl ? crl.der : readRootCrl();
        return crlMatch[2] === 'crl' ? sendBytes(c.res, der, 'application/pkix-crl', 'max-age=60') : sendText(c.res, toPem(der, 'X509 CRL'), 'application/x-pem-file');
      }
    }
    if (p.startsWith('/v1/')) {
      if (limiter && !limiter.take(c.req.socket.remoteAddress ?? '?')) throw new MutualError('RATE_LIMITED');
      c.adminStatus = await adminAuth.readStatus(c.peer, c.peerChainOk);
      return api(c, m, p, url);
    }
    throw new MutualError('NOT_FOUND', { detail: p.slice(0, 100) });
  }

  async function api(c: RequestContext, m: string, p: string, url: URL): Promise<void> {
    if (p === '/v1/sign' && m === 'POST') {
      const actor = requireAdmin(c);
      const b = await readJson(c.req);
      return issued(c, await ca.issue({ role: role(b.profile), csr: str(b.csr, 'csr'), days: optDays(b.days), actor }));
    }
    if (p === '/v1/enroll' && m === 'POST') {
      const auth = String(c.req.headers.authorization ?? '');
      // `Bearer` with nothing after it (HTTP trims the space) is an empty token: TOKEN_MISSING.
      const bearer = /^Bearer(?:\s+([^]*))?$/.exec(auth);
      if (!bearer) throw new MutualError('AUTH_REQUIRED', { detail: 'send Authorization: Bearer <token>' });
      const claims = await verifyToken((bearer[1] ?? '').trim(), tokenPublic, now());
      const b = await readJson(c.req);
      if (b.days !== undefined || b.ttlSeconds !== undefined) throw new MutualError('ENROLL_LIFETIME_FIXED', { detail: 'the request names a lifetime; the token sets it' });
      const csrText = str(b.csr, 'csr');
      const csr = parseCsr(readPemOrDer(csrText, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']));
      const names = csr.names.dns.length + csr.names.ip.length + csr.names.uri.length ? csr.names : claims.names;
      checkTokenNames(claims, names);
      // The token is spent only once every check has passed, just before signing.
      const spend = async () => {
        if (!(await ca.store.consumeToken(claims.jti, claims.expiresAt, `token:${claims.subject}`))) throw new MutualError('TOKEN_REPLAYED');
      };
      // The lifetime is the admin's, carried by the token (or the profile's default).
      return issued(c, await ca.issue({ role: claims.role, csr: csrText, names, ttlSeconds: claims.certLifetimeSeconds, actor: `token:${claims.jti}`, beforeSign: spend, now: now() }));
    }
    if (p === '/v1/renew' && m === 'POST') return renew(c);
    if (p === '/v1/revoke' && m === 'POST') {
      const b = await readJson(c.req);
      const serial = str(b.serial, 'serial', 64).toLowerCase();
      let actor: string;
      try {
        actor = requireAdmin(c);
      } catch (e) {
        // The holder of a certificate may revoke it, proving possession over mTLS, while it is
        // valid: a revocation covers the renewals made from it, and the holder of an expired or
        // superseded certificate (an old key, since rotated) must not reach the current ones.
        const own = c.peer && c.peer.serial === serial ? await ca.store.getCertificate(serial) : undefined;
        const holder = own && c.peer && own.der.equals(c.peer.der) && own.status === 'valid' && now() < own.notAfter;
        if (!holder) throw e;
        actor = `holder:${serial}`;
      }
      const reason = b.reason === undefined ? 'unspecified' : parseRevocationReason(str(b.reason, 'reason', 40));
      // The CRL is rebuilt by the revocation poller right after (coalescing a burst of revocations).
      const r = await ca.revoke({ serial, reason, actor, writeCrl: false });
      // The certificate and the renewals of it the revocation covered.
      for (const x of [r, ...r.covered]) {
        if (x.status !== 'revoked' || revoked.has(x.serial)) continue;
        revoked.add(x.serial);
        ocsp.markRevoked({ issuerKeyId: x.issuerKeyId, serial: x.serial, revokedAt: x.revokedAt!, reason: x.reason ?? 'unspecified' });
        const issuer = ca.issuerByKeyId(x.issuerKeyId);
        if (issuer) crlDirty.add(ca.crlName(issuer));
        metrics.revoked.inc();
      }
      setImmediate(poll);
      return sendJson(c.res, 200, { ...view(r), covered: r.covered.map((x) => x.serial) });
    }
    if (p === '/v1/certificates' && m === 'GET') {
      requireAdmin(c);
      const q = url.searchParams;
      const limit = Math.min(Number(q.get('limit') ?? 100), 10_000);
      const expiring = q.get('expiringDays');
      const rows = await ca.list({
        role: q.get('role') === 'server' || q.get('role') === 'client' ? (q.get('role') as LeafRole) : undefined,
        status: q.get('status') === 'valid' || q.get('status') === 'revoked' ? (q.get('status') as 'valid' | 'revoked') : undefined,
        identity: q.get('identity') ?? undefined,
        expiringBefore: expiring ? new Date(now().getTime() + Number(expiring) * 86_400_000) : undefined,
        notExpiredAt: q.get('all') ? undefined : now(),
        limit: Number.isFinite(limit) && limit > 0 ? limit : 100,
      });
      return sendJson(c.res, 200, { items: rows.map(view) });
    }
    const one = /^\/v1\/certificates\/([0-9a-fA-F]{1,64})$/.exec(p);
    if (one && m === 'GET') {
      requireAdmin(c);
      const r = await ca.store.getCertificate(one[1]);
      if (!r) throw new MutualError('CERT_NOT_FOUND', { detail: one[1] });
      return sendJson(c.res, 200, { ...view(r), certificate: toPem(r.der, 'CERTIFICATE') });
    }
    if (p === '/v1/tokens' && m === 'POST') {
      const actor = requireAdmin(c);
      const b = await readJson(c.req);
      const names = b.names;
      if (!Array.isArray(names) || names.length === 0 || names.length > 100 || !names.every((n) => typeof n === 'string' && n.length < 2048)) {
        throw new MutualError('REQUEST_MALFORMED', { detail: 'names must be a list of DNS names, IPs, or one spiffe:// identity' });
      }
      const sans = splitNames(names as string[]);
      checkNames(ca.policy, sans, sans.uri.length ? 'client' : 'server');
      const ttl = b.ttlSeconds === undefined ? 600 : b.ttlSeconds;
      if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) {
        throw new MutualError('REQUEST_MALFORMED', { detail: `ttlSeconds must be a whole number from 1 to ${MAX_TOKEN_TTL_SECONDS}` });
      }
      const role: LeafRole = sans.uri.length ? 'client' : 'server';
      const certSeconds = b.certificateTtlSeconds;
      if (certSeconds !== undefined && (typeof certSeconds !== 'number' || !Number.isInteger(certSeconds))) {
        throw new MutualError('REQUEST_MALFORMED', { detail: 'certificateTtlSeconds must be a whole number of seconds' });
      }
      if (certSeconds !== undefined) checkLifetime(role, certSeconds, profileLifetimes(ca.config.profiles[role]).maxSeconds);
      const t = await mintToken({ key: tokenKey, names: sans, ttlSeconds: ttl, rootFingerprint, madeBy: actor, now: now(), certLifetimeSeconds: certSeconds });
      await ca.store.audit({ actor, action: 'token', target: t.jti, details: { names: sans, expiresAt: t.expiresAt.toISOString(), ...(certSeconds !== undefined ? { certificateTtlSeconds: certSeconds } : {}) } });
      return sendJson(c.res, 201, { token: t.token, expiresAt: t.expiresAt.toISOString(), ...(certSeconds !== undefined ? { certificateTtlSeconds: certSeconds } : {}) });
    }
    if (['/v1/sign', '/v1/enroll', '/v1/renew', '/v1/revoke', '/v1/tokens', '/v1/certificates'].includes(p)) throw new MutualError('METHOD_NOT_ALLOWED');
    throw new MutualError('NOT_FOUND', { detail: p.slice(0, 100) });
  }

  /** /v1/renew: authenticates (mTLS with the current certificate), parses, and asks the authority. */
  async function renew(c: RequestContext): Promise<void> {
    if (!c.peer) throw new MutualError('AUTH_REQUIRED', { detail: 'renewal needs mTLS with the current certificate' });
    // The poller's set answers before the store does for a revocation made on another replica.
    if (revoked.has(c.peer.serial)) throw new MutualError('CERT_REVOKED', { serial: c.peer.serial, detail: c.peer.serial });
    const b = c.req.headers['content-length'] === '0' ? {} : await readJson(c.req).catch((e) => {
      if ((e as MutualError).code === 'REQUEST_MALFORMED' && !c.req.headers['content-type']) return {};
      throw e;
    });
    const csr = b.csr === undefined ? undefined : str(b.csr, 'csr');
    let r: IssueResult;
    try {
      // Possession of the key was proven by the TLS handshake; the authority checks the rest.
      r = await ca.renew({ certificate: c.peer.der, csr, graceSeconds: graceMs / 1000, now: now() });
    } catch (e) {
      if (e instanceof MutualError && e.code === 'RENEWAL_TOO_SOON') c.res.setHeader('retry-after', String(Math.max(1, Number(e.fields.retryAfter) || 1)));
      throw e;
    }
    metrics.renewals.inc();
    // Certificates the renewal superseded: answered as revoked here at once, by others on their next poll.
    for (const x of r.superseded ?? []) {
      revoked.add(x.serial);
      ocsp.markRevoked({ issuerKeyId: x.issuerKeyId, serial: x.serial, revokedAt: x.revokedAt!, reason: 'superseded' });
      const issuer = ca.issuerByKeyId(x.issuerKeyId);
      if (issuer) crlDirty.add(ca.crlName(issuer));
      metrics.revoked.inc();
    }
    if (r.superseded?.length) setImmediate(poll);
    return issued(c, r);
  }

  // ---- the request loop
  function onRequest(req: IncomingMessage, res: ServerResponse, isPublic: boolean): void {
    const rawUrl = req.url ?? '/';
    // OCSP is the hot path: no request id, no URL object, no latency histogram, and a cached
    // GET answer is written without a promise. What follows `/ocsp/` is the request itself
    // (RFC 6960 A.1), opaque to routing: the OCSP handler answers it or says malformedRequest.
    if (rawUrl === '/ocsp' || rawUrl.startsWith('/ocsp/') || rawUrl.startsWith('/ocsp?')) {
      if (ocsp.trySendCached(req, res, rawUrl)) return;
      ocsp.handle(req, res, rawUrl.split('?')[0]).catch((e) => {
        log.error({ err: e }, 'OCSP request failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
      return;
    }
    handleRequest(req, res, isPublic);
  }
  /**
   * `Expect: 100-continue` (curl sends it for bodies over 1 MB): a body larger than any route reads
   * is not invited (RFC 9110 10.1.1), so the client gets its 413 without sending it, and Node then
   * closes the connection after the answer; any other request goes on as usual.
   */
  function onExpectContinue(req: IncomingMessage, res: ServerResponse, isPublic: boolean): void {
    if (!(Number(req.headers['content-length']) > MAX_BODY_BYTES)) res.writeContinue();
    onRequest(req, res, isPublic);
  }
  function handleRequest(req: IncomingMessage, res: ServerResponse, isPublic: boolean): void {
    const id = newRequestId();
    const started = process.hrtime.bigint();
    let ctx: RequestContext;
    try {
      const { peer, chainOk } = isPublic ? { peer: undefined, chainOk: false } : peerOf(req);
      ctx = { req, res, id, peer, peerChainOk: chainOk, isPublic };
    } catch (e) {
      sendProblem(res, e, id);
      return;
    }
    res.setHeader('x-request-id', id);
    route(ctx).catch((e) => {
      if (isClientGone(e, req)) {
        // Not a server failure, and nobody to answer: counted under its own code, logged quietly.
        metrics.errors.inc({ code: 'CLIENT_ABORTED' });
        log.debug({ requestId: id, code: 'CLIENT_ABORTED', path: logPath(req.url), detail: isMutualError(e) ? e.fields.detail : (e as NodeJS.ErrnoException).code }, 'client went away');
        res.destroy();
        return;
      }
      const { status, code } = sendProblem(res, e, id);
      metrics.errors.inc({ code });
      if (status >= 500) log.error({ err: e, requestId: id, path: logPath(req.url) }, 'request failed');
      else log.info({ requestId: id, code, path: logPath(req.url) }, 'request refused');
    }).finally(() => {
      metrics.latency.observe({ route: routeLabel(req.url) }, Number(process.hrtime.bigint() - started) / 1e9);
    });
  }
  server.on('request', (req: IncomingMessage, res: ServerResponse) => onRequest(req, res, false));
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => onExpectContinue(req, res, false));
  server.on('tlsClientError', (e) => log.debug({ err: e.message }, 'TLS handshake failed'));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 8443, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = o.url ?? `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  let publicServer: http.Server | undefined;
  let publicUrl: string | undefined;
  if (o.publicPort !== undefined) {
    const ps = http.createServer({ keepAliveTimeout: 65_000, requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => onRequest(req, res, true));
    ps.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => onExpectContinue(req, res, true));
    const publicHost = o.publicHost ?? host;
    await new Promise<void>((resolve, reject) => {
      ps.once('error', reject);
      ps.listen(o.publicPort, publicHost, () => resolve());
    });
    publicServer = ps;
    publicUrl = `http://${publicHost.includes(':') ? `[${publicHost}]` : publicHost}:${(ps.address() as AddressInfo).port}`;
    log.info({ url: publicUrl }, 'public OCSP/CRL listener');
  }
  log.info({ url, rootFingerprint }, 'mutual CA server listening');
  return {
    url, port, publicUrl, server, metrics, reload,
    async close() {
      clearInterval(pollTimer);
      if (renewTimer) clearTimeout(renewTimer);
      ocsp.close();
      await Promise.all([server, publicServer].filter((x) => x !== undefined).map((srv) => new Promise<void>((resolve) => {
        srv.close(() => resolve());
        srv.closeIdleConnections();
      })));
    },
  };
}

/**
 * What the plain-HTTP listener serves besides OCSP: the public, signed data relying parties fetch
 * (CRLs, CA certificates, the roots) and liveness. Checked on the canonical path, so no spelling
 * of `/v1/...` or `/metrics` gets through.
 */
function isPublicPath(p: string): boolean {
  return p === '/health' || p === '/ready' || p === '/roots.pem' || p.startsWith('/crl/') || p.startsWith('/ca/');
}

/** Longest request target written to a log line (a refused target may be up to Node's 16 KiB header limit). */
const MAX_LOGGED_PATH = 256;
const logPath = (u: string | undefined): string | undefined => (u && u.length > MAX_LOGGED_PATH ? `${u.slice(0, MAX_LOGGED_PATH)}...` : u);

function routeLabel(u: string | undefined): string {
  const p = (u ?? '/').split('?')[0];
  if (p.startsWith('/ocsp')) return '/ocsp';
  if (p.startsWith('/v1/certificates/')) return '/v1/certificates/:serial';
  return ['/v1/sign', '/v1/enroll', '/v1/renew', '/v1/revoke', '/v1/tokens', '/v1/certificates', '/health', '/ready', '/metrics', '/roots.pem'].includes(p) ? p : p.startsWith('/crl/') ? '/crl' : p.startsWith('/ca/') ? '/ca' : 'other';
}

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

/** Splits a list of names into DNS, IP and URI. */
export function splitNames(names: string[]): { dns: string[]; ip: string[]; uri: string[] } {
  return {
    dns: names.filter((n) => !n.includes('://') && !ipRe.test(n)),
    ip: names.filter((n) => ipRe.test(n) && !n.includes('://')),
    uri: names.filter((n) => n.includes('://')),
  };
}
