/**
 * `agent.yaml`: what `mutual agent` manages on a host, validated with zod into a resolved
 * {@link AgentManifest} (absolute paths, numeric ids and modes, durations in milliseconds). Every
 * refusal is a CONFIG_INVALID naming the field, e.g. `certificates[0] (api).files.key: ...`.
 * The format is documented in docs/agent.md.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { KEY_TYPES, type KeyType } from '../core/algorithms.ts';
import { MutualError, isMutualError } from '../core/errors.ts';
import { parseDuration } from '../core/duration.ts';
import { parseSpiffeId } from '../core/identity.ts';
import type { SubjectAltNames } from '../core/names.ts';
import { MAX_SANS } from '../core/policy.ts';
import { configFieldPath, parseConfigValue, parseConfigYaml, readConfigFile } from '../io/index.ts';

/** Largest manifest read. */
export const MAX_MANIFEST_BYTES = 256 * 1024;
/** Most certificates one agent manages (each is a schedule, a folder and a few files). */
export const MAX_CERTIFICATES = 256;
/** Most trust files (bundles + CRLs). */
export const MAX_TRUST_FILES = 64;
/** Default renewal point: 2/3 of the lifetime (DESIGN.md). */
export const DEFAULT_RENEW_FRACTION = 2 / 3;
/** Default jitter: renewals spread over +-5 % of the lifetime around the renewal point. */
export const DEFAULT_JITTER = 0.1;
/** Default time between fetches of CA certificates and CRLs. */
export const DEFAULT_TRUST_REFRESH_MS = 15 * 60_000;
/** Default first retry delay after a failure; doubles up to {@link DEFAULT_RETRY_MAX_MS}. */
export const DEFAULT_RETRY_INITIAL_MS = 30_000;
/** Default longest retry delay. */
export const DEFAULT_RETRY_MAX_MS = 60 * 60_000;
/** Default warning point: less than this fraction of the lifetime left and still not renewed. */
export const DEFAULT_WARN_FRACTION = 0.1;
/** Default time a check or reload command may take. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
/** Default time the verify step waits for the service to serve the new certificate. */
export const DEFAULT_VERIFY_TIMEOUT_MS = 15_000;

/** A command: an argv list run without a shell, or a string run with `/bin/sh -c`. */
export type CommandSpec = { argv: string[] } | { shell: string };
/** How a service is reloaded: a command, or a signal to the pid in a pid file. */
export type ReloadSpec = CommandSpec | { signal: NodeJS.Signals; pidFile: string };

/** What runs around a deployment. */
export interface HookSpec {
  /** Runs after the new files are in place and before the reload; a failure restores the old files. */
  check?: CommandSpec;
  reload?: ReloadSpec;
  /** Limit for each command (default {@link DEFAULT_COMMAND_TIMEOUT_MS}). */
  timeoutMs: number;
}

/** Owner, group and mode of written files (uid/gid undefined: left as the agent's). */
export interface Ownership {
  uid?: number;
  gid?: number;
  mode: number;
}

/** A CA certificate a bundle may hold. */
export type BundlePart = 'root' | 'server-ca' | 'client-ca';
/** An issuer whose CRL the agent fetches. */
export type CrlIssuer = 'root' | 'server' | 'client';

/** A trust bundle file: CA certificates as PEM. */
export interface BundleSpec {
  /** Where in agent.yaml it was declared (for messages). */
  source: string;
  path: string;
  include: BundlePart[];
  ownership: Ownership;
  hooks: HookSpec;
}

/** A CRL file: one CRL as DER, or several as concatenated PEM (nginx `ssl_crl` wants every level). */
export interface CrlFileSpec {
  source: string;
  path: string;
  issuers: CrlIssuer[];
  format: 'pem' | 'der';
  ownership: Ownership;
  hooks: HookSpec;
}

/** Where a certificate's files go; each is a link into the agent's generation folder. */
export interface CertificateFiles {
  cert?: string;
  key?: string;
  chain?: string;
  fullchain?: string;
  pkcs12?: { path: string; passwordFile: string };
}

/** The optional check that the service serves the new certificate. */
export interface VerifySpec {
  host: string;
  port: number;
  /** SNI name; default the first DNS name of the certificate. */
  serverName?: string;
  timeoutMs: number;
}

