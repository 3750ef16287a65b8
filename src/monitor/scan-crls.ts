/**
 * CRLs as a monitor source: each one fetched (http/https) or read, parsed, its signature checked
 * against the CA certificate that issued it (when the monitor knows it), and judged by its
 * nextUpdate: past it, the CRL is stale and strict verifiers refuse every certificate of that CA;
 * close to it, whatever renews it is not running. The revoked serials are kept for the
 * "revoked but still served" check of the endpoints.
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import type { CertificateInfo } from '../core/certificate.ts';
import { MAX_CRL_BYTES, parseCrl, verifyCrlSignature, type CrlInfo } from '../core/crl-reader.ts';
import { MutualError, isMutualError } from '../core/errors.ts';
import { readPemOrDer } from '../core/pem.ts';
import { humanDuration, makeFinding, type Finding } from './finding.ts';
import { createFetchBytes } from '../sdk/index.ts';

/** One CRL to read: a label for messages and a loader. */
export interface CrlInput {
  /** e.g. crl:https://ca.internal:8443/crl/root.crl or crl:/var/lib/mutual/ca/server.crl */
  source: string;
  /** The raw bytes (DER or PEM); parsing is the scan's job, so garbage is a CRL finding, not a read error. */
  load: () => Promise<Buffer>;
}

/** A CRL the monitor read. */
export interface CrlObservation {
  source: string;
  issuer: string;
  thisUpdate: Date;
  nextUpdate?: Date;
  entries: number;
  /** Signature checked against a known CA certificate: true, false, or undefined when the CA is unknown. */
  signatureOk?: boolean;
}

/** Revoked serials from the CRLs read, by issuer. */
export class RevocationIndex {
  readonly #byIssuer = new Map<string, { crl: CrlInfo; source: string }[]>();

  /** Adds a CRL. */
  add(crl: CrlInfo, source: string): void {
    const k = crl.issuerName.toString('hex');
    const list = this.#byIssuer.get(k) ?? [];
    list.push({ crl, source });
    this.#byIssuer.set(k, list);
  }

  /** How `cert` is revoked, if one of the CRLs of its issuer lists it. */
  lookup(cert: CertificateInfo): { revokedAt: Date; via: string } | undefined {
    for (const { crl, source } of this.#byIssuer.get(cert.issuerName.toString('hex')) ?? []) {
      const i = crl.revoked.get(cert.serial);
      if (i !== undefined) return { revokedAt: new Date(crl.revokedAt[i]), via: `listed in ${source.replace(/^crl:/, '')}` };
    }
    return undefined;
  }
}

/** Options of {@link scanCrls}. */
export interface ScanCrlsOptions {
  inputs: readonly CrlInput[];
  /** CA certificates the monitor knows, to check CRL signatures. */
  caCertificates: readonly CertificateInfo[];
  now: Date;
  /** Warn when less than this fraction of the CRL's lifetime is left. */
  warnFraction: number;
  /** Added to; default a new index. */
  index?: RevocationIndex;
}

/** Reads a CRL file's bytes (DER or PEM), bounded. */
export function readCrlFile(file: string): Buffer {
  const st = fs.statSync(file);
  if (st.size > MAX_CRL_BYTES * 2) throw new MutualError('MONITOR_SOURCE_UNREADABLE', { detail: `larger than ${MAX_CRL_BYTES} bytes` });
  return fs.readFileSync(file);
}

/** A loader for a CRL URL (bounded download; PEM or DER). */
export function crlFromUrl(url: string, o: { timeoutMs: number; ca?: string }): CrlInput {
  const fetchBytes = createFetchBytes({ ca: o.ca, timeoutMs: o.timeoutMs, userAgent: 'mutual-monitor' });
  return {
    source: `crl:${url}`,
    load: async () => {
      // The monitor reports every source it cannot read under one code, whatever the fetcher's reason.
      const r = await fetchBytes(url, { maxBytes: MAX_CRL_BYTES * 2 }).catch((e: unknown) => {
        throw isMutualError(e, 'FETCH_FAILED') ? new MutualError('MONITOR_SOURCE_UNREADABLE', { reason: e.fields.reason, detail: e.fields.detail }, { cause: e }) : e;
      });
      if (r.status < 200 || r.status >= 300) throw new MutualError('MONITOR_SOURCE_UNREADABLE', { reason: 'EHTTP', detail: `HTTP ${r.status}` });
      return r.body;
    },
  };
}

