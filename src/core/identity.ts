/**
 * SPIFFE-style identities: `spiffe://<trust-domain>/<env>/<service>` (SPIFFE ID spec, section 2).
 * The trust domain is lowercase letters, digits, '.', '-' and '_'; each path segment is
 * letters, digits, '.', '-' and '_' and is neither '.' nor '..'.
 */
import { MutualError } from './errors.ts';

/** Longest SPIFFE ID accepted (the spec's 2048-byte URI limit). */
export const MAX_SPIFFE_ID_LENGTH = 2048;
/** Most path segments accepted in an identity. */
export const MAX_PATH_SEGMENTS = 16;

const TRUST_DOMAIN_RE = /^[a-z0-9._-]{1,255}$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]{1,128}$/;

/** A parsed SPIFFE ID. */
export interface SpiffeId {
  trustDomain: string;
  /** Path segments, e.g. ['prod', 'payments']. */
  path: string[];
  /** The canonical URI. */
  uri: string;
}

/** Checks a trust domain name; throws POLICY_BAD_IDENTITY. */
export function checkTrustDomain(td: string): string {
  if (!TRUST_DOMAIN_RE.test(td) || td.startsWith('.') || td.endsWith('.') || td.includes('..')) {
    throw new MutualError('POLICY_BAD_IDENTITY', { detail: `trust domain ${JSON.stringify(td.slice(0, 80))} must be lowercase letters, digits, '.', '-', '_'` });
  }
  return td;
}

/** Parses and validates a SPIFFE ID; with `trustDomain`, it must belong to it. */
export function parseSpiffeId(uri: string, trustDomain?: string): SpiffeId {
  const bad = (why: string): never => {
    throw new MutualError('POLICY_BAD_IDENTITY', { detail: `${JSON.stringify(uri.slice(0, 120))}: ${why}` });
  };
  if (uri.length > MAX_SPIFFE_ID_LENGTH) bad('too long');
  if (!uri.startsWith('spiffe://')) bad('must start with spiffe://');
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash < 0 ? rest : rest.slice(0, slash);
  if (!TRUST_DOMAIN_RE.test(td)) bad('bad trust domain');
  if (trustDomain !== undefined && td !== trustDomain) bad(`belongs to trust domain ${td}, not ${trustDomain}`);
  const path = slash < 0 ? [] : rest.slice(slash + 1).split('/');
  if (path.length === 0) bad('needs a path (e.g. /prod/payments)');
  if (path.length > MAX_PATH_SEGMENTS) bad(`more than ${MAX_PATH_SEGMENTS} path segments`);
  for (const s of path) {
    if (!SEGMENT_RE.test(s) || s === '.' || s === '..') bad(`bad path segment ${JSON.stringify(s.slice(0, 40))}`);
  }
  return { trustDomain: td, path, uri: `spiffe://${td}/${path.join('/')}` };
}

/** Builds the identity of a service: spiffe://<td>/<env>/<service>. */
export function serviceIdentity(trustDomain: string, env: string, service: string): SpiffeId {
  return parseSpiffeId(`spiffe://${checkTrustDomain(trustDomain)}/${env}/${service}`, trustDomain);
}

/**
 * Matches an identity against a pattern: exact, `*` for exactly one path segment, `**` (last) for
 * one or more segments. `spiffe://acme.internal/prod/*` matches `.../prod/payments` only.
 */
export function matchIdentity(pattern: string, identity: string): boolean {
  if (pattern === identity) return true;
  if (!pattern.startsWith('spiffe://') || !identity.startsWith('spiffe://')) return false;
  const p = pattern.slice(9).split('/');
  const s = identity.slice(9).split('/');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '**' && i === p.length - 1) return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
    if (p[i] === '*' && i === 0) return false; // the trust domain is never a wildcard
  }
  return p.length === s.length;
}
