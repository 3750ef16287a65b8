/**
 * The monitor's configuration (YAML, validated with zod): what to watch, when to warn, whom to
 * tell, where to keep the dedupe state and metrics. Like the CA's config it holds no secrets: the
 * SMTP password comes from a file or the environment. Relative paths are resolved against the
 * config file's folder. See docs/monitor.md for an annotated example.
 */
import path from 'node:path';
import { z } from 'zod';
import { parseDuration } from '../core/duration.ts';
import { MutualError, isMutualError } from '../core/errors.ts';
import { configDir, configInvalid, loadConfigFile, parseConfigValue, type ConfigYaml } from '../io/index.ts';

/** Largest monitor config read. */
export const MAX_MONITOR_CONFIG_BYTES = 1024 * 1024;
/** Most endpoints one config may list (probing is bounded by `concurrency` anyway). */
export const MAX_ENDPOINTS = 100_000;
/** Most file sources, CRL sources and webhooks. */
export const MAX_LIST_ENTRIES = 1000;
/** The default expiry thresholds, in days: an alert as each is crossed. */
export const DEFAULT_THRESHOLDS_DAYS = [30, 14, 7, 1] as const;
/** The default thresholds for CA certificates (intermediates live 2 years; replacing one takes a ceremony). */
export const DEFAULT_CA_THRESHOLDS_DAYS = [90, 60, 30, 14, 7] as const;

/** A duration in the one grammar of core/duration.ts (`500ms`, `5s`, `10m`, `1h`, `30d`), kept as text. */
const duration = z.string().max(32).superRefine((v, ctx) => {
  try {
    parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: isMutualError(e) ? (e.fields.detail ?? e.message) : String(e) });
  }
});
const hostPort = z.string().max(300).regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/, 'use host:port ([v6]:port for IPv6)');
const days = z.array(z.number().positive().max(3650)).min(1).max(16);

const filesSource = z.object({
  /** A certificate file (PEM, DER, PKCS#12) or a folder of them. */
  path: z.string().min(1),
  /** Descend into sub-folders (default true). */
  recursive: z.boolean().default(true),
  /** File holding the password of PKCS#12 files (.p12, .pfx) under this path. */
  passwordFile: z.string().optional(),
}).strict();

const endpointSource = z.object({
  /** host:port to connect to. */
  address: hostPort,
  /** SNI and the name the certificate must carry (default: the host of `address`). */
  servername: z.string().max(253).optional(),
  /** Trust bundle (PEM) the server's chain must lead to (default: the CA's root from sources.inventory.home). */
  ca: z.string().optional(),
  /** Client certificate and key (PEM) for mTLS endpoints. */
  cert: z.string().optional(),
  key: z.string().optional(),
  /** Bound on connect + handshake (default 5s). */
  timeout: duration.default('5s'),
}).strict().refine((e) => Boolean(e.cert) === Boolean(e.key), { message: 'cert and key go together' });

const crlSource = z.object({
  /** http(s) URL of a CRL (e.g. https://ca.internal:8443/crl/root.crl). */
  url: z.string().url().optional(),
  /** Or a CRL file (DER or PEM). */
  file: z.string().optional(),
  /** For https URLs: the trust bundle (PEM). */
  ca: z.string().optional(),
  /** Bound on the download (default 10s). */
  timeout: duration.default('10s'),
}).strict().refine((c) => Boolean(c.url) !== Boolean(c.file), { message: 'give exactly one of url and file' });

const email = z.object({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(587),
  /** `starttls` (default: upgrade and refuse if the server cannot), `implicit` (TLS from the start, port 465) or `none`. */
  tls: z.enum(['starttls', 'implicit', 'none']).default('starttls'),
  /** Trust bundle (PEM) for the SMTP server's certificate (default: the system's). */
  ca: z.string().optional(),
  /** Default true. Turning it off is for tests only. */
  rejectUnauthorized: z.boolean().default(true),
  auth: z.object({
    user: z.string().min(1),
    /** File holding the password. */
    passwordFile: z.string().optional(),
    /** Environment variable holding the password (default MUTUAL_SMTP_PASSWORD). */
    passwordEnv: z.string().default('MUTUAL_SMTP_PASSWORD'),
  }).strict().optional(),
  from: z.string().min(3),
  to: z.array(z.string().min(3)).min(1).max(100),
  subjectPrefix: z.string().max(64).default('[mutual]'),
  timeout: duration.default('15s'),
}).strict();

