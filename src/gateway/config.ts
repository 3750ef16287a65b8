/**
 * The gateway's configuration (`gateway.yaml`), validated with zod into coded CONFIG_INVALID
 * errors naming the field. Paths are resolved against the config file's folder. It holds no
 * secrets beyond file paths; an enrollment token may be given by file or environment.
 */
import path from 'node:path';
import { z } from 'zod';
import { configDir, configInvalid, loadConfigFile, parseConfigValue, type ConfigYaml } from '../io/index.ts';
import { normalizeHost, normalizeTarget } from './request-target.ts';

/** Largest gateway.yaml read. */
export const MAX_GATEWAY_CONFIG_BYTES = 1024 * 1024;
/** Most routes in one config. */
export const MAX_ROUTES = 1000;

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE'] as const;
const identityPattern = z.string().min(1).max(2048).refine((s) => s === '*' || s.startsWith('spiffe://'), { message: 'identities are spiffe:// IDs or patterns (or "*" for any verified client)' });

const rule = z.object({
  /** Identities (exact, `*` for one path segment, trailing `**`); "*" alone: any verified client. */
  identities: z.array(identityPattern).min(1).max(1000),
  /** Methods this rule allows; default all. */
  methods: z.array(z.enum(METHODS)).min(1).optional(),
}).strict();

/** True when `f` does not throw (the config names a host or prefix requests can carry). */
const accepted = (f: () => unknown): boolean => {
  try {
    f();
    return true;
  } catch {
    return false;
  }
};

const route = z.object({
  /** Name used in logs, metrics and 403 answers; default `host+pathPrefix`. */
  name: z.string().min(1).max(100).optional(),
  /** Host to match (exact, or `*.suffix`), in any case, with or without a trailing dot; default any. */
  host: z.string().min(1).max(253).refine((h) => accepted(() => normalizeHost(h.startsWith('*.') ? h.slice(2) : h)) && !(h.startsWith('[') ? h.includes(']:') : h.includes(':')), { message: 'a host name (or *.suffix, or [IPv6]) without port' }).optional(),
  /**
   * Path prefix to match, on segment boundaries (`/api` matches `/api` and `/api/x`, not `/apix`),
   * against the normalized request path (docs/gateway.md, "Paths and hosts").
   */
  pathPrefix: z.string().startsWith('/').max(2048).refine((p) => accepted(() => normalizeTarget(p.length > 1 ? p.replace(/\/+$/, '') : p)) && !p.includes('?'), { message: 'a path without dot or empty segments, backslashes, ";", "?" or refused escapes' }).default('/'),
  /** Match pathPrefix in any ASCII case, for backends that route that way (Express by default). Default false. */
  caseInsensitive: z.boolean().default(false),
  /** `http://host:port`, `https://host:port` (optionally with a base path). */
  upstream: z.string().url().refine((u) => /^https?:\/\//.test(u), { message: 'upstream must be http:// or https://' }),
  /** For https upstreams: present the gateway's client certificate (upstreamTls). Default true. */
  mtls: z.boolean().default(true),
  /** TLS server name to check for https upstreams, when it differs from the URL's host. */
  serverName: z.string().max(253).optional(),
  /** Remove pathPrefix before forwarding. Default false. */
  stripPrefix: z.boolean().default(false),
  /** Authorization rules; the first that matches allows. No rule matches: denied (403). */
  allow: z.array(rule).max(1000).default([]),
}).strict();

const limits = z.object({
  /** Largest request header block (bytes; HTTP/1.1: Node's parser answers 431; HTTP/2: header list size per RFC 9113 6.5.2, 431 HEADERS_TOO_LARGE). */
  maxHeaderBytes: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024),
  /** Largest request body (bytes); larger answers 413. */
  maxBodyBytes: z.number().int().min(0).default(10 * 1024 * 1024),
  /** Time for a client to send its request headers (slow-loris bound). */
  headersTimeoutMs: z.number().int().min(100).default(10_000),
  /** Time for a client to send a whole request. */
  requestTimeoutMs: z.number().int().min(100).default(60_000),
  /** Idle keep-alive connections (and idle HTTP/2 sessions) are closed after this. */
  idleTimeoutMs: z.number().int().min(100).default(65_000),
  /** Time for the upstream to answer (headers, then between body chunks); past it, 504. */
  upstreamTimeoutMs: z.number().int().min(100).default(30_000),
  /** Connections accepted at once; more are refused at accept. */
  maxConnections: z.number().int().min(1).default(10_000),
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: more streams are refused (REFUSED_STREAM). */
  h2MaxConcurrentStreams: z.number().int().min(1).max(10_000).default(100),
  /** Rapid-reset bound: a session resetting more streams than this within h2ResetWindowMs is closed. */
  h2MaxResetsPerWindow: z.number().int().min(1).default(200),
  h2ResetWindowMs: z.number().int().min(100).default(10_000),
  /** Upstream connections per origin. */
  upstreamConnections: z.number().int().min(1).max(10_000).default(128),
  /** Time given to requests in flight at shutdown; then every connection still open is closed, idle or not. */
  shutdownTimeoutMs: z.number().int().min(0).default(10_000),
}).strict();

const tlsFiles = z.object({
  /** Certificate chain (leaf + intermediates), PEM. */
  cert: z.string().min(1),
  key: z.string().min(1),
}).strict();

