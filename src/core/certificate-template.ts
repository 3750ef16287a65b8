/**
 * Certificate building (RFC 5280 4.1). Everything that is the same for every certificate a given
 * issuer makes in a given role (issuer name, algorithm, basic constraints, key usage, EKU, AKI,
 * CRL and AIA URLs) is encoded once into a {@link CertificateTemplate}; per certificate only the
 * serial, validity, subject, SPKI, SKI and SANs are encoded and concatenated with those pieces.
 */
import crypto from 'node:crypto';
import {
  bitString, boolean, explicit, implicit, integer, octetString, oid, seq, time, unsignedInteger, Tag,
} from './der.ts';
import { OID } from './oids.ts';
import { encodeGeneralNames, encodeName, prefixMask, type SubjectAltNames } from './names.ts';
import type { NamePolicy } from './policy.ts';
import type { Signer } from './signer.ts';
import { keyIdentifier } from './algorithms.ts';

/** The roles of mutual's hierarchy. A certificate has exactly one. */
export const ROLES = ['root', 'server-ca', 'client-ca', 'server', 'client', 'ocsp'] as const;
export type Role = (typeof ROLES)[number];

/** The issuing side of a template. */
/**
 * pathLenConstraint of a root: 2, though only one CA level (the intermediates, pathLen 0) is ever
 * issued under it. During a root rollover a path holds the intermediate and the cross-certificate
 * (new root by old); RFC 5280 6.1.4 (l) does not count the self-issued cross-certificate, but
 * GnuTLS does, and with 1 it refuses every new leaf for a relying party that trusts only the old
 * root (issue 17).
 */
export const ROOT_PATH_LEN = 2;

export interface IssuerContext {
  /** DER of the issuer's subject Name (for a root: its own). */
  name: Buffer;
  /** The issuer's subject key identifier. */
  keyId: Buffer;
  signer: Signer;
}

/** Where relying parties find revocation data and the issuer (written into every leaf). */
export interface DistributionUrls {
  /** CRL Distribution Point URL for certificates of this issuer. */
  crl?: string;
  /** OCSP responder URL. */
  ocsp?: string;
  /** URL of the issuer's certificate (AIA caIssuers). */
  caIssuers?: string;
}

/** Options fixed per template. */
export interface TemplateOptions {
  role: Role;
  urls?: DistributionUrls;
  /**
   * pathLenConstraint for CA roles: a root defaults to {@link ROOT_PATH_LEN}, intermediates to 0
   * (so nothing under an intermediate can issue).
   */
  pathLen?: number;
  /** For intermediates: the permitted subtrees written as NameConstraints. */
  nameConstraints?: NamePolicy;
}

/** What changes per certificate. */
export interface CertificateFields {
  /** 16 bytes, positive (see {@link newSerial}). */
  serial: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** DER subject Name. */
  subject: Buffer;
  /** DER SubjectPublicKeyInfo. */
  spki: Buffer;
  names?: SubjectAltNames;
}

/** A template bound to one issuer and role. */
export interface CertificateTemplate {
  readonly role: Role;
  readonly issuer: IssuerContext;
  /** Encodes the TBSCertificate. */
  tbs(fields: CertificateFields): Buffer;
  /** Encodes and signs; returns the certificate's DER. */
  sign(fields: CertificateFields): Promise<Buffer>;
}

// One CSPRNG call per 256 serials instead of one each (~4 us a call here).
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolAt = POOL_BYTES;
function pooledRandom(n: number): Buffer {
  if (poolAt + n > pool.length) {
    pool = crypto.randomBytes(POOL_BYTES);
    poolAt = 0;
  }
  const out = Buffer.from(pool.subarray(poolAt, poolAt + n));
  pool.fill(0, poolAt, poolAt + n);
  poolAt += n;
  return out;
}

/** Length of mutual's serial numbers (RFC 5280 4.1.2.2 allows up to 20 octets). */
export const SERIAL_BYTES = 16;

/**
 * A new serial: 16 random bytes, top bit cleared (positive) and next bit set (so DER keeps all 16
 * bytes); 126 bits of randomness, well above CA/B's 64.
 */
export function newSerial(random: (n: number) => Buffer = pooledRandom): Buffer {
  const b = random(SERIAL_BYTES);
  b[0] = (b[0] & 0x3f) | 0x40;
  return b;
}

const ext = (id: string, critical: boolean, value: Buffer): Buffer =>
  critical ? seq(oid(id), boolean(true), octetString(value)) : seq(oid(id), octetString(value));

// KeyUsage bits (RFC 5280 4.2.1.3), as DER BIT STRINGs with the unused-bit count set.
const KU_DIGITAL_SIGNATURE = Buffer.from([Tag.BIT_STRING, 2, 7, 0x80]);
const KU_CERT_AND_CRL_SIGN = Buffer.from([Tag.BIT_STRING, 2, 1, 0x06]);

