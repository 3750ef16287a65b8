/**
 * Issuance policy: which names a CA may put in a certificate. The same permitted sets become the
 * intermediates' NameConstraints, so a name that passes policy also passes a verifier that checks
 * constraints (OpenSSL does), and lint re-checks both.
 */
import { MutualError } from './errors.ts';
import { dnsUnder, ipInRange, ipToBytes, isIpAddress, parseIpRange, type IpRange, type SubjectAltNames } from './names.ts';
import { parseSpiffeId } from './identity.ts';

/** Most subjectAltName entries in one certificate. */
export const MAX_SANS = 100;
/** Longest DNS name (RFC 1035 2.3.4). */
export const MAX_DNS_NAME = 253;

const LABEL_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Names a CA may issue for. */
export interface NamePolicy {
  trustDomain: string;
  /** DNS suffixes: each permits itself and its subdomains. */
  permittedDns: string[];
  /** Permitted IP ranges. */
  permittedIp: IpRange[];
}

/** The default policy: the trust domain and its subdomains, plus localhost and loopback for development. */
export function defaultNamePolicy(trustDomain: string, extra: { dns?: string[]; ip?: string[] } = {}): NamePolicy {
  return {
    trustDomain,
    permittedDns: [...new Set([trustDomain, 'localhost', ...(extra.dns ?? []).map(normalizeDnsName)])],
    permittedIp: ['127.0.0.0/8', '::1/128', ...(extra.ip ?? [])].map(parseIpRange),
  };
}

/** Lowercases and checks a DNS name's syntax (no wildcards: mutual issues exact names). */
export function normalizeDnsName(name: string): string {
  const n = name.toLowerCase().replace(/\.$/, '');
  const bad = (why: string): never => {
    throw new MutualError('POLICY_NAME_NOT_ALLOWED', { detail: `DNS name ${JSON.stringify(name.slice(0, 80))} ${why}` });
  };
  if (n.length === 0 || n.length > MAX_DNS_NAME) bad('has a bad length');
  for (const label of n.split('.')) if (!LABEL_RE.test(label)) bad('is not a valid host name (wildcards are not issued)');
  return n;
}

/** Checks the subjectAltNames of a request against the policy and the profile's needs. */
export function checkNames(policy: NamePolicy, names: SubjectAltNames, role: 'server' | 'client'): SubjectAltNames {
  const count = names.dns.length + names.ip.length + names.uri.length;
  if (count > MAX_SANS) throw new MutualError('DER_TOO_COMPLEX', { detail: `${count} names; at most ${MAX_SANS}` });
  const dns = [...new Set(names.dns.map(normalizeDnsName))];
  for (const d of dns) {
    if (!policy.permittedDns.some((s) => dnsUnder(d, s))) {
      throw new MutualError('POLICY_NAME_NOT_ALLOWED', { detail: `${d} is not under ${policy.permittedDns.join(', ')}` });
    }
  }
  const ip = [...new Set(names.ip)];
  for (const a of ip) {
    if (!isIpAddress(a)) throw new MutualError('POLICY_NAME_NOT_ALLOWED', { detail: `${JSON.stringify(a.slice(0, 60))} is not an IP address` });
    const bytes = ipToBytes(a);
    if (!policy.permittedIp.some((r) => ipInRange(bytes, r))) {
      throw new MutualError('POLICY_NAME_NOT_ALLOWED', { detail: `${a} is not in ${policy.permittedIp.map((r) => r.text).join(', ')}` });
    }
  }
  const uri = [...new Set(names.uri.map((u) => parseSpiffeId(u, policy.trustDomain).uri))];
  if (role === 'server') {
    if (uri.length > 0) throw new MutualError('POLICY_NAME_NOT_ALLOWED', { detail: 'server certificates carry DNS/IP names, not identities; issue a client certificate for the identity' });
    if (dns.length + ip.length === 0) throw new MutualError('POLICY_NO_NAMES', { detail: 'a server certificate needs at least one DNS name or IP address' });
  } else {
    if (uri.length !== 1) throw new MutualError(uri.length === 0 ? 'POLICY_NO_NAMES' : 'POLICY_NAME_NOT_ALLOWED', { detail: 'a client certificate carries exactly one identity (spiffe://...)' });
    if (dns.length + ip.length > 0) throw new MutualError('POLICY_NAME_NOT_ALLOWED', { detail: 'client certificates carry one identity and no DNS/IP names' });
  }
  return { dns, ip, uri };
}
