/**
 * An order's identifiers (RFC 8555 section 7.1.3, RFC 8738): normalized, checked against the
 * CA's name policy (the same checks issuance runs, core/policy.ts) and against the names the
 * account's EAB key allows. Every refused identifier becomes a subproblem; one refusal is
 * ACME_REJECTED_IDENTIFIER, several ACME_COMPOUND, both with `fields.subproblems`.
 */
import { isMutualError, MutualError } from '../../core/errors.ts';
import { bytesToIp, ipToBytes, isIpAddress } from '../../core/names.ts';
import { checkNames, type NamePolicy } from '../../core/policy.ts';
import type { AcmeIdentifier, AcmeSubproblem } from './acme-api.ts';

/** Most identifiers in one order: the most SANs a certificate carries (core/policy.ts MAX_SANS). */
export const MAX_ORDER_IDENTIFIERS = 100;

/**
 * Normalizes one identifier: a DNS name lowercased without its trailing dot, an IP address in its
 * canonical text (RFC 5952 for IPv6). ACME_UNSUPPORTED_IDENTIFIER for other types,
 * ACME_MALFORMED for a value that is not text.
 */
export function normalizeIdentifier(id: AcmeIdentifier): AcmeIdentifier {
  if (!id || typeof id !== 'object' || typeof id.value !== 'string' || id.value.length > 300) {
    throw new MutualError('ACME_MALFORMED', { detail: 'an identifier is { type, value } with a value of 300 characters at most' });
  }
  if (id.type === 'dns') return { type: 'dns', value: id.value.toLowerCase().replace(/\.$/, '') };
  if (id.type === 'ip') return { type: 'ip', value: isIpAddress(id.value) ? bytesToIp(ipToBytes(id.value)) : id.value };
  throw new MutualError('ACME_UNSUPPORTED_IDENTIFIER', { detail: `type ${JSON.stringify(String(id.type).slice(0, 20))}: dns and ip only` });
}

/**
 * Whether an EAB name pattern allows an identifier value: label by label, `*` matching exactly
 * one label (`api.*.acme.internal` allows `api.eu.acme.internal`, not `api.acme.internal` nor
 * `api.a.b.acme.internal`); an IP address only literally.
 */
export function patternAllows(pattern: string, value: string): boolean {
  const p = pattern.toLowerCase().split('.');
  const v = value.split('.');
  if (isIpAddress(value)) return pattern === value;
  return p.length === v.length && p.every((label, i) => label === '*' || label === v[i]);
}

/** Why an identifier is refused, or undefined when it may be ordered. */
function refusal(id: AcmeIdentifier, policy: NamePolicy, eabNames: string[] | undefined): string | undefined {
  // Wildcards: mutual issues exact names only (core/policy.ts normalizeDnsName), so a wildcard
  // identifier is refused here rather than at finalize, after its authorizations were done.
  if (id.type === 'dns' && id.value.startsWith('*.')) return `${id.value}: wildcard certificates are not issued by this CA`;
  if (id.type === 'ip' && !isIpAddress(id.value)) return `${JSON.stringify(id.value.slice(0, 60))} is not an IP address`;
  try {
    checkNames(policy, { dns: id.type === 'dns' ? [id.value] : [], ip: id.type === 'ip' ? [id.value] : [], uri: [] }, 'server');
  } catch (e) {
    if (!isMutualError(e)) throw e;
    return e.fields.detail ?? e.message;
  }
  if (eabNames && !eabNames.some((p) => patternAllows(p, id.value))) return `${id.value} is not among the names this account's EAB key allows (${eabNames.join(', ')})`;
  return undefined;
}

/**
 * Checks an order's identifiers and returns them normalized and without duplicates. Throws
 * ACME_MALFORMED (none, or more than {@link MAX_ORDER_IDENTIFIERS}), ACME_UNSUPPORTED_IDENTIFIER,
 * ACME_REJECTED_IDENTIFIER (one refused) or ACME_COMPOUND (several), the last two with
 * `fields.subproblems`.
 */
export function checkIdentifiers(identifiers: AcmeIdentifier[], policy: NamePolicy, eabNames: string[] | undefined): AcmeIdentifier[] {
  if (!Array.isArray(identifiers) || identifiers.length === 0) throw new MutualError('ACME_MALFORMED', { detail: 'an order needs at least one identifier' });
  if (identifiers.length > MAX_ORDER_IDENTIFIERS) throw new MutualError('ACME_MALFORMED', { detail: `${identifiers.length} identifiers; at most ${MAX_ORDER_IDENTIFIERS}` });
  const seen = new Map<string, AcmeIdentifier>();
  for (const raw of identifiers) {
    const id = normalizeIdentifier(raw);
    seen.set(`${id.type}:${id.value}`, id);
  }
  const out = [...seen.values()];
  const subproblems: AcmeSubproblem[] = [];
  for (const id of out) {
    const why = refusal(id, policy, eabNames);
    if (why !== undefined) subproblems.push({ code: 'ACME_REJECTED_IDENTIFIER', detail: why, identifier: id });
  }
  if (subproblems.length === 1) throw new MutualError('ACME_REJECTED_IDENTIFIER', { detail: subproblems[0].detail, subproblems });
  if (subproblems.length > 1) throw new MutualError('ACME_COMPOUND', { detail: `${subproblems.length} identifiers refused`, subproblems });
  return out;
}
