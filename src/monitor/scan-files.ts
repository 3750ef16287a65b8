/**
 * Certificate files and folders on a host as a monitor source: PEM (one or many certificates, e.g.
 * fullchain.pem), DER, and PKCS#12 (.p12/.pfx, with a password file). Every file that cannot be
 * read or parsed becomes a finding and the scan carries on. Each distinct certificate (by
 * fingerprint) is checked once, however many files hold it (an intermediate is in every fullchain).
 */
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { MutualError, isMutualError, type ErrorCode } from '../core/errors.ts';
import { readCertificateDers } from '../core/pem.ts';
import { certificateLabel, checkCertificate, issuerLabel } from './check-certificate.ts';
import { makeFinding, type Finding } from './finding.ts';
import type { FilesSourceConfig } from './monitor-config.ts';
import type { CertificateObservation } from './scan-inventory.ts';

/** Largest certificate file read (a fullchain is a few KB; a PKCS#12 bundle tens of KB). */
export const MAX_CERT_FILE_BYTES = 1024 * 1024;
/** Most PEM blocks read from one file. */
export const MAX_PEM_BLOCKS = 64;
/** PEM labels read as certificates: OpenSSL's TRUSTED CERTIFICATE files are certificates people deploy too. */
const SCANNED_LABELS = ['CERTIFICATE', 'TRUSTED CERTIFICATE'];
/** Most files read under one folder source. */
export const MAX_FILES_PER_SOURCE = 10_000;
/** Deepest folder level walked. */
export const MAX_WALK_DEPTH = 8;
/** Largest password file read. */
export const MAX_PASSWORD_FILE_BYTES = 4096;

/** File names a folder walk reads (a file named directly is always read). */
export const CERT_FILE_RE = /\.(pem|crt|cer|cert|der|p12|pfx)$/i;
const P12_RE = /\.(p12|pfx)$/i;

/** One certificate read from a file. */
export interface FileCertificate {
  file: string;
  info: CertificateInfo;
}

/** Options of {@link scanFiles}. */
export interface ScanFilesOptions {
  sources: readonly FilesSourceConfig[];
  now: Date;
  thresholdsDays: readonly number[];
  caThresholdsDays: readonly number[];
  criticalDays: number;
  /** Fingerprints already checked by another source (the CA's own certificates): skipped here. */
  seen?: Set<string>;
}

/** What a files scan found. */
export interface FilesScanResult {
  findings: Finding[];
  certificates: CertificateObservation[];
  files: number;
  /** Each file read and its certificates (DER, in file order), for the root rollover's findings. */
  read: { file: string; ders: Buffer[] }[];
}

const unreadable = (file: string, code: ErrorCode, detail: string): Finding =>
  makeFinding({ kind: 'unreadable', severity: 'warning', code, source: `file:${file}`, subject: file, message: `${file}: ${detail}`, key: `file:${file}` });

/** Lists the files of one source, bounded in count and depth; unreadable folders become findings. */
function listFiles(src: FilesSourceConfig, findings: Finding[]): string[] {
  const out: string[] = [];
  let st: fs.Stats;
  try {
    st = fs.statSync(src.path);
  } catch (e) {
    findings.push(unreadable(src.path, 'MONITOR_SOURCE_UNREADABLE', (e as NodeJS.ErrnoException).code ?? (e as Error).message));
    return out;
  }
  if (st.isFile()) return [src.path];
  const walk = (dir: string, depth: number): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      findings.push(unreadable(dir, 'MONITOR_SOURCE_UNREADABLE', (e as NodeJS.ErrnoException).code ?? (e as Error).message));
      return;
    }
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const d of entries) {
      if (out.length >= MAX_FILES_PER_SOURCE) return;
      const p = path.join(dir, d.name);
      // Symlinked folders are not followed (no loops); symlinked files are read.
      if (d.isDirectory()) {
        if (src.recursive && depth < MAX_WALK_DEPTH) walk(p, depth + 1);
      } else if ((d.isFile() || d.isSymbolicLink()) && CERT_FILE_RE.test(d.name)) out.push(p);
    }
  };
  walk(src.path, 0);
  if (out.length >= MAX_FILES_PER_SOURCE) {
    findings.push(unreadable(src.path, 'MONITOR_SOURCE_UNREADABLE', `more than ${MAX_FILES_PER_SOURCE} certificate files; the rest were not read`));
  }
  return out;
}

