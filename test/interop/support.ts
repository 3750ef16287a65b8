/**
 * Shared helpers for the interop tests: OpenSSL as the judge of chains, certificates and CRLs.
 * Every caller checks `requireTool(t, 'openssl')` first.
 */
import { openssl, run, type RunResult } from '../helpers/tools.ts';
import { toPem } from '../../src/core/pem.ts';

/** The fixed clock of the interop tests (CAs are made at this instant; OpenSSL checks with -attime). */
export const NOW = new Date('2027-03-01T09:30:00Z');

/** Seconds since the epoch, as `openssl verify -attime` wants them. */
export const epoch = (d: Date): string => String(Math.floor(d.getTime() / 1000));

/** Adds milliseconds to a date. */
export const plus = (d: Date, ms: number): Date => new Date(d.getTime() + ms);

export const MINUTE = 60_000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;

/** OpenSSL verify error numbers used in the tests (X509_V_ERR_*, include/openssl/x509_vfy.h). */
export const X509_ERR = {
  UNABLE_TO_GET_CRL: 3,
  CERT_NOT_YET_VALID: 9,
  CERT_HAS_EXPIRED: 10,
  CRL_HAS_EXPIRED: 12,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 20,
  CERT_REVOKED: 23,
  INVALID_PURPOSE: 26,
  PERMITTED_VIOLATION: 47,
} as const;

/** The text OpenSSL prints for each of those errors (X509_verify_cert_error_string). */
const X509_ERR_TEXT: Record<number, string> = {
  3: 'unable to get certificate CRL',
  9: 'certificate is not yet valid',
  10: 'certificate has expired',
  12: 'CRL has expired',
  20: 'unable to get local issuer certificate',
  23: 'certificate revoked',
  26: 'unsuitable certificate purpose',
  47: 'permitted subtree violation',
};

/** True when `openssl verify` failed with error `code` at `depth` (and OpenSSL's text for it). */
export function failedWith(r: VerifyResult, code: number, depth: number): boolean {
  return r.status !== 0 && r.errors.some((e) => e.code === code && e.depth === depth && (X509_ERR_TEXT[code] === undefined || e.text === X509_ERR_TEXT[code]));
}

/** One `error N at D depth lookup: text` line of `openssl verify`. */
export interface VerifyError {
  code: number;
  depth: number;
  text: string;
}

/** What `openssl verify` said. */
export interface VerifyResult extends RunResult {
  ok: boolean;
  errors: VerifyError[];
}

/** Options of {@link verify}. */
export interface VerifyOptions {
  /** The certificate file to check. */
  cert: string;
  purpose: 'sslserver' | 'sslclient';
  /** Trusted roots (PEM file). */
  caFile: string;
  /** Intermediates offered with the certificate (PEM file). */
  untrusted?: string;
  /** CRLs (PEM file); turns on -crl_check_all. */
  crlFile?: string;
  /** The verification time. */
  at: Date;
  /** `-auth_level`: the security level a TLS peer applies to chain keys (2 rejects RSA under 2048 bits). */
  authLevel?: number;
}

/** Runs `openssl verify -x509_strict -purpose ...` and parses its errors. */
export function verify(o: VerifyOptions): VerifyResult {
  const args = ['verify', '-x509_strict', '-attime', epoch(o.at), '-purpose', o.purpose, '-CAfile', o.caFile];
  if (o.untrusted) args.push('-untrusted', o.untrusted);
  if (o.crlFile) args.push('-crl_check_all', '-CRLfile', o.crlFile);
  if (o.authLevel !== undefined) args.push('-auth_level', String(o.authLevel));
  args.push(o.cert);
  const r = openssl(args);
  const errors = [...(r.stdout + r.stderr).matchAll(/error (\d+) at (\d+) depth lookup: ([^\n]*)/g)]
    .map((m) => ({ code: Number(m[1]), depth: Number(m[2]), text: m[3].trim() }));
  return { ...r, ok: r.status === 0 && /: OK\s*$/.test(r.stdout), errors };
}

/** Describes a verify result for assertion messages. */
export const describeVerify = (r: RunResult): string => `status ${r.status}\n${r.stdout}${r.stderr}`;

/** A DER CRL as PEM with the right label. */
export const crlPem = (der: Uint8Array): string => toPem(der, 'X509 CRL');

/** `openssl x509 -text` of a PEM certificate file. */
export function x509Text(file: string): string {
  const r = openssl(['x509', '-in', file, '-noout', '-text']);
  if (r.status !== 0) throw new Error(`openssl x509 failed: ${r.stderr}`);
  return r.stdout;
}

/** The serial of a certificate as OpenSSL prints it (uppercase hex). */
export function x509Serial(file: string): string {
  const r = openssl(['x509', '-in', file, '-noout', '-serial']);
  const m = /serial=([0-9A-F]+)/.exec(r.stdout);
  if (!m) throw new Error(`no serial in ${r.stdout}${r.stderr}`);
  return m[1];
}