/** A loader for a CRL file. */
export function crlFromFile(file: string): CrlInput {
  return { source: `crl:${file}`, load: async () => readCrlFile(file) };
}

/** Scans CRLs. */
export async function scanCrls(o: ScanCrlsOptions): Promise<{ findings: Finding[]; crls: CrlObservation[]; index: RevocationIndex }> {
  const findings: Finding[] = [];
  const crls: CrlObservation[] = [];
  const index = o.index ?? new RevocationIndex();
  await Promise.all(o.inputs.map(async (input) => {
    let der: Buffer;
    try {
      der = await input.load();
    } catch (e) {
      const detail = isMutualError(e) ? e.message : `${(e as NodeJS.ErrnoException).code ?? 'ERR'}: ${(e as Error).message}`;
      findings.push(makeFinding({ kind: 'unreadable', severity: 'warning', code: isMutualError(e) ? e.code : 'MONITOR_SOURCE_UNREADABLE', source: input.source,
        subject: input.source.replace(/^crl:/, ''), message: `The CRL ${input.source.replace(/^crl:/, '')} could not be read: ${detail}`,
        fix: 'Check the URL or path; a CRL that cannot be fetched makes strict verifiers refuse every certificate of its CA.' }));
      return;
    }
    let crl: CrlInfo;
    try {
      crl = parseCrl(readPemOrDer(der, ['X509 CRL', 'CRL'], MAX_CRL_BYTES));
    } catch (e) {
      findings.push(makeFinding({ kind: 'crl-invalid', severity: 'critical', code: isMutualError(e) ? e.code : 'CRL_MALFORMED', source: input.source,
        subject: input.source.replace(/^crl:/, ''), message: `The CRL ${input.source.replace(/^crl:/, '')} is not a usable CRL: ${(e as Error).message}` }));
      return;
    }
    const issuerCert = o.caCertificates.find((c) => c.subjectName.equals(crl.issuerName));
    const signatureOk = issuerCert ? verifyCrlSignature(crl, crypto.createPublicKey({ key: issuerCert.spki, format: 'der', type: 'spki' })) : undefined;
    crls.push({ source: input.source, issuer: crl.issuer, thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate, entries: crl.revoked.size, signatureOk });
    const base = { source: input.source, subject: `CRL of ${crl.issuer}`, issuer: crl.issuer, notAfter: crl.nextUpdate };
    const isRoot = issuerCert ? issuerCert.issuerName.equals(issuerCert.subjectName) : /Root/i.test(crl.issuer);
    const role = /Server/i.test(crl.issuer) ? 'server' : /Client/i.test(crl.issuer) ? 'client' : 'server|client';
    const fix = isRoot
      ? 'Renew the root CRL on the offline machine: `mutual offline crl`, then copy root.crl into the CA\'s <home>/ca/ (and wherever it is served).'
      : `Keep \`mutual serve\` running (it rebuilds CRLs at half their lifetime), or rebuild it now: \`mutual crl --issuer ${role}\`.`;
    if (signatureOk === false) {
      findings.push(makeFinding({ ...base, kind: 'crl-invalid', severity: 'critical', code: 'CRL_BAD_SIGNATURE',
        message: `The CRL ${input.source.replace(/^crl:/, '')} is not signed by "${crl.issuer}" (or with SHA-1)` }));
      return;
    }
    index.add(crl, input.source);
    if (!crl.nextUpdate) return;
    const left = crl.nextUpdate.getTime() - o.now.getTime();
    const lifetime = crl.nextUpdate.getTime() - crl.thisUpdate.getTime();
    if (left <= 0) {
      findings.push(makeFinding({ ...base, kind: 'crl-stale', severity: 'critical', code: 'CRL_STALE',
        message: `The CRL of ${crl.issuer} went stale ${humanDuration(-left)} ago (nextUpdate ${crl.nextUpdate.toISOString()}); verifiers that check CRLs now refuse its certificates`, fix }));
    } else if (left < o.warnFraction * lifetime) {
      findings.push(makeFinding({ ...base, kind: 'crl-expiring', severity: 'warning', code: 'CRL_STALE',
        message: `The CRL of ${crl.issuer} goes stale in ${humanDuration(left)} (nextUpdate ${crl.nextUpdate.toISOString()})`, fix }));
    }
  }));
  return { findings, crls, index };
}