/** The extended key usages each role carries; CA roles restrict what they may issue. */
export const ROLE_EKU: Record<Role, string[]> = {
  root: [],
  'server-ca': [OID.serverAuth],
  'client-ca': [OID.clientAuth],
  server: [OID.serverAuth],
  client: [OID.clientAuth],
  ocsp: [OID.ocspSigning],
};

/** True for the roles whose certificates are CAs. */
export const isCaRole = (role: Role): boolean => role === 'root' || role === 'server-ca' || role === 'client-ca';

/** Encodes NameConstraints permittedSubtrees (RFC 5280 4.2.1.10) from a name policy. */
export function encodeNameConstraints(p: NamePolicy): Buffer {
  const subtrees: Buffer[] = [];
  for (const d of p.permittedDns) subtrees.push(seq(implicit(2, Buffer.from(d, 'latin1'))));
  for (const r of p.permittedIp) subtrees.push(seq(implicit(7, Buffer.concat([r.network, prefixMask(r.network.length, r.prefix)]))));
  // OpenSSL compares URI constraints with the URI's host only (DESIGN.md), so the trust domain is
  // written bare, not as spiffe://...
  subtrees.push(seq(implicit(6, Buffer.from(p.trustDomain, 'latin1'))));
  return seq(explicit(0, ...subtrees));
}

function fixedExtensions(issuer: IssuerContext, o: TemplateOptions): Buffer[] {
  const exts: Buffer[] = [];
  const ca = isCaRole(o.role);
  if (ca) {
    const pathLen = o.pathLen ?? (o.role === 'root' ? ROOT_PATH_LEN : 0);
    exts.push(ext(OID.basicConstraints, true, seq(boolean(true), integer(pathLen))));
    exts.push(ext(OID.keyUsage, true, KU_CERT_AND_CRL_SIGN));
  } else {
    exts.push(ext(OID.basicConstraints, true, seq()));
    exts.push(ext(OID.keyUsage, true, KU_DIGITAL_SIGNATURE));
  }
  const eku = ROLE_EKU[o.role];
  if (eku.length) exts.push(ext(OID.extKeyUsage, false, seq(...eku.map(oid))));
  exts.push(ext(OID.authorityKeyIdentifier, false, seq(implicit(0, issuer.keyId))));
  if (o.nameConstraints) exts.push(ext(OID.nameConstraints, true, encodeNameConstraints(o.nameConstraints)));
  if (o.role === 'ocsp') exts.push(ext(OID.ocspNoCheck, false, Buffer.from([Tag.NULL, 0])));
  if (o.urls?.crl && o.role !== 'root' && o.role !== 'ocsp') {
    exts.push(ext(OID.crlDistributionPoints, false, seq(seq(explicit(0, explicit(0, implicit(6, Buffer.from(o.urls.crl, 'latin1'))))))));
  }
  const aia: Buffer[] = [];
  if (o.urls?.ocsp && o.role !== 'root' && o.role !== 'ocsp') aia.push(seq(oid(OID.ocsp), implicit(6, Buffer.from(o.urls.ocsp, 'latin1'))));
  if (o.urls?.caIssuers && o.role !== 'root') aia.push(seq(oid(OID.caIssuers), implicit(6, Buffer.from(o.urls.caIssuers, 'latin1'))));
  if (aia.length) exts.push(ext(OID.authorityInfoAccess, false, seq(...aia)));
  return exts;
}

const VERSION_3 = explicit(0, integer(2));

/** Makes a template for one issuer and role. */
export function createCertificateTemplate(issuer: IssuerContext, options: TemplateOptions): CertificateTemplate {
  const fixed = Buffer.concat(fixedExtensions(issuer, options));
  const head = Buffer.concat([issuer.signer.algorithm.der, issuer.name]);
  const ca = isCaRole(options.role);
  const tbs = (f: CertificateFields): Buffer => {
    const perCert: Buffer[] = [fixed, ext(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(f.spki)))];
    const n = f.names;
    if (n && n.dns.length + n.ip.length + n.uri.length > 0) perCert.push(ext(OID.subjectAltName, false, encodeGeneralNames(n)));
    else if (!ca && options.role !== 'ocsp') throw new TypeError('leaf certificates need subjectAltNames');
    return seq(VERSION_3, unsignedInteger(f.serial), head, seq(time(f.notBefore), time(f.notAfter)), f.subject, f.spki, explicit(3, seq(...perCert)));
  };
  return {
    role: options.role,
    issuer,
    tbs,
    async sign(f) {
      const t = tbs(f);
      const sig = await issuer.signer.sign(t);
      return seq(t, issuer.signer.algorithm.der, bitString(sig));
    },
  };
}

/** The subject Name mutual writes for a role: CN = service, host name, or CA name. */
export function subjectFor(commonName: string, organization?: string): Buffer {
  return encodeName({ commonName, organization });
}
