/**
 * `pkcs11:` URIs (RFC 7512): which module, token and key a key reference or a key store names.
 * The URI comes from config and key reference files, so it is read strictly: every attribute once,
 * known names only (vendor `x-` names pass), percent-encoding well formed, text values UTF-8, and a
 * length limit. The one attribute refused although RFC 7512 has it is `pin-value`: it would put the
 * PIN in the config, the state folder and every log line that quotes the URI.
 */
import { isAbsolute } from 'node:path';
import { MutualError } from '../../core/errors.ts';

/** Longest URI read (RFC 7512 sets none); a key reference is ~200 bytes. */
export const MAX_PKCS11_URI_LENGTH = 2048;

/** Path attributes (RFC 7512 2.3), in the order they are written back. */
const PATH_ATTRIBUTES = [
  'token', 'manufacturer', 'serial', 'model', 'library-manufacturer', 'library-description', 'library-version',
  'slot-manufacturer', 'slot-description', 'slot-id', 'object', 'type', 'id',
] as const;
type PathAttribute = (typeof PATH_ATTRIBUTES)[number];

/** Object classes `type=` may name (RFC 7512 2.3). */
const OBJECT_TYPES = new Set(['public', 'private', 'cert', 'secret-key', 'data']);

/** Query attributes (RFC 7512 2.4) that mutual reads; `pin-value` is refused. */
const QUERY_ATTRIBUTES = ['module-path', 'module-name', 'pin-source'] as const;

/** mutual's vendor query attribute: how an RSA key signs (default PKCS#1 v1.5). */
const RSA_ATTRIBUTE = 'x-mutual-rsa';

/** A parsed `pkcs11:` URI. Text values are decoded; `id` is bytes. */
export interface Pkcs11Uri {
  /** Path attributes other than id, decoded. */
  path: Partial<Record<Exclude<PathAttribute, 'id'>, string>>;
  /** CKA_ID, the raw bytes. */
  id?: Buffer;
  /** The module's absolute file (module-path). */
  modulePath?: string;
  moduleName?: string;
  /** Where the PIN comes from (pin-source): `file:/abs`, `/abs`, `env:NAME`, `credential:NAME`. */
  pinSource?: string;
  /** RSA signature scheme (x-mutual-rsa); absent means PKCS#1 v1.5. */
  rsa?: 'pss' | 'pkcs1';
  /** Other vendor attributes (`x-...`), kept as written (still encoded) so that format gives them back. */
  vendorPath: string[];
  vendorQuery: string[];
}

function invalid(detail: string): never {
  throw new MutualError('PKCS11_URI_INVALID', { detail });
}