/** The schema of gateway.yaml. */
export const GatewayConfigSchema = z.object({
  listen: z.object({ host: z.string().default('127.0.0.1'), port: z.number().int().min(0).max(65535).default(8443) }).strict().default({ host: '127.0.0.1', port: 8443 }),
  /** The gateway's server certificate: from files (reloaded on change), or enrolled with a token. */
  tls: z.union([
    tlsFiles,
    z.object({
      enroll: z.object({
        caUrl: z.string().url(),
        /** A file holding the one-time token (or set MUTUAL_GATEWAY_TOKEN). */
        tokenFile: z.string().optional(),
        /** Where the enrolled files are kept (renewed at 2/3 of the lifetime). */
        dir: z.string().optional(),
      }).strict(),
    }).strict(),
  ]),
  trust: z.object({
    /** Roots (and intermediates) OpenSSL checks client chains against, PEM. */
    ca: z.string().min(1),
    /** The client CA certificate(s) whose leaves are accepted (the trust boundary), PEM. */
    clientCas: z.string().min(1),
  }).strict(),
  revocation: z.object({
    mode: z.enum(['fail-closed', 'fail-open', 'off']).default('fail-closed'),
    /** CRL URLs; default: the certificates' CRL distribution points. */
    crlUrls: z.array(z.string().url()).max(16).default([]),
    /** CRL files (DER or PEM), reloaded when they change (e.g. written by `mutual agent`). */
    crlFiles: z.array(z.string().min(1)).max(16).default([]),
    ocsp: z.boolean().default(true),
    refreshSeconds: z.number().int().min(1).default(300),
    closeRevokedConnections: z.boolean().default(true),
  }).strict().default({ mode: 'fail-closed', crlUrls: [], crlFiles: [], ocsp: true, refreshSeconds: 300, closeRevokedConnections: true }),
  /**
   * TLS session resumption (TLS 1.3 tickets) for callers. A resumed session skips the handshake's
   * signatures; the verifier still checks the certificate per connection. Default true.
   */
  sessionResumption: z.boolean().default(true),
  /** The gateway's own identity (XFCC `By`); default: the URI SAN of the upstream client certificate. */
  identity: z.string().startsWith('spiffe://').optional(),
  /** The gateway's client certificate for mTLS upstreams, and the trust for https upstreams. */
  upstreamTls: z.object({ cert: z.string().min(1).optional(), key: z.string().min(1).optional(), ca: z.string().min(1).optional() }).strict().default({}),
  forward: z.object({
    /** Set x-forwarded-client-cert (Envoy format: By, Hash, Subject, URI, DNS). Default true. */
    xfcc: z.boolean().default(true),
    /** Set RFC 9440 Client-Cert and Client-Cert-Chain. Default false. */
    clientCert: z.boolean().default(false),
    /** More request headers to strip (exact names or `prefix-*`), e.g. `x-client-*`. */
    strip: z.array(z.string().min(1).max(100)).max(100).default(['x-client-*']),
  }).strict().default({ xfcc: true, clientCert: false, strip: ['x-client-*'] }),
  routes: z.array(route).min(1).max(MAX_ROUTES),
  limits: limits.default(limits.parse({})),
  /** Access log: JSON lines on stdout (true), to a file (path), or off (false). Default true. */
  accessLog: z.union([z.boolean(), z.string().min(1)]).default(true),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Plain-HTTP admin listener (GET /metrics, /health, /ready); keep it on loopback. Off by default. */
  admin: z.object({ host: z.string().default('127.0.0.1'), port: z.number().int().min(0).max(65535) }).strict().optional(),
}).strict();

export type GatewayConfig = z.infer<typeof GatewayConfigSchema>;
export type RouteConfig = z.infer<typeof route>;
export type LimitsConfig = z.infer<typeof limits>;

/** Validates a parsed config; resolves file paths against `baseDir`. Throws CONFIG_INVALID. */
export function validateGatewayConfig(raw: unknown, baseDir = process.cwd(), yaml?: ConfigYaml): GatewayConfig {
  const c = parseConfigValue(GatewayConfigSchema, raw, yaml);
  const abs = (p: string) => path.resolve(baseDir, p);
  if ('cert' in c.tls) c.tls = { cert: abs(c.tls.cert), key: abs(c.tls.key) };
  else {
    if (c.tls.enroll.tokenFile) c.tls.enroll.tokenFile = abs(c.tls.enroll.tokenFile);
    if (c.tls.enroll.dir) c.tls.enroll.dir = abs(c.tls.enroll.dir);
  }
  c.trust = { ca: abs(c.trust.ca), clientCas: abs(c.trust.clientCas) };
  c.revocation.crlFiles = c.revocation.crlFiles.map(abs);
  const u = c.upstreamTls;
  c.upstreamTls = { ...(u.cert ? { cert: abs(u.cert) } : {}), ...(u.key ? { key: abs(u.key) } : {}), ...(u.ca ? { ca: abs(u.ca) } : {}) };
  if (!!u.cert !== !!u.key) throw configInvalid(yaml, ['upstreamTls'], 'give both cert and key, or neither', raw);
  for (const [i, rt] of c.routes.entries()) {
    if (rt.upstream.startsWith('https:') && rt.mtls && !u.cert) throw configInvalid(yaml, ['routes', i], 'an mTLS upstream needs upstreamTls.cert and key (or set mtls: false)', raw);
  }
  return c;
}

/** Reads and validates gateway.yaml (at most {@link MAX_GATEWAY_CONFIG_BYTES}). Throws CONFIG_INVALID (also for unreadable YAML). */
export function loadGatewayConfig(file: string): GatewayConfig {
  return loadConfigFile(file, { maxBytes: MAX_GATEWAY_CONFIG_BYTES, validate: (raw, yaml) => validateGatewayConfig(raw, configDir(file), yaml) });
}
