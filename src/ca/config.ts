/**
 * The CA's configuration: `config.yaml` in the state folder. It holds no secrets (passphrases come
 * from the environment, a file or a prompt), and is validated with clear, coded errors.
 */
import { stringify as stringifyYaml } from 'yaml';
import { z } from 'zod';
import { isMutualError } from '../core/errors.ts';
import { KEY_TYPES } from '../core/algorithms.ts';
import { checkTrustDomain } from '../core/identity.ts';
import { parseDuration } from '../core/duration.ts';
import { loadConfigFile, parseConfigValue, type ConfigYaml } from '../io/index.ts';
import { keysSection } from './keys-config.ts';

/** Largest config file read. */
export const MAX_CONFIG_BYTES = 256 * 1024;

/** Shortest certificate lifetime a profile may set (the authority's MIN_CERT_LIFETIME_SECONDS: 5 minutes). */
const MIN_PROFILE_SECONDS = 300;
/** Longest certificate lifetime a profile may set: 3650 days, as `maxDays`. */
const MAX_PROFILE_SECONDS = 3650 * 86_400;

/** A duration (`10s`, `1h`) between `min` and `max` milliseconds; `range` says them as a person would. */
const durationBetween = (min: number, max: number, range = `${min / 1000}s to ${max / 1000}s`) => z.string().max(16).superRefine((v, ctx) => {
  let ms: number;
  try {
    ms = parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: isMutualError(e) ? (e.fields.detail ?? e.message) : String(e) });
    return;
  }
  if (ms < min || ms > max) ctx.addIssue({ code: 'custom', message: `${v} is outside ${range}` });
});

/** A lifetime written as a duration (`15m`, `8h`, `90d`), 5 minutes to 3650 days. */
const lifetime = durationBetween(MIN_PROFILE_SECONDS * 1000, MAX_PROFILE_SECONDS * 1000, '5m to 3650d');

const profile = z.object({
  /** Default lifetime in days. */
  defaultDays: z.number().int().min(1).max(3650).default(90),
  /** Longest lifetime a request may ask for, in days. */
  maxDays: z.number().int().min(1).max(3650).default(397),
  /** Default lifetime as a duration (`8h`, `15m`, `90d`); wins over defaultDays. */
  defaultLifetime: lifetime.optional(),
  /** Longest lifetime as a duration; wins over maxDays. */
  maxLifetime: lifetime.optional(),
}).strict().refine((p) => profileLifetimes(p).defaultSeconds <= profileLifetimes(p).maxSeconds, { message: 'the default lifetime must not exceed the maximum' });

/** A profile's default and longest certificate lifetimes, in seconds. */
export function profileLifetimes(p: { defaultDays: number; maxDays: number; defaultLifetime?: string; maxLifetime?: string }): { defaultSeconds: number; maxSeconds: number } {
  return {
    defaultSeconds: p.defaultLifetime !== undefined ? parseDuration(p.defaultLifetime) / 1000 : p.defaultDays * 86_400,
    maxSeconds: p.maxLifetime !== undefined ? parseDuration(p.maxLifetime) / 1000 : p.maxDays * 86_400,
  };
}

/** A PostgreSQL connection URL's scheme (the only database besides the embedded SQLite file). */
export const POSTGRES_URL = /^postgres(ql)?:\/\//;

/** An unquoted PostgreSQL schema name (the PostgreSQL store refuses anything else). */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Whether a database URL carries a password (in its user info or as a `password` parameter). */
export function urlHasPassword(url: string): boolean {
  try {
    const u = new URL(url);
    return u.password !== '' || u.searchParams.has('password');
  } catch {
    return false;
  }
}

/**
 * Where the inventory lives when it is not the SQLite file in the state folder. config.yaml holds
 * no secrets, so the URL holds no password: PostgreSQL's own PGPASSWORD or ~/.pgpass give it, or
 * the whole URL comes from MUTUAL_DATABASE_URL instead.
 */
const database = z.object({
  /** `postgres://user@host:5432/db`. */
  url: z.string().max(2048).regex(POSTGRES_URL, 'must be a postgres:// or postgresql:// URL')
    .refine((u) => !urlHasPassword(u), 'must not hold a password (config.yaml holds no secrets): use PGPASSWORD, ~/.pgpass or MUTUAL_DATABASE_URL'),
  /** PostgreSQL schema. Default public. */
  schema: z.string().regex(SCHEMA_NAME, 'must be a lowercase PostgreSQL identifier').optional(),
}).strict();