/** Characters that may stand unencoded in a value (RFC 7512 2.3 pk11-pchar, plus "/" "?" "|" in a query). */
const PATH_CHAR = /^[A-Za-z0-9\-._~:[\]@!$'()*+,=&]$/;
const QUERY_CHAR = /^[A-Za-z0-9\-._~:[\]@!$'()*+,=/?|;]$/;

/** Percent-decodes `v` to bytes, refusing a broken escape or a character RFC 7512 does not allow there. */
function decodeBytes(v: string, allowed: RegExp, name: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (c === '%') {
      const hex = v.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) invalid(`${name}: "%" must start an escape of two hex digits`);
      out.push(parseInt(hex, 16));
      i += 2;
    } else if (allowed.test(c)) out.push(c.charCodeAt(0));
    else invalid(`${name}: the character ${JSON.stringify(c)} must be percent-encoded`);
  }
  return Buffer.from(out);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
function decodeText(v: string, allowed: RegExp, name: string): string {
  try {
    return utf8.decode(decodeBytes(v, allowed, name));
  } catch (e) {
    if (e instanceof MutualError) throw e;
    return invalid(`${name} is not UTF-8`);
  }
}

/**
 * Parses a `pkcs11:` URI (RFC 7512).
 * @throws MutualError `PKCS11_URI_INVALID`: over {@link MAX_PKCS11_URI_LENGTH}, not `pkcs11:`, an
 *   attribute twice, an unknown attribute (other than `x-...`), a bad escape, `pin-value`, a
 *   relative `module-path`, an unknown `type` or `x-mutual-rsa`.
 */
export function parsePkcs11Uri(text: string): Pkcs11Uri {
  if (typeof text !== 'string') throw new TypeError('parsePkcs11Uri needs a string');
  if (text.length > MAX_PKCS11_URI_LENGTH) invalid(`it has ${text.length} characters; the limit is ${MAX_PKCS11_URI_LENGTH}`);
  if (!/^pkcs11:/i.test(text)) invalid('it does not start with "pkcs11:"');
  const rest = text.slice('pkcs11:'.length);
  const q = rest.indexOf('?');
  const pathPart = q < 0 ? rest : rest.slice(0, q);
  const queryPart = q < 0 ? '' : rest.slice(q + 1);
  const uri: Pkcs11Uri = { path: {}, vendorPath: [], vendorQuery: [] };
  const seen = new Set<string>();
  const pairs = (part: string, sep: string): [string, string][] =>
    part === '' ? [] : part.split(sep).map((a) => {
      const eq = a.indexOf('=');
      if (eq <= 0) invalid(`attribute ${JSON.stringify(a.slice(0, 40))} has no name=value form`);
      const name = a.slice(0, eq).toLowerCase();
      if (seen.has(name)) invalid(`attribute ${name} appears twice`);
      seen.add(name);
      return [name, a.slice(eq + 1)];
    });
  for (const [name, value] of pairs(pathPart, ';')) {
    if (name === 'id') uri.id = decodeBytes(value, PATH_CHAR, name);
    else if ((PATH_ATTRIBUTES as readonly string[]).includes(name)) uri.path[name as Exclude<PathAttribute, 'id'>] = decodeText(value, PATH_CHAR, name);
    else if (name.startsWith('x-')) uri.vendorPath.push(`${name}=${value}`);
    else invalid(`unknown path attribute ${name}`);
  }
  for (const [name, value] of pairs(queryPart, '&')) {
    if (name === 'pin-value') invalid('pin-value puts the PIN in the config; use pin-source (file:, env: or credential:)');
    const v = name === RSA_ATTRIBUTE || (QUERY_ATTRIBUTES as readonly string[]).includes(name) ? decodeText(value, QUERY_CHAR, name) : '';
    if (name === 'module-path') {
      if (!isAbsolute(v)) invalid('module-path must be an absolute path');
      uri.modulePath = v;
    } else if (name === 'module-name') uri.moduleName = v;
    else if (name === 'pin-source') uri.pinSource = v;
    else if (name === RSA_ATTRIBUTE) {
      if (v !== 'pss' && v !== 'pkcs1') invalid(`${RSA_ATTRIBUTE} must be pss or pkcs1`);
      uri.rsa = v;
    } else if (name.startsWith('x-')) uri.vendorQuery.push(`${name}=${value}`);
    else invalid(`unknown query attribute ${name}`);
  }
  if (uri.path.type !== undefined && !OBJECT_TYPES.has(uri.path.type)) invalid(`type must be one of ${[...OBJECT_TYPES].join(', ')}`);
  return uri;
}

/** Percent-encodes every byte outside `allowed` (and "%"). */
function encode(bytes: Buffer, allowed: RegExp): string {
  let s = '';
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    s += b < 0x80 && c !== '%' && allowed.test(c) ? c : `%${b.toString(16).padStart(2, '0')}`;
  }
  return s;
}

/** Writes a URI back; `id` is always fully percent-encoded (it is bytes). */
export function formatPkcs11Uri(u: Pkcs11Uri): string {
  const path: string[] = [];
  for (const name of PATH_ATTRIBUTES) {
    if (name === 'id') {
      if (u.id) path.push(`id=${[...u.id].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')}`);
      continue;
    }
    const v = u.path[name];
    // ";" and "=" separate attributes; "&" is safe in a path, but encoding it costs nothing.
    if (v !== undefined) path.push(`${name}=${encode(Buffer.from(v, 'utf8'), /^[A-Za-z0-9\-._~:[\]@!$'()*+,]$/)}`);
  }
  path.push(...u.vendorPath);
  const query: string[] = [];
  const q = (name: string, v: string | undefined): void => {
    if (v !== undefined) query.push(`${name}=${encode(Buffer.from(v, 'utf8'), /^[A-Za-z0-9\-._~:[\]@!$'()*+,/|;]$/)}`);
  };
  q('module-name', u.moduleName);
  q('module-path', u.modulePath);
  q('pin-source', u.pinSource);
  q(RSA_ATTRIBUTE, u.rsa);
  query.push(...u.vendorQuery);
  return `pkcs11:${path.join(';')}${query.length ? `?${query.join('&')}` : ''}`;
}

/** The environment variable naming the module when a URI has no module-path. */
export const PKCS11_MODULE_ENV = 'MUTUAL_PKCS11_MODULE';

/**
 * The module a URI loads: its module-path, else {@link PKCS11_MODULE_ENV}.
 * @throws MutualError `PKCS11_URI_INVALID` when neither gives an absolute path.
 */
export function modulePathOf(u: Pkcs11Uri, env: NodeJS.ProcessEnv = process.env): string {
  if (u.modulePath !== undefined) return u.modulePath;
  const fromEnv = env[PKCS11_MODULE_ENV];
  if (!fromEnv) invalid(`it has no module-path and ${PKCS11_MODULE_ENV} is not set`);
  if (!isAbsolute(fromEnv)) invalid(`${PKCS11_MODULE_ENV} must be an absolute path`);
  return fromEnv;
}

/** The token part of a URI: the same URI without object, id and type (where a new key goes). */
export function tokenPart(u: Pkcs11Uri): Pkcs11Uri {
  const { object: _o, type: _t, ...path } = u.path;
  return { ...u, path, id: undefined };
}