const webhook = z.object({
  /** URL to POST to; or `urlEnv` naming an environment variable that holds it (Slack URLs are secrets). */
  url: z.string().url().optional(),
  urlEnv: z.string().optional(),
  /** `json` (mutual's own payload) or `slack` (`{text, blocks}`, also understood by Mattermost and Rocket.Chat). */
  format: z.enum(['json', 'slack']).default('json'),
  headers: z.record(z.string(), z.string()).default({}),
  /** Trust bundle (PEM) for an https URL (default: the system's). */
  ca: z.string().optional(),
  timeout: duration.default('10s'),
  /** Name in the state file and logs (default webhook-N). */
  name: z.string().max(64).optional(),
}).strict().refine((w) => Boolean(w.url) !== Boolean(w.urlEnv), { message: 'give exactly one of url and urlEnv' });

/** The schema of the monitor's YAML config. */
export const MonitorConfigSchema = z.object({
  /** Days before expiry at which an alert is sent, once each (default 30, 14, 7, 1). */
  thresholdsDays: days.default([...DEFAULT_THRESHOLDS_DAYS]),
  /** Thresholds for CA certificates (default 90, 60, 30, 14, 7). */
  caThresholdsDays: days.default([...DEFAULT_CA_THRESHOLDS_DAYS]),
  /** Expiring within this many days is critical; before that, a warning (default 7). */
  criticalDays: z.number().min(0).max(3650).default(7),
  /** Inventory certificates that expired longer ago than this are history, not findings (default 30). */
  expiredLookbackDays: z.number().int().min(0).max(3650).default(30),
  /** A CRL with less than this fraction of its lifetime left is about to go stale (default 0.25). */
  crlWarnFraction: z.number().gt(0).lt(1).default(0.25),
  /** Where alert dedupe state is kept (default monitor-state.json beside the config). */
  stateFile: z.string().optional(),
  /** Endpoints probed at once (default 32). */
  concurrency: z.number().int().min(1).max(1000).default(32),
  schedule: z.object({
    /** Interval of `mutual monitor run` (default 1h; at least 10s). */
    every: duration.default('1h'),
  }).strict().prefault({}),
  sources: z.object({
    inventory: z.object({
      /** The CA's state folder: its inventory, CA certificates and CRLs. */
      home: z.string().optional(),
      /** `postgres://...` when the inventory is shared (else the SQLite file in `home`). */
      databaseUrl: z.string().optional(),
      databaseSchema: z.string().optional(),
    }).strict().refine((i) => i.home || i.databaseUrl, { message: 'give home or databaseUrl' }).optional(),
    files: z.array(filesSource).max(MAX_LIST_ENTRIES).default([]),
    endpoints: z.array(endpointSource).max(MAX_ENDPOINTS).default([]),
    crls: z.array(crlSource).max(MAX_LIST_ENTRIES).default([]),
    /**
     * The CA's roots during a root rollover: its base URL (GET /roots.json), with `ca` the trust
     * for https. Default: the CA home's ca/roots.pem when sources.inventory.home is set.
     */
    roots: z.object({ url: z.string().url(), ca: z.string().optional(), timeout: duration.default('10s') }).strict().optional(),
  }).strict().prefault({}),
  alerts: z.object({
    /** Least severity that is alerted (default warning). */
    minSeverity: z.enum(['warning', 'critical']).default('warning'),
    email: email.optional(),
    webhooks: z.array(webhook).max(MAX_LIST_ENTRIES).default([]),
    /** A daily summary of every open finding, sent on the first run after `at` (UTC, HH:MM). */
    digest: z.object({
      at: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'use HH:MM (UTC)').default('08:00'),
      /** Send it even when there is nothing to report (default true: silence then means the monitor is down). */
      whenHealthy: z.boolean().default(true),
    }).strict().optional(),
    /** Also tell when a finding that was alerted has gone (default false). */
    resolved: z.boolean().default(false),
  }).strict().prefault({}),
  metrics: z.object({
    /** node_exporter textfile to write after each scan. */
    textfile: z.string().optional(),
    /** host:port to serve /metrics on in `monitor run`. */
    listen: hostPort.optional(),
    /**
     * Inventory certificates get a per-certificate expiry series only when they expire within the
     * largest threshold (or expired within the lookback); the rest are counted. This caps those
     * series (default 10,000) so a failing renewal job cannot flood Prometheus.
     */
    maxInventorySeries: z.number().int().min(0).max(1_000_000).default(10_000),
  }).strict().prefault({}),
}).strict();

