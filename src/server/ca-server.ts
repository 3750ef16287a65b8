/**
 * `mutual serve`: the online CA over HTTPS, a transport. Admin routes need an admin client
 * certificate; enrollment needs a one-time token; renewal needs only mTLS with the current
 * certificate. CRLs and OCSP answers are served from memory and follow revocations made by any
 * replica. The lifecycle is the authority's and its services' (src/ca/): the revocation feed,
 * the CRL schedule, the server's own certificate renewal, enrollment; this file wires them to the
 * listeners, and routes.ts answers requests.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import {
  MAX_RENEWAL_GRACE_SECONDS, type AcmeService, type CertificateAuthority, openAcme, type IntermediateCa, CrlSchedule, Enrollment, RevocationFeed, REVOCATION_POLL_MS, SelfRenewal, type TlsCredentials, loadTokenKey,
  KeyHealth, tokenKeyStore,
} from '../ca/index.ts';
import type { Signer } from '../core/signer.ts';
import type { SubjectAltNames } from '../core/names.ts';
import { AdminAuthenticator } from './admin-auth.ts';
import { RateLimiter } from './http-util.ts';
import { createMetrics, type CaMetrics } from './metrics.ts';
import { OcspService } from './ocsp-service.ts';
import { createRequestLoop, type RequestLoop } from './request-loop.ts';
import type { ServerState } from './routes.ts';
import { ipRe, splitNames } from '../core/names.ts';


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
  /**
   * The HTTPS base URL of ACME's URLs (RFC 8555 section 7.1: absolute). Default: `url` when it is
   * https:, else each request's Host (`url` may name the plain-HTTP listener, which serves no ACME).
   */
  acmeUrl?: string;
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
  /**
   * The ACME lifecycle to serve under `/acme/` on the HTTPS listener (never on the plain-HTTP one).
   * Default: the one config.yaml enables (`acme.enabled`), built by `openAcme` (src/ca/acme/open-acme.ts); none otherwise.
   * False turns ACME off whatever the config says.
   */
  acme?: AcmeService | false;
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

/** How often expired ACME orders, authorizations and spent nonces are removed (their lifetimes are config.yaml's). */
const ACME_SWEEP_MS = 10 * 60_000;

/** Options of the listeners' sockets (Node's defaults are for trusted peers). */
const SOCKET_OPTIONS = { keepAliveTimeout: 65_000, requestTimeout: 30_000, headersTimeout: 10_000 };
const TLS_BASE = {
  requestCert: true,
  // Every route decides what it needs; the handshake itself never fails for a missing or
  // untrusted client certificate, so a caller gets a coded answer instead of a TLS alert.
  rejectUnauthorized: false,
  minVersion: 'TLSv1.2' as const,
};