/** Reads the certificates of one file. Throws MutualError, or the system's error (ENOENT...) from fs. */
export function readCertificateFile(file: string, password?: string): CertificateInfo[] {
  const st = fs.statSync(file);
  if (!st.isFile()) throw new MutualError('MONITOR_SOURCE_UNREADABLE', { detail: 'not a regular file' });
  if (st.size > MAX_CERT_FILE_BYTES) throw new MutualError('MONITOR_SOURCE_UNREADABLE', { detail: `larger than ${MAX_CERT_FILE_BYTES} bytes` });
  const bytes = fs.readFileSync(file);
  if (P12_RE.test(file)) return [readPkcs12Leaf(bytes, password)];
  // A key or CSR beside the certificates is not ours to judge (skipped); anything else is not a certificate (PEM_MALFORMED).
  return readCertificateDers(bytes, { maxBytes: MAX_CERT_FILE_BYTES, maxBlocks: MAX_PEM_BLOCKS, labels: SCANNED_LABELS }).map((der) => parseCertificate(der));
}

/**
 * The leaf certificate of a PKCS#12 bundle. OpenSSL (through a TLS secure context) decrypts and
 * checks the MAC, whatever the bundle's algorithms; a wrong or missing password fails there.
 */
function readPkcs12Leaf(bytes: Buffer, password: string | undefined): CertificateInfo {
  let ctx: tls.SecureContext;
  try {
    ctx = tls.createSecureContext({ pfx: bytes, passphrase: password ?? '' });
  } catch (e) {
    const msg = (e as Error).message;
    const detail = /mac verify|password|decrypt/i.test(msg) ? `PKCS#12: ${password === undefined ? 'no passwordFile configured' : 'wrong password'} (${msg})` : `PKCS#12: ${msg}`;
    throw new MutualError('MONITOR_SOURCE_UNREADABLE', { detail });
  }
  // A socket that never connects exposes the context's certificate through the public API.
  const socket = new tls.TLSSocket(null as never, { secureContext: ctx });
  try {
    const local = socket.getCertificate();
    const raw = local && 'raw' in local ? (local as tls.PeerCertificate).raw : undefined;
    if (!raw) throw new MutualError('CERT_MALFORMED', { detail: 'PKCS#12 without a certificate' });
    return parseCertificate(raw);
  } finally {
    socket.destroy();
  }
}

function readPassword(file: string | undefined): string | undefined {
  if (!file) return undefined;
  const st = fs.statSync(file);
  if (st.size > MAX_PASSWORD_FILE_BYTES) throw new MutualError('MONITOR_SOURCE_UNREADABLE', { detail: `password file ${file} is larger than ${MAX_PASSWORD_FILE_BYTES} bytes` });
  return fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
}

/** Scans the configured files and folders. */
export function scanFiles(o: ScanFilesOptions): FilesScanResult {
  const findings: Finding[] = [];
  const certificates: CertificateObservation[] = [];
  const seen = o.seen ?? new Set<string>();
  const read: FilesScanResult['read'] = [];
  let files = 0;
  for (const src of o.sources) {
    let password: string | undefined;
    try {
      password = readPassword(src.passwordFile);
    } catch (e) {
      findings.push(unreadable(src.passwordFile!, 'MONITOR_SOURCE_UNREADABLE', isMutualError(e) ? e.message : (e as NodeJS.ErrnoException).code ?? (e as Error).message));
    }
    for (const file of listFiles(src, findings)) {
      files++;
      let certs: CertificateInfo[];
      try {
        certs = readCertificateFile(file, password);
      } catch (e) {
        const code: ErrorCode = isMutualError(e) ? e.code : 'MONITOR_SOURCE_UNREADABLE';
        const detail = isMutualError(e) ? e.message : (e as NodeJS.ErrnoException).code ? `${(e as NodeJS.ErrnoException).code}: ${(e as Error).message}` : (e as Error).message;
        findings.push(unreadable(file, code, detail));
        continue;
      }
      read.push({ file, ders: certs.map((c) => c.der) });
      for (const info of certs) {
        if (seen.has(info.fingerprint)) continue;
        seen.add(info.fingerprint);
        const source = `file:${file}`;
        certificates.push({ identity: certificateLabel(info), issuer: issuerLabel(info), source, serial: info.serial, notAfter: info.notAfter });
        findings.push(...checkCertificate(info, { source, now: o.now, thresholdsDays: info.isCa ? o.caThresholdsDays : o.thresholdsDays, criticalDays: o.criticalDays }));
      }
    }
  }
  return { findings, certificates, files, read };
}