/** How the agent answers an ACME server's challenges. */
export type AcmeChallengeSpec =
  | { type: 'http-01'; listen: { host: string; port: number } }
  | { type: 'http-01'; webroot: string }
  | { type: 'dns-01'; hook: string };

/** A certificate obtained from an ACME server (RFC 8555) instead of with a token. */
export interface AcmeSpec {
  directory: string;
  eabKeyId?: string;
  eabHmacKeyFile?: string;
  challenge: AcmeChallengeSpec;
  /** Trust anchors (PEM file) for the ACME server's HTTPS; default the system's. */
  caFile?: string;
}

/** One managed certificate. */
export interface CertificateSpec {
  name: string;
  profile: 'server' | 'client';
  names: SubjectAltNames;
  keyType: KeyType;
  /** Make a new key at each renewal (default true). */
  newKey: boolean;
  /** A one-time token, inline (prefer tokenFile: agent.yaml is not a secret store). */
  token?: string;
  tokenFile?: string;
  /** Obtained and renewed over ACME instead of the token and mTLS renewal. */
  acme?: AcmeSpec;
  files: CertificateFiles;
  /** Certificate files (cert, chain, fullchain): default 0644. */
  ownership: Ownership;
  /** Key and PKCS#12: default 0600. */
  keyMode: number;
  hooks: HookSpec;
  verify?: VerifySpec;
}

/** The resolved manifest. */
export interface AgentManifest {
  /** The manifest file, absolute. */
  file: string;
  /** The mutual CA (token enrollment, mTLS renewal, trust files); absent when every certificate is ACME's. */
  ca?: { url: string; rootFile?: string; rootFingerprint?: string };
  stateDir: string;
  renewal: { fraction: number; jitter: number; retryInitialMs: number; retryMaxMs: number; warnFraction: number };
  trust: { refreshMs: number; bundles: BundleSpec[]; crls: CrlFileSpec[] };
  /** The watched folder of metadata-driven deployment files. */
  templatesDir?: string;
  /** Prometheus text-format file (node_exporter textfile collector). */
  metricsFile?: string;
  certificates: CertificateSpec[];
}

// ---- schema

const duration = z.union([z.string().max(32), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: isMutualError(e) ? (e.fields.detail ?? e.message) : (e as Error).message });
    return z.NEVER;
  }
});

const modeText = z.union([z.string(), z.number()]).transform((v, ctx) => {
  // YAML 1.2 reads 0640 as the decimal 640: a number here is almost always a mistake.
  if (typeof v === 'number' || !/^0?[0-7]{3,4}$/.test(v)) {
    ctx.addIssue({ code: 'custom', message: `write modes as quoted octal strings, e.g. '0640' (got ${JSON.stringify(v)})` });
    return z.NEVER;
  }
  const n = parseInt(v, 8);
  if (n & 0o7000) {
    ctx.addIssue({ code: 'custom', message: 'setuid, setgid and sticky bits are not allowed on managed files' });
    return z.NEVER;
  }
  return n;
});

const command = z.union([
  z.string().min(1).max(4096).transform((shell): CommandSpec => ({ shell })),
  z.array(z.string().max(4096)).min(1).max(64).transform((argv): CommandSpec => ({ argv })),
]);

const SIGNALS = ['SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGWINCH'] as const;
const reload = z.union([
  command,
  z.object({
    signal: z.string().transform((s, ctx) => {
      const name = (s.startsWith('SIG') ? s : `SIG${s}`).toUpperCase();
      if (!(SIGNALS as readonly string[]).includes(name)) {
        ctx.addIssue({ code: 'custom', message: `signal must be one of ${SIGNALS.join(', ')}` });
        return z.NEVER;
      }
      return name as NodeJS.Signals;
    }).default('SIGHUP'),
    pidFile: z.string().min(1).max(4096),
  }).strict(),
]);

const hookFields = {
  check: command.optional(),
  reload: reload.optional(),
  commandTimeout: duration.optional(),
};
const ownershipFields = {
  owner: z.union([z.string().min(1).max(64), z.number().int().min(0)]).optional(),
  group: z.union([z.string().min(1).max(64), z.number().int().min(0)]).optional(),
  mode: modeText.optional(),
};

const filePath = z.string().min(1).max(4096);