/** The times (UTCTime / GeneralizedTime values) in a DER/PEM object, as `openssl asn1parse` prints them. */
export function asn1Times(file: string, inform: 'PEM' | 'DER' = 'PEM'): string[] {
  const r = openssl(['asn1parse', '-inform', inform, '-in', file]);
  if (r.status !== 0) throw new Error(`openssl asn1parse failed: ${r.stderr}`);
  return [...r.stdout.matchAll(/(?:UTCTIME|GENERALIZEDTIME)\s*:(\S+)/g)].map((m) => m[1]);
}

/** One X509v3 extension in `openssl x509 -text` output. */
export interface TextExtension {
  critical: boolean;
  /** The value lines, trimmed and joined with newlines. */
  value: string;
}

/** The X509v3 extensions of `openssl x509 -text` (or `crl -text`) output, by their OpenSSL name. */
export function textExtensions(text: string): Map<string, TextExtension> {
  const out = new Map<string, TextExtension>();
  const lines = text.split('\n');
  const start = lines.findIndex((l) => /X509v3 extensions:|CRL extensions:/.test(l));
  if (start < 0) return out;
  const headerIndent = (lines[start + 1] ?? '').search(/\S/);
  let current: TextExtension | undefined;
  for (const line of lines.slice(start + 1)) {
    const indent = line.search(/\S/);
    if (indent < 0) continue;
    if (indent < headerIndent) break;
    if (indent === headerIndent) {
      const m = /^\s*(.+?):( critical)?\s*$/.exec(line);
      if (!m) break;
      current = { critical: Boolean(m[2]), value: '' };
      out.set(m[1], current);
    } else if (current) {
      current.value += (current.value ? '\n' : '') + line.trim();
    }
  }
  return out;
}

/** A key identifier as printed by OpenSSL, normalized to lowercase hex without colons or `keyid:`. */
export const keyIdHex = (v: string | undefined): string => (v ?? '').split('\n')[0].replace(/^keyid:/, '').replace(/:/g, '').toLowerCase();

/** One entry of `openssl crl -text`. */
export interface CrlTextEntry {
  /** Uppercase hex, as OpenSSL prints it. */
  serial: string;
  revocationDate: string;
  reason?: string;
}

/** Parsed `openssl crl -text` output. */
export interface CrlText {
  text: string;
  crlNumber?: bigint;
  lastUpdate?: string;
  nextUpdate?: string;
  authorityKeyId?: string;
  entries: CrlTextEntry[];
}

/** Reads a DER CRL with `openssl crl -text` (big CRLs are fine: the output buffer is sized for them). */
export function crlText(file: string): CrlText {
  const r = run('openssl', ['crl', '-inform', 'DER', '-in', file, '-noout', '-text'], { maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`openssl crl failed: ${r.stderr}`);
  const text = r.stdout;
  const exts = textExtensions(text);
  const num = exts.get('X509v3 CRL Number')?.value;
  const entries: CrlTextEntry[] = [];
  const revokedAt = text.indexOf('Revoked Certificates:');
  if (revokedAt >= 0) {
    const body = text.slice(revokedAt).split(/\n\s*Signature Algorithm:/)[0];
    for (const part of body.split(/Serial Number: /).slice(1)) {
      const serial = part.split('\n')[0].trim();
      const date = /Revocation Date: ([^\n]+)/.exec(part)?.[1].trim() ?? '';
      const reason = /CRL Reason Code:\s*\n\s*([^\n]+)/.exec(part)?.[1].trim();
      entries.push({ serial, revocationDate: date, reason });
    }
  }
  return {
    text,
    // OpenSSL prints small CRL numbers in decimal and large ones as 0x-hex; BigInt reads both.
    crlNumber: num === undefined ? undefined : BigInt(num.split('\n')[0].trim()),
    lastUpdate: /Last Update: ([^\n]+)/.exec(text)?.[1].trim(),
    nextUpdate: /Next Update: ([^\n]+)/.exec(text)?.[1].trim(),
    authorityKeyId: keyIdHex(exts.get('X509v3 Authority Key Identifier')?.value),
    entries,
  };
}

/** `openssl crl -verify` of a DER CRL against a CA file; true when OpenSSL says "verify OK". */
export function crlVerify(file: string, caFile: string): RunResult & { ok: boolean } {
  const r = openssl(['crl', '-inform', 'DER', '-in', file, '-noout', '-verify', '-CAfile', caFile]);
  return { ...r, ok: r.status === 0 && /verify OK/.test(r.stderr + r.stdout) };
}

/** OpenSSL's date format in `-text` output, e.g. `Mar  1 09:30:00 2027 GMT`. */
export function opensslDate(d: Date): string {
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${months[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()} GMT`;
}
