/**
 * Pre-issuance lint: the last gate before a signature. Every rule here is a property the issued
 * certificate must have; a failing rule issues nothing. Rules are checked on the values the
 * template encodes, so the check costs microseconds, and tests re-check the issued DER with OpenSSL.
 */
import { MutualError, isMutualError } from './errors.ts';
import { describeSpki, type KeyRule } from './algorithms.ts';
import { SERIAL_BYTES, ROLE_EKU, type CertificateFields, type Role } from './certificate-template.ts';
import { dnsUnder, ipInRange, ipToBytes, type IpRange, type SubjectAltNames } from './names.ts';
import type { NamePolicy } from './policy.ts';
import { OID } from './oids.ts';
import { nameToString } from './certificate.ts';
import { expect, Tag } from './der.ts';

/** Lint rule identifiers (stable: they appear in errors and docs/errors.md). */
export type LintRule =
  | KeyRule | 'signature-sha1' | 'serial-format' | 'time-fractional' | 'validity-order' | 'validity-outside-issuer'
  | 'san-missing' | 'eku-role' | 'issuer-role' | 'name-constraints' | 'cn-not-in-san';

/** What the linter sees about the issuer. */
export interface LintIssuer {
  role: Role;
  notBefore: Date;
  notAfter: Date;
  signatureOid: string;
  /** The issuer's NameConstraints, if it has any. */
  constraints?: NamePolicy;
}

const fail = (rule: LintRule, detail: string): never => {
  throw new MutualError('LINT_FAILED', { rule, detail: `${rule}: ${detail}` });
};

const ISSUER_OF: Record<Role, Role[]> = {
  root: ['root'],
  'server-ca': ['root'],
  'client-ca': ['root'],
  server: ['server-ca'],
  client: ['client-ca'],
  ocsp: ['server-ca', 'client-ca', 'root'],
};

/**
 * Checks a certificate before signing. Throws LINT_FAILED with `fields.rule`.
 */
export function lintCertificate(role: Role, f: CertificateFields, issuer: LintIssuer): void {
  try {
    describeSpki(f.spki);
  } catch (e) {
    // KEY_WEAK says which rule (RSA exponent, modulus size or factors); anything else is key-weak.
    const rule = isMutualError(e, 'KEY_WEAK') && typeof e.fields.rule === 'string' ? (e.fields.rule as KeyRule) : 'key-weak';
    fail(rule, (e as Error).message);
  }
  if (issuer.signatureOid === OID.sha1WithRSAEncryption || issuer.signatureOid === OID.ecdsaWithSHA1) fail('signature-sha1', 'SHA-1 signatures are not made');
  if (f.serial.length !== SERIAL_BYTES || (f.serial[0] & 0x80) !== 0 || f.serial[0] === 0) fail('serial-format', `serial must be ${SERIAL_BYTES} bytes, positive, no leading zero`);
  if (f.notBefore.getTime() % 1000 !== 0 || f.notAfter.getTime() % 1000 !== 0) fail('time-fractional', 'times must be whole seconds');
  if (f.notAfter <= f.notBefore) fail('validity-order', 'notAfter must follow notBefore');
  if (role !== 'root' && (f.notBefore < issuer.notBefore || f.notAfter > issuer.notAfter)) {
    fail('validity-outside-issuer', `validity ${f.notBefore.toISOString()}..${f.notAfter.toISOString()} is outside the issuer's ${issuer.notBefore.toISOString()}..${issuer.notAfter.toISOString()}`);
  }
  if (!ISSUER_OF[role].includes(issuer.role)) fail('issuer-role', `a ${role} certificate cannot come from the ${issuer.role}`);
  const n = f.names ?? { dns: [], ip: [], uri: [] };
  if (role === 'server' && n.dns.length + n.ip.length === 0) fail('san-missing', 'server certificates need DNS or IP names');
  if (role === 'client' && n.uri.length !== 1) fail('san-missing', 'client certificates need exactly one identity URI');
  if ((role === 'server' && n.uri.length) || (role === 'client' && n.dns.length + n.ip.length)) fail('eku-role', `a ${role} certificate carries the other role's names`);
  if (ROLE_EKU[role].length !== 1 && role !== 'root') fail('eku-role', `role ${role} must have exactly one EKU`);
  if (n.dns.length === 0 && (role === 'server' || role === 'client')) {
    // Without DNS SANs, verifiers check a host-like CN against DNS name constraints (OpenSSL does).
    const cn = nameToString(f.subject, expect(f.subject, 0, Tag.SEQUENCE, f.subject.length, 'Name')).commonName;
    if (cn && cn.includes('.')) fail('cn-not-in-san', `CN ${cn} looks like a host name but is not a DNS SAN`);
  }
  const c = issuer.constraints;
  if (c) {
    const outside = nameConstraintViolation(n, c);
    if (outside) fail('name-constraints', outside);
  }
}

/** A CA's permitted subtrees by name type; a type left undefined is not constrained (RFC 5280 4.2.1.10). */
export interface PermittedNames {
  permittedDns?: readonly string[];
  permittedIp?: readonly IpRange[];
  /** The one permitted URI host (mutual's CAs constrain URIs to the trust domain). */
  trustDomain?: string;
}

/**
 * The name check behind the `name-constraints` lint rule, shared with the peer verifier (which checks
 * a presented leaf against its client CA's constraints): why the first name of `n` outside `c` is
 * outside, or undefined when every name is inside.
 */
export function nameConstraintViolation(n: SubjectAltNames, c: PermittedNames): string | undefined {
  if (c.permittedDns) for (const d of n.dns) if (!c.permittedDns.some((s) => dnsUnder(d, s))) return `${d} is outside the issuer's permitted DNS names`;
  if (c.permittedIp) for (const ip of n.ip) if (!c.permittedIp.some((r) => ipInRange(ipToBytes(ip), r))) return `${ip} is outside the issuer's permitted IP ranges`;
  if (c.trustDomain !== undefined) {
    for (const u of n.uri) {
      let host: string | undefined;
      try {
        host = new URL(u).host;
      } catch {
        host = undefined;
      }
      if (host !== c.trustDomain) return `${u} is outside the trust domain ${c.trustDomain}`;
    }
  }
  return undefined;
}