const bundleSchema = z.object({
  path: filePath,
  include: z.array(z.enum(['root', 'server-ca', 'client-ca'])).min(1).max(3).optional(),
  ...ownershipFields,
  ...hookFields,
}).strict();

const crlSchema = z.object({
  path: filePath,
  issuers: z.array(z.enum(['root', 'server', 'client'])).min(1).max(3).optional(),
  format: z.enum(['pem', 'der']).default('pem'),
  ...ownershipFields,
  ...hookFields,
}).strict();

const acmeSchema = z.object({
  directory: z.string().url().refine((u) => /^https?:\/\//.test(u), 'the ACME directory must be an http(s) URL'),
  eabKeyId: z.string().min(1).max(1024).optional(),
  eabHmacKeyFile: filePath.optional(),
  challenge: z.union([
    z.object({ type: z.literal('http-01'), listen: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'listen is address:port, e.g. "0.0.0.0:80"') }).strict(),
    z.object({ type: z.literal('http-01'), webroot: filePath }).strict(),
    z.object({ type: z.literal('dns-01'), hook: filePath }).strict(),
  ]),
  ca: filePath.optional(),
}).strict();

const certificateSchema = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'use 1-64 lowercase letters, digits, ".", "-" or "_" (it names a folder)'),
  profile: z.enum(['server', 'client']),
  names: z.array(z.string().min(1).max(253)).max(MAX_SANS).optional(),
  identity: z.string().max(2048).optional(),
  keyType: z.enum(KEY_TYPES).default('p256'),
  newKey: z.boolean().default(true),
  token: z.string().min(1).max(8192).optional(),
  tokenFile: filePath.optional(),
  acme: acmeSchema.optional(),
  files: z.object({
    cert: filePath.optional(),
    key: filePath.optional(),
    chain: filePath.optional(),
    fullchain: filePath.optional(),
    pkcs12: z.object({ path: filePath, passwordFile: filePath }).strict().optional(),
    bundle: z.union([filePath, bundleSchema.omit({ check: true, reload: true, commandTimeout: true, owner: true, group: true, mode: true })]).optional(),
    crl: z.union([filePath, crlSchema.omit({ check: true, reload: true, commandTimeout: true, owner: true, group: true, mode: true })]).optional(),
  }).strict(),
  ...ownershipFields,
  keyMode: modeText.optional(),
  ...hookFields,
  verify: z.object({
    host: z.string().min(1).max(253).default('127.0.0.1'),
    port: z.number().int().min(1).max(65535),
    serverName: z.string().min(1).max(253).optional(),
    timeout: duration.optional(),
  }).strict().optional(),
}).strict();

const manifestSchema = z.object({
  version: z.literal(1).default(1),
  ca: z.object({
    url: z.string().url().refine((u) => u.startsWith('https://'), 'the CA URL must be https://'),
    root: filePath.optional(),
    rootFingerprint: z.string().regex(/^([0-9a-fA-F]{2}:?){31}[0-9a-fA-F]{2}$/, 'a SHA-256 fingerprint: 64 hex digits (colons allowed)').optional(),
  }).strict().optional(),
  stateDir: filePath,
  renewal: z.object({
    fraction: z.number().gt(0).lt(1).default(DEFAULT_RENEW_FRACTION),
    jitter: z.number().min(0).max(0.5).default(DEFAULT_JITTER),
    retryInitial: duration.optional(),
    retryMax: duration.optional(),
    warnFraction: z.number().min(0).lt(1).default(DEFAULT_WARN_FRACTION),
  }).strict().default({ fraction: DEFAULT_RENEW_FRACTION, jitter: DEFAULT_JITTER, warnFraction: DEFAULT_WARN_FRACTION }),
  trust: z.object({
    refresh: duration.optional(),
    bundles: z.array(bundleSchema).max(MAX_TRUST_FILES).default([]),
    crls: z.array(crlSchema).max(MAX_TRUST_FILES).default([]),
  }).strict().optional(),
  templates: z.object({ dir: filePath }).strict().optional(),
  metricsFile: filePath.optional(),
  certificates: z.array(certificateSchema).max(MAX_CERTIFICATES).default([]),
}).strict();

type RawManifest = z.infer<typeof manifestSchema>;
type RawCertificate = z.infer<typeof certificateSchema>;