/** A DNS server as `host:port` (IPv6 in brackets: `[::1]:53`). */
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

/** The ACME challenge types, all enabled by default. */
export const ACME_CHALLENGE_TYPES = ['http-01', 'dns-01', 'tls-alpn-01'] as const;

/** ACME (RFC 8555) on `mutual serve`: docs/acme.md documents each field and its default. */
const acme = z.object({
  enabled: z.boolean().default(false),
  externalAccountRequired: z.boolean().default(false),
  termsOfService: z.string().url().max(2048).optional(),
  website: z.string().url().max(2048).optional(),
  caaIdentities: z.array(z.string().max(253)).max(16).default([]),
  challenges: z.array(z.enum(ACME_CHALLENGE_TYPES)).min(1).max(3).default([...ACME_CHALLENGE_TYPES]),
  certificateLifetime: lifetime.default('24h'),
  orderLifetime: durationBetween(60_000, 7 * 86_400_000).default('1h'),
  authorizationLifetime: durationBetween(60_000, 30 * 86_400_000).default('8h'),
  ordersPerHour: z.number().int().min(1).max(1_000_000).default(300),
  httpPort: z.number().int().min(1).max(65_535).default(80),
  tlsAlpnPort: z.number().int().min(1).max(65_535).default(443),
  dns: z.object({ servers: z.array(z.string().max(300).regex(HOST_PORT, 'must be host:port')).max(8).optional() }).strict().default({}),
  validationTimeout: durationBetween(100, 120_000).default('10s'),
}).strict();

/** The `acme:` section of config.yaml, defaults applied. */
export type AcmeConfig = z.infer<typeof acme>;

/** A config's ACME settings: its `acme:` section, or every default (ACME disabled) when there is none. */
export function acmeConfig(c: Pick<CaConfig, 'acme'>): AcmeConfig {
  return c.acme ?? acme.parse({});
}

/** The schema of config.yaml. */
export const ConfigSchema = z.object({
  trustDomain: z.string().min(1).max(255),
  name: z.string().min(1).max(64),
  policy: z.object({
    permitDns: z.array(z.string().max(253)).max(100).default([]),
    permitIp: z.array(z.string().max(64)).max(100).default([]),
  }).strict().default({ permitDns: [], permitIp: [] }),
  /** Public base URL written into certificates' CRL Distribution Points and AIA (`mutual serve --url`). */
  url: z.string().url().optional(),
  profiles: z.object({
    server: profile.default({ defaultDays: 90, maxDays: 397 }),
    client: profile.default({ defaultDays: 90, maxDays: 397 }),
  }).strict().default({ server: { defaultDays: 90, maxDays: 397 }, client: { defaultDays: 90, maxDays: 397 } }),
  keyTypes: z.object({
    root: z.enum(KEY_TYPES).default('p384'),
    intermediate: z.enum(KEY_TYPES).default('p256'),
    leaf: z.enum(KEY_TYPES).default('p256'),
  }).strict().default({ root: 'p384', intermediate: 'p256', leaf: 'p256' }),
  /** The shared inventory (PostgreSQL); absent: the SQLite file `mutual.db` in the state folder. */
  database: database.optional(),
  /** ACME; absent: disabled. */
  acme: acme.optional(),
  /** Where the CA's keys are made (keys-config.ts); absent: encrypted files, responder keys in memory. */
  keys: keysSection.optional(),
}).strict();

export type CaConfig = z.infer<typeof ConfigSchema>;

/** Validates a config object (`yaml`: where it was read from, for messages); throws CONFIG_INVALID naming the field. */
export function validateConfig(raw: unknown, yaml?: ConfigYaml): CaConfig {
  const c = parseConfigValue(ConfigSchema, raw, yaml);
  checkTrustDomain(c.trustDomain);
  return c;
}

/**
 * Reads and validates config.yaml (at most {@link MAX_CONFIG_BYTES}). Throws CONFIG_INVALID
 * naming the file, field and line; a missing file is the system's ENOENT (callers report
 * CA_NOT_INITIALIZED).
 */
export function readConfig(path: string): CaConfig {
  return loadConfigFile(path, { maxBytes: MAX_CONFIG_BYTES, missing: (e) => e, validate: validateConfig });
}

/** Renders a config as YAML with a header comment. */
export function renderConfig(c: CaConfig): string {
  return `# mutual CA configuration. No secrets here: passphrases come from MUTUAL_CA_PASSPHRASE,\n# --passphrase-file or a prompt.\n${stringifyYaml(c)}`;
}
