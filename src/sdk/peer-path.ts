/**
 * The checks of a peer's certificate path that do not depend on revocation data, for
 * {@link PeerVerifier} (sdk/verifier.ts): the trusted client CAs and the path above them, what the
 * leaf must be (issued and signed by a client CA, an end entity with EKU clientAuth, no unknown
 * critical extension, no weak key, inside the CA's name constraints), the validity of every
 * certificate of the path, and the reason a chain OpenSSL refused was refused. Pure functions over
 * parsed certificates; the verifier caches their results and holds the clock.
 */
import crypto, { X509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { parseCertificate, certificateIdentity, type CertificateInfo } from '../core/certificate.ts';
import { revocationUrls } from '../core/cert-urls.ts';
import type { CrlInfo } from '../core/crl-reader.ts';
import { MutualError, isMutualError, type ErrorCode, type MutualErrorFields } from '../core/errors.ts';
import { describeSpki } from '../core/algorithms.ts';
import { nameConstraintViolation, type PermittedNames } from '../core/lint.ts';
import { OID } from '../core/oids.ts';
import { ocspIssuerHashes, type OcspIssuerHashes } from '../core/ocsp.ts';

/** Most issuer certificates read from a chain OpenSSL refused, to name the reason (mutual's paths are 2 deep). */
export const MAX_EXPLAINED_CHAIN = 8;
/**
 * Critical extensions the verifier (or OpenSSL before it) processes; any other critical extension
 * refuses the certificate (RFC 5280 4.2: "A certificate-using system MUST reject the certificate if
 * it encounters a critical extension it does not recognize").
 */
export const PROCESSED_CRITICAL_EXTENSIONS: ReadonlySet<string> = new Set([
  OID.basicConstraints, OID.keyUsage, OID.extKeyUsage, OID.subjectAltName, OID.nameConstraints,
  OID.subjectKeyIdentifier, OID.authorityKeyIdentifier,
]);
/** Smallest RSA public exponent accepted (CA/B Forum Baseline Requirements 6.1.6: 2^16+1). */
export const MIN_RSA_EXPONENT = 65537n;
/** RSA public exponents must be below this (Baseline Requirements 6.1.6: at most 2^256-1). */
export const RSA_EXPONENT_LIMIT = 1n << 256n;
const ANY_EKU = '2.5.29.37.0';
const DAY = 86_400_000;

/** The identity of a verified peer. */
export interface PeerIdentity {
  /** The SPIFFE ID (the spiffe:// URI SAN), when the certificate has one. */
  spiffeId?: string;
  uris: string[];
  dns: string[];
  /** Subject CN, for tools that read only CNs. */
  cn?: string;
  /** Subject and issuer as text (`CN=..., O=...`). */
  subject: string;
  issuer: string;
  /** Serial, lowercase hex. */
  serial: string;
  /** SHA-256 of the certificate DER, lowercase hex. */
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
  /** The leaf's DER (for XFCC `Cert`, RFC 9440 `Client-Cert`). */
  der: Buffer;
  /**
   * The intermediates of the verified path, the leaf's issuer first, without the root: the client
   * CA that signed the leaf (for RFC 9440 `Client-Cert-Chain`).
   */
  chain: readonly Buffer[];
}

/** A configured client CA, the path above it, and its revocation data (kept by sdk/crl-cache.ts). */
export interface TrustedCa {
  info: CertificateInfo;
  keyId: Buffer;
  publicKey: KeyObject;
  ocspHashes: OcspIssuerHashes;
  /** The CA's name constraints, as the lint rule reads them. */
  constraints?: PermittedNames;
  /** The path above the leaf: this CA, then the root it chains to when the roots are known. */
  path: CertificateInfo[];
  /** When every certificate of `path` is valid (ms): the intersection of their validity. */
  validFrom: number;
  validUntil: number;
  /** Why no leaf of this CA can be accepted (a weak key or unknown critical extension on the CA or its root, a path-length violation), if so. */
  broken?: { code: ErrorCode; detail: string };
  /** Loaded CRL, and until when it counts as fresh (ms). */
  crl?: CrlInfo;
  crlSource?: string;
  freshUntil: number;
}

/** A leaf that passed the checks that do not depend on time or revocation. */
export interface CheckedLeaf {
  ok: true;
  info: CertificateInfo;
  ca: TrustedCa;
  identity: PeerIdentity;
  ocspUrls: string[];
  /** The leaf's CRL distribution points. */
  crlUrls: string[];
}

/** The result of the checks that do not depend on time or revocation, per certificate. */
export type LeafCheck = CheckedLeaf | { ok: false; code: ErrorCode; fields: MutualErrorFields };

/** "3 days", "5 hours", "1 minute": how long ago or ahead, for error details. */
export const daysText = (ms: number): string => {
  const d = Math.floor(ms / DAY);
  if (d >= 1) return `${d} day${d === 1 ? '' : 's'}`;
  const h = Math.floor(ms / 3_600_000);
  if (h >= 1) return `${h} hour${h === 1 ? '' : 's'}`;
  return `${Math.max(1, Math.floor(ms / 60_000))} minute${ms < 120_000 ? '' : 's'}`;
};

/**
 * A client CA as the verifier trusts it: its path up to the root of `roots` that signed it (when
 * known), the window in which the whole path is valid, and why it vouches for nothing, if so.
 */
export function trustedCa(info: CertificateInfo, roots: readonly CertificateInfo[]): TrustedCa {
  const keyId = info.subjectKeyId ?? crypto.createHash('sha1').update(info.spki).digest();
  const path = [info];
  const selfSigned = info.subjectName.equals(info.issuerName);
  const root = selfSigned ? undefined : roots.find((r) => r.subjectName.equals(info.issuerName) && signedBy(info.der, r.spki));
  if (root) path.push(root);
  // The configured path is checked as the leaf is: a weak CA key vouches for nothing.
  let broken: TrustedCa['broken'];
  for (const [i, c] of path.entries()) broken ??= certificateProblem(c, `the ${i === 0 ? 'client CA' : 'root'} "${c.subject}" (serial ${c.serial})`);
  // The client CA is one CA below the root (RFC 5280 4.2.1.9).
  if (root && root.pathLen !== undefined && root.pathLen < 1) broken ??= { code: 'CERT_UNTRUSTED', detail: `the root "${root.subject}" has pathLen ${root.pathLen}, so it may not have the intermediate "${info.subject}"` };
  const p = info.permitted;
  return {
    info, keyId, publicKey: crypto.createPublicKey({ key: info.spki, format: 'der', type: 'spki' }), ocspHashes: ocspIssuerHashes(info.der), freshUntil: 0,
    ...(p ? { constraints: { permittedDns: p.dns, permittedIp: p.ip, ...(p.uri.length ? { trustDomain: p.uri[0] } : {}) } } : {}),
    path,
    validFrom: Math.max(...path.map((c) => c.notBefore.getTime())),
    validUntil: Math.min(...path.map((c) => c.notAfter.getTime())),
    ...(broken ? { broken } : {}),
  };
}

/**
 * The checks of a leaf that do not depend on time or revocation: readable, issued by one of `cas`
 * (name, then AKI and signature), an end entity with EKU clientAuth, no unknown critical extension
 * or weak key, inside the CA's name constraints, under a CA that is not broken.
 */
export function checkLeaf(der: Buffer, cas: readonly TrustedCa[]): LeafCheck {
  let info: CertificateInfo;
  try {
    info = parseCertificate(der);
  } catch (e) {
    return { ok: false, code: 'CERT_UNTRUSTED', fields: { detail: `the certificate cannot be read (${isMutualError(e) ? e.message : 'parse error'})` } };
  }
  const spiffeId = certificateIdentity(info);
  const who = { serial: info.serial, identity: spiffeId ?? info.subject };
  const named = cas.filter((c) => c.info.subjectName.equals(info.issuerName));
  if (named.length === 0) {
    return { ok: false, code: 'CERT_ISSUER_NOT_ALLOWED', fields: { ...who, detail: `issued by "${info.issuer}", which is not a client CA this service trusts (serial ${info.serial})` } };
  }
  // Same name is not same CA: only the key that signed the leaf counts (a look-alike CA has the name, not the key).
  const ca = named.find((c) => (!info.authorityKeyId || info.authorityKeyId.equals(c.keyId)) && signedBy(der, c.publicKey));
  if (!ca) return { ok: false, code: 'CERT_BAD_SIGNATURE', fields: { ...who, detail: `names "${info.issuer}" as issuer but is not signed by its key: a look-alike CA, or a forged certificate (serial ${info.serial})` } };
  if (info.isCa) return { ok: false, code: 'CERT_IS_CA', fields: { ...who, detail: `a CA certificate (basicConstraints CA:TRUE) is not a client certificate (serial ${info.serial})` } };
  if (!info.eku.includes(OID.clientAuth)) {
    const what = info.eku.length === 0 ? 'has no extended key usage'
      : info.eku.includes(OID.serverAuth) ? 'is a server certificate (EKU serverAuth only)'
        : info.eku.includes(ANY_EKU) ? 'has only anyExtendedKeyUsage, which mutual does not accept in place of clientAuth'
          : `has EKU ${info.eku.join(', ')} but not clientAuth`;
    return { ok: false, code: 'CERT_WRONG_EKU', fields: { ...who, detail: `the certificate ${what}; a client certificate needs clientAuth (serial ${info.serial})` } };
  }
  const problem = certificateProblem(info, 'the certificate');
  if (problem) return { ok: false, code: problem.code, fields: { ...who, detail: `${problem.detail} (serial ${info.serial})` } };
  const outside = ca.constraints && nameConstraintViolation(info.names, ca.constraints);
  if (outside) return { ok: false, code: 'CERT_NAME_NOT_PERMITTED', fields: { ...who, detail: `${outside} of "${ca.info.subject}" (its name constraints; serial ${info.serial})` } };
  if (ca.broken) return { ok: false, code: ca.broken.code, fields: { ...who, detail: `${ca.broken.detail} (serial ${info.serial})` } };
  let urls: { ocsp: string[]; crl: string[] } = { ocsp: [], crl: [] };
  try {
    urls = revocationUrls(der);
  } catch {
    // A certificate the CA signed is well-formed; nothing to learn otherwise.
  }
  const identity: PeerIdentity = {
    ...(spiffeId ? { spiffeId } : {}),
    uris: info.names.uri,
    dns: info.names.dns,
    ...(info.commonName ? { cn: info.commonName } : {}),
    subject: info.subject,
    issuer: info.issuer,
    serial: info.serial,
    fingerprint: info.fingerprint,
    notBefore: info.notBefore,
    notAfter: info.notAfter,
    der: Buffer.from(der),
    chain: [ca.info.der],
  };
  return { ok: true, info, ca, identity, ocspUrls: urls.ocsp, crlUrls: urls.crl };
}

/**
 * Throws when the leaf (CERT_NOT_YET_VALID, CERT_EXPIRED) or a certificate of its configured path
 * (CERT_CHAIN_EXPIRED, naming which) is outside its validity at `now` (ms).
 */
export function checkPathTime(st: CheckedLeaf, now: number): void {
  const info = st.info;
  const who = { serial: info.serial, identity: st.identity.spiffeId ?? info.subject };
  if (now < info.notBefore.getTime()) {
    throw new MutualError('CERT_NOT_YET_VALID', { ...who, notBefore: info.notBefore, detail: `client certificate valid only from ${info.notBefore.toISOString()}, in ${daysText(info.notBefore.getTime() - now)} (serial ${info.serial}); check the clocks` });
  }
  if (now >= info.notAfter.getTime()) {
    throw new MutualError('CERT_EXPIRED', { ...who, notAfter: info.notAfter, detail: `client certificate expired ${daysText(now - info.notAfter.getTime())} ago, at ${info.notAfter.toISOString()} (serial ${info.serial}); renew with \`mutual ca renew\`` });
  }
  const ca = st.ca;
  if (now >= ca.validFrom && now < ca.validUntil) return;
  for (const [i, c] of ca.path.entries()) {
    if (now < c.notBefore.getTime() || now >= c.notAfter.getTime()) throw chainTimeError(c, `"${c.subject}" (${i === 0 ? 'the client CA' : 'its root'}, serial ${c.serial})`, now, who, 'configured');
  }
}

/**
 * Checks the issuers of a chain OpenSSL refused, leaf's issuer first, and throws the first
 * problem found: an issuer that is not a CA or breaks a path length (CERT_UNTRUSTED), one with an
 * unknown critical extension or a weak key, one outside its validity (CERT_CHAIN_EXPIRED), one
 * whose EKU excludes client authentication (CERT_WRONG_EKU). Returns when none applies.
 */
export function explainIssuers(issuers: readonly Buffer[], st: CheckedLeaf, now: number): void {
  const who = { serial: st.info.serial, identity: st.identity.spiffeId ?? st.info.subject };
  // CA certificates between the one being checked and the leaf, not counting self-issued ones (RFC 5280 4.2.1.9).
  let below = 0;
  for (let i = 0; i < issuers.length && i < MAX_EXPLAINED_CHAIN; i++) {
    let info: CertificateInfo;
    try {
      info = parseCertificate(issuers[i]);
    } catch {
      throw new MutualError('CERT_UNTRUSTED', { ...who, detail: `the issuer certificate at depth ${i + 1} of the chain cannot be read` });
    }
    const name = `"${info.subject}" (depth ${i + 1} of the chain, serial ${info.serial})`;
    if (!info.isCa) throw new MutualError('CERT_UNTRUSTED', { ...who, detail: `the issuer ${name} is not a CA certificate (basicConstraints)` });
    if (info.pathLen !== undefined && below > info.pathLen) throw new MutualError('CERT_UNTRUSTED', { ...who, detail: `the issuer ${name} allows ${info.pathLen} CA certificate(s) below it, the chain has ${below}` });
    const problem = certificateProblem(info, `the issuer ${name}`);
    if (problem) throw new MutualError(problem.code, { ...who, detail: problem.detail });
    if (now < info.notBefore.getTime() || now >= info.notAfter.getTime()) throw chainTimeError(info, name, now, who, 'sent in the chain');
    if (info.eku.length > 0 && !info.eku.includes(OID.clientAuth) && !info.eku.includes(ANY_EKU)) {
      throw new MutualError('CERT_WRONG_EKU', { ...who, detail: `the issuer ${name} is not allowed to issue client certificates (EKU ${info.eku.join(', ')})` });
    }
    if (!info.subjectName.equals(info.issuerName)) below++;
  }
}

/** True when `der` (a certificate) is signed by `key` (a KeyObject or a DER SPKI). */
function signedBy(der: Buffer, key: KeyObject | Buffer): boolean {
  try {
    const k = Buffer.isBuffer(key) ? crypto.createPublicKey({ key, format: 'der', type: 'spki' }) : key;
    return new X509Certificate(der).verify(k);
  } catch {
    return false;
  }
}

/**
 * What is wrong with a certificate of the path regardless of time and issuer: a critical extension
 * nobody processes (RFC 5280 4.2), a signature algorithm mutual does not accept (SHA-1), or a weak
 * key (RSA under 2048 bits or with an exponent outside 65537..2^256-1, curves other than
 * P-256/P-384; the same key rules as issuance).
 */
export function certificateProblem(info: CertificateInfo, what: string): { code: ErrorCode; detail: string } | undefined {
  const unknown = info.criticalExtensions.filter((o) => !PROCESSED_CRITICAL_EXTENSIONS.has(o));
  if (unknown.length) return { code: 'CERT_CRITICAL_EXTENSION', detail: `${what} has the critical extension ${unknown.join(', ')}, which this verifier does not process` };
  if (!info.signatureScheme) return { code: 'CERT_WEAK', detail: `${what} is signed with ${info.signatureOid}, which mutual does not accept (SHA-1, RSASSA-PSS with SHA-1 or a mask hash other than its own, or an unknown algorithm)` };
  let label: string;
  try {
    label = describeSpki(info.spki).label;
  } catch (e) {
    return { code: 'CERT_WEAK', detail: `${what} has a weak key: ${isMutualError(e) ? e.fields.detail ?? e.message : 'unreadable public key'}` };
  }
  if (label.startsWith('RSA')) {
    let e: bigint | undefined;
    try {
      e = crypto.createPublicKey({ key: info.spki, format: 'der', type: 'spki' }).asymmetricKeyDetails?.publicExponent;
    } catch {
      e = undefined;
    }
    if (e === undefined || e % 2n === 0n || e < MIN_RSA_EXPONENT || e >= RSA_EXPONENT_LIMIT) {
      return { code: 'CERT_WEAK', detail: `${what} has a weak key: ${label} with public exponent ${e ?? 'unreadable'} (must be odd, at least 65537 and below 2^256)` };
    }
  }
  return undefined;
}

/** CERT_CHAIN_EXPIRED for a CA certificate of the path outside its validity. */
function chainTimeError(c: CertificateInfo, name: string, now: number, who: MutualErrorFields, source: string): MutualError {
  const early = now < c.notBefore.getTime();
  const when = early ? `is valid only from ${c.notBefore.toISOString()}` : `expired ${daysText(now - c.notAfter.getTime())} ago, at ${c.notAfter.toISOString()}`;
  return new MutualError('CERT_CHAIN_EXPIRED', { ...who, notBefore: c.notBefore, notAfter: c.notAfter, detail: `the CA certificate ${name}, ${source}, ${when}; ${source === 'sent in the chain' ? 'the client must send the current client CA certificate with its own (fullchain.pem)' : 'renew the CA certificate and update the trust bundles'}` });
}