// ---- users and groups (node has no getpwnam)

/** Looks a user or group name up in /etc/passwd or /etc/group; numbers pass through. Throws CONFIG_INVALID (the detail says which name). */
export function resolveId(kind: 'user' | 'group', v: string | number | undefined, files = { passwd: '/etc/passwd', group: '/etc/group' }): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number') return v;
  if (/^\d+$/.test(v)) return Number(v);
  let text = '';
  try {
    text = fs.readFileSync(kind === 'user' ? files.passwd : files.group, 'utf8');
  } catch {
    // No database: the name cannot be resolved; reported below.
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === v && f.length >= 3 && /^\d+$/.test(f[2])) return Number(f[2]);
  }
  throw new MutualError('CONFIG_INVALID', { detail: `no ${kind} named ${JSON.stringify(v)} on this host` });
}

// ---- loading

const invalid = (field: string, why: string): MutualError => new MutualError('CONFIG_INVALID', { detail: `${field}: ${why}` });

/** Reads and validates agent.yaml (at most {@link MAX_MANIFEST_BYTES}). Throws CONFIG_INVALID naming the file, the field and the line. */
export function loadManifest(file: string): AgentManifest {
  const abs = path.resolve(file);
  const text = readConfigFile(abs, { maxBytes: MAX_MANIFEST_BYTES, missing: () => invalid(abs, 'no such file (pass -c/--config or set MUTUAL_AGENT_CONFIG)') });
  return parseManifest(text, abs);
}

/** Validates manifest text; relative paths are resolved against the manifest's folder. */
export function parseManifest(text: string, file: string): AgentManifest {
  const yaml = parseConfigYaml(text, file);
  const raw = yaml.value;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new MutualError('CONFIG_INVALID', { detail: `${file}: expected a mapping with ca, stateDir and certificates` });
  const m = parseConfigValue(manifestSchema, raw, yaml);
  try {
    return resolve(m, file, raw as Record<string, unknown>);
  } catch (e) {
    if (isMutualError(e)) throw new MutualError('CONFIG_INVALID', { detail: `${file}: ${e.fields.detail ?? e.message}` });
    throw e;
  }
}

