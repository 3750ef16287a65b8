/**
 * The one form of a request's path and host that the gateway routes on, authorizes and forwards.
 *
 * Backends read paths and hosts more loosely than a prefix match does: nginx and Fastify decode
 * `/%61dmin` to `/admin`, nginx merges `//` and resolves `..`, Tomcat drops `;params` from segments,
 * some servers take `\` for `/` or decode twice, nginx drops the trailing dot of
 * `admin.acme.internal.`. If the gateway matched the bytes as sent, a caller could pick a route
 * (and its policy) the backend does not serve. So the target is normalized first (RFC 3986 6.2.2:
 * percent-encoded unreserved characters decoded, hex in upper case, host in lower case) and every
 * form that a backend could still resolve differently is refused; the normalized form is what the
 * router sees and what the backend gets.
 */
import { MutualError } from '../core/errors.ts';

/** Longest request target (path and query, bytes) accepted. */
export const MAX_TARGET_BYTES = 8 * 1024;
/** Longest host (RFC 1035 2.3.4: 253 for the name, plus a port). */
export const MAX_HOST_BYTES = 253 + 6;

const HEX = '0123456789ABCDEF';
const hexValue = (c: number): number => (c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 70 ? c - 55 : c >= 97 && c <= 102 ? c - 87 : -1);

/** RFC 3986 2.3 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". Encoded, they mean the same and are decoded. */
const UNRESERVED = new Uint8Array(128);
/** Characters a path may carry as they are: unreserved, sub-delims but ";" (RFC 3986 3.3 pchar), ":", "@", "/". */
const PATH_CHAR = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z0-9\-._~]/.test(ch)) UNRESERVED[c] = PATH_CHAR[c] = 1;
  // ";" is left out: Tomcat, Jetty and Spring drop ";params" from segments, so "/admin;x/y" is "/admin/y" to them.
  if ("!$&'()*+,=:@/".includes(ch)) PATH_CHAR[c] = 1;
}
/**
 * Encoded octets refused: "/" and "\" (a segment boundary to nginx, IIS and others after decoding),
 * "%" (a second decoding turns "%252e" into "."), control characters (NUL truncation, CR/LF in
 * logs and headers), and 0xC0 / 0xC1, which start only overlong UTF-8 forms of ASCII ("%c0%ae" is
 * "." to a lax UTF-8 decoder) and never occur in valid UTF-8.
 */
const refusedEncoded = (v: number): boolean => v < 0x20 || v === 0x7f || v === 0x2f || v === 0x5c || v === 0x25 || v === 0xc0 || v === 0xc1;

/** A request target in the form routed, authorized and forwarded. */
export interface NormalizedTarget {
  /** The path: unreserved characters decoded, other escapes in upper case, no dot or empty segments. */
  path: string;
  /** The query with its "?", as sent (backends do not route on it), or "". */
  query: string;
}

const refuse = (detail: string): MutualError => new MutualError('PATH_AMBIGUOUS', { detail });

/**
 * Normalizes an origin-form request target (`/path?query`). Throws PATH_AMBIGUOUS for a target a
 * backend could read as another path: not starting with "/", over {@link MAX_TARGET_BYTES}, a bad
 * or refused escape, a character outside RFC 3986's path characters (backslash, ";", space, "#",
 * non-ASCII...), an empty segment or a "." / ".." segment (also when written `%2e`).
 */
export function normalizeTarget(target: string): NormalizedTarget {
  if (target.length > MAX_TARGET_BYTES) throw refuse(`the request target is longer than ${MAX_TARGET_BYTES} bytes`);
  if (target.charCodeAt(0) !== 47 /* / */) throw refuse('the request target must be an absolute path ("/...")');
  const q = target.indexOf('?');
  const raw = q < 0 ? target : target.slice(0, q);
  // Built only once an escape changes something; most paths are returned as they came.
  let out: string | undefined;
  let from = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 37 /* % */) {
      const h = i + 2 < raw.length ? hexValue(raw.charCodeAt(i + 1)) : -1;
      const l = h < 0 ? -1 : hexValue(raw.charCodeAt(i + 2));
      if (l < 0) throw refuse('"%" must be followed by two hex digits');
      const v = h * 16 + l;
      if (refusedEncoded(v)) throw refuse(`the encoded character %${HEX[h]}${HEX[l]} is not accepted in paths`);
      const norm = v < 128 && UNRESERVED[v] ? String.fromCharCode(v) : `%${HEX[h]}${HEX[l]}`;
      if (out !== undefined || norm !== raw.slice(i, i + 3)) {
        out = (out ?? '') + raw.slice(from, i) + norm;
        from = i + 3;
      }
      i += 2;
    } else if (c >= 128 || !PATH_CHAR[c]) {
      throw refuse(c === 92 ? 'backslashes are not accepted in paths' : c === 59 ? '";" (path parameters) is not accepted in paths' : `the character ${JSON.stringify(String.fromCharCode(c))} must be percent-encoded`);
    }
  }
  const path = out === undefined ? raw : out + raw.slice(from);
  // RFC 3986 5.2.4 dot segments and empty segments, checked after decoding so "%2e%2e" counts.
  for (let i = 0; i < path.length; i++) {
    if (path.charCodeAt(i) !== 47) continue;
    const a = path.charCodeAt(i + 1);
    if (a === 47) throw refuse('empty path segments ("//") are not accepted');
    if (a !== 46) continue;
    const b = path.charCodeAt(i + 2);
    if (Number.isNaN(b) || b === 47 || (b === 46 && (i + 3 === path.length || path.charCodeAt(i + 3) === 47))) throw refuse('"." and ".." path segments are not accepted');
  }
  return { path, query: q < 0 ? '' : target.slice(q) };
}

const HOST_NAME = /^([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)\.?(?::(\d{1,5}))?$/;
const HOST_IPV6 = /^(\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/;

/**
 * Normalizes a Host or :authority value: lower case, without the trailing dot of an absolute
 * name (`admin.acme.internal.` and `Admin.Acme.Internal` are `admin.acme.internal`), port kept.
 * Throws HOST_INVALID for anything else: empty labels, userinfo, percent-escapes, non-ASCII
 * (send IDNs as A-labels), several hosts, a bad port.
 */
export function normalizeHost(host: string): string {
  const m = host.length <= MAX_HOST_BYTES ? (HOST_NAME.exec(host) ?? HOST_IPV6.exec(host)) : null;
  if (!m || (m[2] !== undefined && Number(m[2]) > 65535)) throw new MutualError('HOST_INVALID', { detail: `host ${JSON.stringify(host.slice(0, 100))}` });
  const name = m[1].toLowerCase();
  return m[2] === undefined ? name : `${name}:${m[2]}`;
}
