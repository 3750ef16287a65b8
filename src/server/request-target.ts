/**
 * The request target of `mutual serve`, checked before any routing: a route decision (and the
 * "HTTPS only" rule of the plain-HTTP listener) is only as good as the path it is made on. Node
 * hands the raw target to the server as sent, and `new URL(raw, base)` then resolves dot segments
 * (`/x/../v1/enroll` -> `/v1/enroll`), reads `//host/...` as a host, and accepts an absolute URL:
 * a prefix test on the raw target and a route match on the resolved one then disagree, which let
 * `POST /x/../v1/enroll` enroll over cleartext (issue 13, item 8).
 *
 * Every path mutual serves is plain ASCII from a small alphabet (`/v1/certificates/<hex>`,
 * `/crl/client.<key id>.crl`), so a path is refused, not normalized, unless it is already in
 * canonical form: fail closed, and the path the route sees is byte for byte the one the client
 * sent. Case is not folded: routes are exact, lowercase matches, so `/V1/enroll` is simply
 * `NOT_FOUND`. The query string is split off (only `/v1/certificates` reads it) and checked for
 * its characters. OCSP GET targets (`/ocsp/<url-encoded base64>`, RFC 6960 A.1) are opaque data
 * for the OCSP handler and are not passed through here.
 */
import { MutualError } from '../core/errors.ts';

/** Longest request target read (Node's header limit is 16 KiB; no route needs more than ~200). */
export const MAX_TARGET_LENGTH = 4096;

/** A checked request target. */
export interface RequestTarget {
  /** The path, canonical: `/` or `/seg/seg...` with segments of [A-Za-z0-9._~-], none `.` or `..`. */
  path: string;
  /** The query string with its `?`, or `''`. */
  query: string;
}

// RFC 3986 unreserved characters only: no percent-escapes, sub-delims, ':' or '@' in a path segment.
const SEGMENT = /^[A-Za-z0-9._~-]+$/;
// RFC 3986 3.4 query characters (pchar / "/" / "?"), with percent-escapes.
const QUERY = /^[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*$/;

/**
 * Checks a raw request target (`req.url`) and splits it into path and query. Throws
 * `PATH_NOT_CANONICAL` (400) naming what was wrong: not origin-form (absolute URL, `*`), a
 * backslash, a percent-escape, an empty segment (`//`, trailing `/`), a `.` or `..` segment, or
 * another character outside the unreserved set; or characters outside RFC 3986 in the query.
 */
export function parseRequestTarget(raw: string): RequestTarget {
  if (raw.length > MAX_TARGET_LENGTH) throw notCanonical(`the target is longer than ${MAX_TARGET_LENGTH} characters`);
  if (!raw.startsWith('/')) throw notCanonical('the target must be a path starting with "/" (origin-form), not an absolute URL or "*"');
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  const query = q < 0 ? '' : raw.slice(q);
  if (!QUERY.test(query)) throw notCanonical('the query string has characters outside RFC 3986');
  if (path === '/') return { path, query };
  const segments = path.slice(1).split('/');
  for (const s of segments) {
    if (s === '') throw notCanonical('empty path segment ("//" or a trailing "/")');
    if (s === '.' || s === '..') throw notCanonical('"." or ".." path segment');
    if (!SEGMENT.test(s)) {
      const why = s.includes('%') ? 'percent-encoded character' : s.includes('\\') ? 'backslash' : 'character outside letters, digits and "._~-"';
      throw notCanonical(`${why} in the path`);
    }
  }
  return { path, query };
}

const notCanonical = (detail: string): MutualError => new MutualError('PATH_NOT_CANONICAL', { detail });