function resolve(m: RawManifest, file: string, raw: Record<string, unknown>): AgentManifest {
  const base = path.dirname(file);
  const abs = (p: string) => path.resolve(base, p);
  const at = (p: PropertyKey[]) => configFieldPath(p, raw);
  const own = (o: { owner?: string | number; group?: string | number; mode?: number }, where: PropertyKey[], defMode: number): Ownership => {
    try {
      return { uid: resolveId('user', o.owner), gid: resolveId('group', o.group), mode: o.mode ?? defMode };
    } catch (e) {
      throw invalid(at(where), (e as MutualError).fields.detail!);
    }
  };
  const hooks = (o: { check?: CommandSpec; reload?: ReloadSpec; commandTimeout?: number }): HookSpec => ({
    check: o.check,
    reload: o.reload && ('pidFile' in o.reload ? { ...o.reload, pidFile: abs(o.reload.pidFile) } : o.reload),
    timeoutMs: o.commandTimeout ?? DEFAULT_COMMAND_TIMEOUT_MS,
  });
  if (!m.ca) {
    if (!m.certificates.length || m.certificates.some((c) => !c.acme)) throw invalid('ca', 'give the mutual CA (url and root), or an acme: section in every certificate');
  } else {
    if (!m.ca.root && !m.ca.rootFingerprint && m.certificates.every((c) => !c.token && !c.tokenFile)) {
      throw invalid('ca', 'pin the CA root: give ca.root (a PEM file) or ca.rootFingerprint (SHA-256), or a token that names it');
    }
    if (m.ca.root && m.ca.rootFingerprint) throw invalid('ca', 'give ca.root or ca.rootFingerprint, not both');
  }

  const retryInitialMs = m.renewal.retryInitial ?? DEFAULT_RETRY_INITIAL_MS;
  const retryMaxMs = m.renewal.retryMax ?? Math.max(DEFAULT_RETRY_MAX_MS, retryInitialMs);
  if (retryInitialMs < 100 || retryMaxMs < retryInitialMs) throw invalid('renewal', 'need 100ms <= retryInitial <= retryMax');
  if (m.renewal.fraction - m.renewal.jitter / 2 <= 0 || m.renewal.fraction + m.renewal.jitter / 2 >= 1) {
    throw invalid('renewal', 'fraction +- jitter/2 must stay inside (0, 1)');
  }
  if (m.renewal.warnFraction >= 1 - m.renewal.fraction) throw invalid('renewal.warnFraction', `must be below 1 - fraction (${(1 - m.renewal.fraction).toFixed(3)})`);

  const bundles: BundleSpec[] = [];
  const crls: CrlFileSpec[] = [];
  (m.trust?.bundles ?? []).forEach((b, i) => bundles.push({
    source: `trust.bundles[${i}]`, path: abs(b.path), include: b.include ?? ['root'], ownership: own(b, ['trust', 'bundles', i], 0o644), hooks: hooks(b),
  }));
  (m.trust?.crls ?? []).forEach((c, i) => crls.push({
    source: `trust.crls[${i}]`, path: abs(c.path), issuers: c.issuers ?? ['root', 'client'], format: c.format, ownership: own(c, ['trust', 'crls', i], 0o644), hooks: hooks(c),
  }));

  const seen = new Set<string>();
  const certificates = m.certificates.map((c, i) => {
    const where = ['certificates', i];
    if (seen.has(c.name)) throw invalid(at([...where, 'name']), `another certificate is already named ${c.name}`);
    seen.add(c.name);
    const spec = certificate(c, at(where), abs, own(c, where, 0o644), hooks(c));
    // Trust files declared beside a certificate follow its owner and hooks.
    const f = c.files;
    if (f.bundle !== undefined) {
      const b = typeof f.bundle === 'string' ? { path: f.bundle } : f.bundle;
      bundles.push({ source: `${at(where)}.files.bundle`, path: abs(b.path), include: b.include ?? (c.profile === 'server' ? ['root', 'client-ca'] : ['root', 'server-ca']), ownership: { ...spec.ownership }, hooks: spec.hooks });
    }
    if (f.crl !== undefined) {
      const x = typeof f.crl === 'string' ? { path: f.crl, format: 'pem' as const } : f.crl;
      crls.push({ source: `${at(where)}.files.crl`, path: abs(x.path), issuers: x.issuers ?? ['root', c.profile === 'server' ? 'client' : 'server'], format: x.format, ownership: { ...spec.ownership }, hooks: spec.hooks });
    }
    return spec;
  });
  if (!m.ca && bundles.length + crls.length) throw invalid((bundles[0] ?? crls[0]).source, 'trust files come from the mutual CA: give ca: (url and root)');
  for (const c of crls) {
    if (c.format === 'der' && c.issuers.length !== 1) throw invalid(c.source, 'a DER file holds one CRL: name one issuer, or use format: pem');
  }

  // Two writers of one path would fight; the state folder is the agent's own.
  const stateDir = abs(m.stateDir);
  const owners = new Map<string, string>();
  const claim = (p: string | undefined, who: string) => {
    if (p === undefined) return;
    if (p === stateDir || p.startsWith(stateDir + path.sep)) throw invalid(who, `${p} is inside stateDir; targets live outside it`);
    const prev = owners.get(p);
    if (prev) throw invalid(who, `${p} is also written by ${prev}`);
    owners.set(p, who);
  };
  for (const c of certificates) {
    const who = `certificates (${c.name}).files`;
    claim(c.files.cert, who);
    claim(c.files.key, who);
    claim(c.files.chain, who);
    claim(c.files.fullchain, who);
    claim(c.files.pkcs12?.path, who);
  }
  for (const b of bundles) claim(b.path, b.source);
  for (const c of crls) claim(c.path, c.source);

  return {
    file,
    ca: m.ca && { url: m.ca.url.replace(/\/+$/, ''), rootFile: m.ca.root && abs(m.ca.root), rootFingerprint: m.ca.rootFingerprint?.replace(/:/g, '').toLowerCase() },
    stateDir,
    renewal: { fraction: m.renewal.fraction, jitter: m.renewal.jitter, retryInitialMs, retryMaxMs, warnFraction: m.renewal.warnFraction },
    trust: { refreshMs: m.trust?.refresh ?? DEFAULT_TRUST_REFRESH_MS, bundles, crls },
    templatesDir: m.templates && abs(m.templates.dir),
    metricsFile: m.metricsFile && abs(m.metricsFile),
    certificates,
  };
}