export type MonitorConfig = z.infer<typeof MonitorConfigSchema>;
export type EndpointSourceConfig = MonitorConfig['sources']['endpoints'][number];
export type FilesSourceConfig = MonitorConfig['sources']['files'][number];
export type CrlSourceConfig = MonitorConfig['sources']['crls'][number];
export type EmailConfig = NonNullable<MonitorConfig['alerts']['email']>;
export type WebhookConfig = MonitorConfig['alerts']['webhooks'][number];

/** Shortest `schedule.every` accepted. */
export const MIN_SCHEDULE_MS = 10_000;

/**
 * Validates a config object; `baseDir` resolves relative paths (default: the working folder).
 * Throws CONFIG_INVALID naming the field.
 */
export function validateMonitorConfig(raw: unknown, baseDir = process.cwd(), yaml?: ConfigYaml): MonitorConfig {
  // An empty file is a config of defaults.
  const c = parseConfigValue(MonitorConfigSchema, raw ?? {}, yaml);
  if (parseDuration(c.schedule.every) < MIN_SCHEDULE_MS) throw configInvalid(yaml, ['schedule', 'every'], `at least ${MIN_SCHEDULE_MS / 1000}s`, raw);
  const abs = (p: string | undefined) => (p === undefined ? undefined : path.resolve(baseDir, p));
  c.thresholdsDays = [...new Set(c.thresholdsDays)].sort((a, b) => b - a);
  c.caThresholdsDays = [...new Set(c.caThresholdsDays)].sort((a, b) => b - a);
  c.stateFile = abs(c.stateFile) ?? path.resolve(baseDir, 'monitor-state.json');
  const inv = c.sources.inventory;
  if (inv?.home) inv.home = abs(inv.home);
  for (const f of c.sources.files) Object.assign(f, { path: abs(f.path), passwordFile: abs(f.passwordFile) });
  for (const e of c.sources.endpoints) Object.assign(e, { ca: abs(e.ca), cert: abs(e.cert), key: abs(e.key) });
  for (const l of c.sources.crls) Object.assign(l, { file: abs(l.file), ca: abs(l.ca) });
  if (c.sources.roots) c.sources.roots.ca = abs(c.sources.roots.ca);
  if (c.alerts.email) {
    c.alerts.email.ca = abs(c.alerts.email.ca);
    if (c.alerts.email.auth) c.alerts.email.auth.passwordFile = abs(c.alerts.email.auth.passwordFile);
  }
  for (const w of c.alerts.webhooks) w.ca = abs(w.ca);
  c.metrics.textfile = abs(c.metrics.textfile);
  return c;
}

/** Reads and validates a monitor config file (at most {@link MAX_MONITOR_CONFIG_BYTES}). Throws CONFIG_INVALID. */
export function readMonitorConfig(file: string): MonitorConfig {
  return loadConfigFile(file, { maxBytes: MAX_MONITOR_CONFIG_BYTES, validate: (raw, yaml) => validateMonitorConfig(raw, configDir(file), yaml) });
}

/** Splits `host:port` / `[v6]:port`; port 0 (any free port) only for listening. */
export function splitAddress(address: string, listen = false): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < (listen ? 0 : 1) || port > 65535) throw new MutualError('CONFIG_INVALID', { detail: `address ${JSON.stringify(address)}: use host:port` });
  return { host: m[1] ?? m[2], port };
}