/** Starts the CA server. */
export async function startCaServer(o: CaServerOptions): Promise<CaServer> {
  const ca = o.ca;
  const now = o.now ?? (() => new Date());
  const log = o.logger ?? pino({ level: 'info' });
  const metrics = createMetrics();
  const host = o.host ?? '127.0.0.1';
  const tokenKey = loadTokenKey(ca.layout.keysDir, o.passphrase, tokenKeyStore(ca.config));
  const graceSeconds = o.renewalGraceSeconds ?? 0;
  if (!(graceSeconds >= 0 && graceSeconds <= MAX_RENEWAL_GRACE_SECONDS)) throw new TypeError(`renewalGraceSeconds must be 0 to ${MAX_RENEWAL_GRACE_SECONDS}`);

  const onAge = (name: string, seconds: number): void => metrics.crlAge.set({ ca: name }, seconds);
  // The state the routes read; `ocsp` and `crls` are set just below and replaced by reload().
  const s = { ca, now, metrics, graceSeconds, pollMs: REVOCATION_POLL_MS } as ServerState;
  s.feed = await RevocationFeed.open({
    ca, now,
    onRevoked: (events) => {
      for (const ev of events) {
        s.ocsp.markRevoked(ev);
        s.crls.markDirty(ev.issuerKeyId);
      }
    },
    afterPoll: () => s.crls.refresh(),
    onError: (e) => log.error({ err: e }, 'revocation poll failed'),
  });
  const onOcspError = (e: unknown): void => log.error({ err: e }, 'could not sign an OCSP answer');
  s.ocsp = await OcspService.create({ ca, now, metrics, onError: onOcspError });
  s.crls = await CrlSchedule.create({ ca, now, onAge });
  s.enrollment = new Enrollment({ ca, tokenKey, now });
  // /ready asks every key that signs here (a token's key is unavailable while the token is away).
  s.keyHealth = new KeyHealth({ now, signers: () => signersOf(ca, s.crls.retired, tokenKey) });
  s.adminAuth = new AdminAuthenticator({ admins: o.admins ?? [`spiffe://${ca.config.trustDomain}/admin/*`], store: ca, isRevoked: (serial) => s.feed.has(serial), issuerKeyIds: adminIssuers(ca, s.crls.retired) });
  if (o.rateLimit !== false) s.limiter = new RateLimiter(o.rateLimit?.perSecond ?? 200, o.rateLimit?.burst ?? 400);
  // Built here only when not given: then this server owns it and lets its validations end on close.
  const ownAcme = o.acme === undefined ? openAcme({ ca, now }) : undefined;
  s.acme = o.acme === false ? undefined : (o.acme ?? ownAcme);
  s.acmeBaseUrl = o.acmeUrl ?? (o.url?.startsWith('https:') ? o.url : undefined);
  // Abandoned orders, unused authorizations and spent nonces leave the store once expired; every
  // replica sweeps (the delete is idempotent), so none depends on another being up.
  const acmeSweep = ownAcme ? setInterval(() => ownAcme.expire().catch((e) => log.error({ err: e }, 'ACME cleanup failed')), ACME_SWEEP_MS) : undefined;
  acmeSweep?.unref();
  s.feed.start();

  // The server's own certificate, from its own server CA, renewed on a timer. Retired
  // intermediates (valid ones: the CRL schedule's) stay trusted for client certificates until
  // they expire: what they issued (admin certificates among them) keeps working until renewed.
  const secureContext = (c: TlsCredentials) => ({ ...TLS_BASE, ca: [...ca.trustRoots, ca.client.pem, ca.server.pem, ...s.crls.retired.map((r) => r.pem)], key: c.key, cert: c.cert });
  const renewal = new SelfRenewal({
    ca, names: listenNames(o, host), lifetimeSeconds: o.serverCertSeconds,
    install: (c) => {
      server.setSecureContext(secureContext(c));
      log.info({ serial: c.serial }, 'renewed the server certificate');
    },
    onError: (e) => log.error({ err: e }, 'could not renew the server certificate; retrying in a minute'),
  });
  const server = https.createServer({ ...secureContext(await renewal.issue()), ...SOCKET_OPTIONS });
  server.maxHeadersCount = 100;
  renewal.start();

  let reloading: Promise<void> = Promise.resolve();
  const loop = createRequestLoop(s, log);
  server.on('request', (req, res) => loop.onRequest(req, res, false));
  server.on('checkContinue', (req, res) => loop.onExpectContinue(req, res, false));
  server.on('tlsClientError', (e) => log.debug({ err: e.message }, 'TLS handshake failed'));
  const port = await listen(server, o.port ?? 8443, host);
  const url = o.url ?? `https://${bracket(host)}:${port}`;
  const pub = o.publicPort === undefined ? undefined : await startPublicListener(loop, o.publicPort, o.publicHost ?? host);
  if (pub) log.info({ url: pub.url }, 'public OCSP/CRL listener');
  const publicUrl = pub?.url;
  log.info({ url, rootFingerprint: s.enrollment.rootFingerprint }, 'mutual CA server listening');
  if (s.acme) log.info({ directory: `${(s.acmeBaseUrl ?? url).replace(/\/+$/, '')}/acme/directory` }, 'ACME enabled');
  return {
    url, port, publicUrl, server, metrics,
    reload() {
      // One at a time: a second SIGHUP waits for the first.
      reloading = reloading.catch(() => undefined).then(() => reloadServer({ s, server, renewal, secureContext, passphrase: o.passphrase, onAge, log }));
      return reloading;
    },
    async close() {
      s.feed.close();
      renewal.close();
      s.ocsp.close();
      clearInterval(acmeSweep);
      await Promise.all([server, pub?.server].filter((x) => x !== undefined).map((srv) => new Promise<void>((resolve) => {
        srv.close(() => resolve());
        srv.closeIdleConnections();
      })));
      // Challenge validations started by requests end before the caller closes the CA and its store.
      await ownAcme?.settle();
    },
  };
}