const IP_RE = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)$/;
const DNS_RE = /^(\*\.)?([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?)(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?)*\.?$/;

function certificate(c: RawCertificate, where: string, abs: (p: string) => string, ownership: Ownership, hooks: HookSpec): CertificateSpec {
  const names: SubjectAltNames = { dns: [], ip: [], uri: [] };
  if (c.profile === 'server') {
    if (c.identity) throw invalid(`${where}.identity`, 'a server certificate carries DNS/IP names, not an identity (use profile: client)');
    if (!c.names?.length) throw invalid(`${where}.names`, 'a server certificate needs at least one DNS name or IP address');
    for (const n of c.names) {
      if (IP_RE.test(n)) names.ip.push(n);
      else if (DNS_RE.test(n)) names.dns.push(n.toLowerCase());
      else throw invalid(`${where}.names`, `${JSON.stringify(n)} is neither a DNS name nor an IP address`);
    }
  } else {
    if (c.names?.length) throw invalid(`${where}.names`, 'a client certificate carries one identity (spiffe://...), not DNS names');
    if (!c.identity) throw invalid(`${where}.identity`, 'a client certificate needs identity: spiffe://<trust-domain>/<env>/<service>');
    try {
      names.uri.push(parseSpiffeId(c.identity).uri);
    } catch (e) {
      throw invalid(`${where}.identity`, (e as MutualError).fields?.detail ?? String(e));
    }
  }
  if (c.token && c.tokenFile) throw invalid(where, 'give token or tokenFile, not both');
  if (c.acme && (c.token || c.tokenFile)) throw invalid(`${where}.acme`, 'an ACME certificate needs no token: give acme or token/tokenFile, not both');
  if (c.acme && c.profile !== 'server') throw invalid(`${where}.acme`, 'ACME issues server certificates (DNS names, IP addresses): use profile: server');
  if (c.acme && !!c.acme.eabKeyId !== !!c.acme.eabHmacKeyFile) throw invalid(`${where}.acme`, 'give eabKeyId and eabHmacKeyFile together');
  const f = c.files;
  const files: CertificateFiles = {
    cert: f.cert && abs(f.cert), key: f.key && abs(f.key), chain: f.chain && abs(f.chain), fullchain: f.fullchain && abs(f.fullchain),
    pkcs12: f.pkcs12 && { path: abs(f.pkcs12.path), passwordFile: abs(f.pkcs12.passwordFile) },
  };
  if (!files.cert && !files.fullchain && !files.pkcs12) throw invalid(`${where}.files`, 'write at least cert, fullchain or pkcs12');
  if (!files.key && !files.pkcs12) throw invalid(`${where}.files.key`, 'the key must go somewhere: give files.key (or files.pkcs12)');
  const verify = c.verify && {
    host: c.verify.host, port: c.verify.port, serverName: c.verify.serverName ?? names.dns[0], timeoutMs: c.verify.timeout ?? DEFAULT_VERIFY_TIMEOUT_MS,
  };
  return {
    name: c.name, profile: c.profile, names, keyType: c.keyType, newKey: c.newKey, token: c.token, tokenFile: c.tokenFile && abs(c.tokenFile), acme: c.acme && acmeSpec(c.acme, abs),
    files, ownership, keyMode: c.keyMode ?? 0o600, hooks, verify,
  };
}

/** The resolved acme: section (absolute paths, the listen address split). */
function acmeSpec(a: NonNullable<RawCertificate['acme']>, abs: (p: string) => string): AcmeSpec {
  const ch = a.challenge;
  let challenge: AcmeChallengeSpec;
  if ('listen' in ch) {
    const i = ch.listen.lastIndexOf(':');
    challenge = { type: 'http-01', listen: { host: ch.listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(ch.listen.slice(i + 1)) } };
  } else if ('webroot' in ch) challenge = { type: 'http-01', webroot: abs(ch.webroot) };
  else challenge = { type: 'dns-01', hook: abs(ch.hook) };
  return { directory: a.directory, eabKeyId: a.eabKeyId, eabHmacKeyFile: a.eabHmacKeyFile && abs(a.eabHmacKeyFile), challenge, caFile: a.ca && abs(a.ca) };
}