/** The plain-HTTP listener of the public, signed data (see {@link CaServerOptions.publicPort}). */
async function startPublicListener(loop: RequestLoop, port: number, host: string): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer(SOCKET_OPTIONS, (req, res) => loop.onRequest(req, res, true));
  server.on('checkContinue', (req, res) => loop.onExpectContinue(req, res, true));
  return { server, url: `http://${bracket(host)}:${await listen(server, port, host)}` };
}

/**
 * Takes up what `mutual intermediate install` (or an edited config.yaml) changed: the CA reads
 * its intermediates again (all checked before any is used), then the CRL names, the TLS trust
 * list, the admin issuers, the OCSP responders and this server's own certificate follow. On
 * failure nothing changes and the server goes on with what it had.
 */
async function reloadServer(o: { s: ServerState; server: https.Server; renewal: SelfRenewal; secureContext: (c: TlsCredentials) => https.ServerOptions; passphrase: string; onAge: (name: string, seconds: number) => void; log: Logger }): Promise<void> {
  const { s, server, renewal, onAge, log } = o;
  const { ca, now, metrics } = s;
  const undo = ca.reload(o.passphrase);
  let nextOcsp: OcspService | undefined;
  let nextCrls: CrlSchedule;
  let next: TlsCredentials;
  try {
    nextOcsp = await OcspService.create({ ca, now, metrics, onError: (e) => log.error({ err: e }, 'could not sign an OCSP answer') });
    nextCrls = await CrlSchedule.create({ ca, now, onAge });
    next = await renewal.issue();
  } catch (e) {
    undo();
    nextOcsp?.close();
    throw e;
  }
  // Everything built: switch.
  const oldOcsp = s.ocsp;
  s.ocsp = nextOcsp;
  oldOcsp.close();
  s.crls = nextCrls;
  s.adminAuth.setIssuers(adminIssuers(ca, s.crls.retired));
  server.setSecureContext(o.secureContext(next));
  // A revocation the poll took in while the CRLs above were signed went into the old ones:
  // sign them all again.
  s.crls.markAllDirty();
  s.feed.poll();
  log.info({ server: ca.server.keyId.slice(0, 16), client: ca.client.keyId.slice(0, 16), retired: s.crls.retired.length, serial: next.serial }, 'reloaded the intermediates');
}

/** The keys this server signs with, by name: the intermediates (retired ones sign CRLs) and the token key. */
function signersOf(ca: CertificateAuthority, retired: readonly IntermediateCa[], tokenKey: Signer): { name: string; signer: Signer }[] {
  return [
    { name: 'server-ca', signer: ca.server.signer }, { name: 'client-ca', signer: ca.client.signer },
    ...retired.map((r) => ({ name: `${r.role}.prev-${r.keyId.slice(0, 16)}`, signer: r.signer })),
    { name: 'token', signer: tokenKey },
  ];
}

/** Key ids of the client CAs whose certificates may be admins': the current one and retired ones still valid. */
function adminIssuers(ca: CertificateAuthority, retired: readonly IntermediateCa[]): string[] {
  return [ca.client, ...retired.filter((r) => r.role === 'client-ca')].map((i) => i.keyId);
}

/** The names of the server's own certificate: localhost, the listen host, the public URL's host, and any extra. */
function listenNames(o: CaServerOptions, host: string): SubjectAltNames {
  const names = new Set(['localhost', '127.0.0.1', ...(o.serverNames ?? [])]);
  if (host !== '0.0.0.0' && host !== '::') names.add(host);
  if (o.url) names.add(new URL(o.url).hostname);
  return { dns: [...names].filter((n) => !ipRe.test(n)), ip: [...names].filter((n) => ipRe.test(n)), uri: [] };
}

const bracket = (host: string): string => (host.includes(':') ? `[${host}]` : host);

/** Listens and returns the port (port 0 picks one). */
async function listen(server: http.Server | https.Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}
