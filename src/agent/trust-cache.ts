/**
 * The agent's copy of the CA's public material (`<stateDir>/trust/`): the pinned root, the two
 * intermediates, and the last good CRL of each issuer, checked before they were saved. Trust
 * files and templates are rendered from here, so a CA outage changes nothing on disk.
 */
import fs from 'node:fs';
import path from 'node:path';
import { toPem } from '../core/pem.ts';
import { writeFileAtomic } from '../io/atomic-file.ts';
import { checkCrl, type CrlInfo } from './crl-check.ts';
import type { BundlePart, CrlIssuer } from './manifest.ts';

/** The CA certificate that signs each issuer's CRL. */
export const CRL_SIGNER: Record<CrlIssuer, BundlePart> = { root: 'root', server: 'server-ca', client: 'client-ca' };

/** Reads and writes `<stateDir>/trust/`. */
export class TrustCache {
  readonly dir: string;
  #parsed = new Map<string, { der: Buffer; info: CrlInfo }>();

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'trust');
  }

  #read(name: string): Buffer | undefined {
    try {
      return fs.readFileSync(path.join(this.dir, name));
    } catch {
      return undefined;
    }
  }

  /** A CA certificate (PEM), if cached. */
  caCertificate(part: BundlePart): string | undefined {
    return this.#read(`${part}.pem`)?.toString('utf8');
  }

  /** An issuer's CRL (DER), if cached. */
  crl(issuer: CrlIssuer): Buffer | undefined {
    return this.#read(`crl-${issuer}.der`);
  }

  /**
   * The parsed cached CRL of an issuer. Its signature is checked again against the cached CA
   * certificate (the cache is a file others could write); freshness is the caller's concern.
   */
  crlInfo(issuer: CrlIssuer): CrlInfo | undefined {
    const der = this.crl(issuer);
    const signer = this.caCertificate(CRL_SIGNER[issuer]);
    if (!der || !signer) return undefined;
    const hit = this.#parsed.get(issuer);
    if (hit && hit.der.equals(der)) return hit.info;
    try {
      const info = checkCrl(der, signer, new Date(0), `cached ${issuer} CRL`);
      this.#parsed.set(issuer, { der, info });
      return info;
    } catch {
      return undefined;
    }
  }

  /** Saves a checked CA certificate. */
  saveCaCertificate(part: BundlePart, pem: string): void {
    writeFileAtomic(path.join(this.dir, `${part}.pem`), pem, { mode: 0o644, dirMode: 0o711 });
  }

  /** Saves a checked CRL (DER). */
  saveCrl(issuer: CrlIssuer, der: Buffer): void {
    writeFileAtomic(path.join(this.dir, `crl-${issuer}.der`), der, { mode: 0o644, dirMode: 0o711 });
  }

  /** The PEM bundle of the given parts, or undefined when one is not cached yet. */
  bundle(parts: BundlePart[]): string | undefined {
    const pems = parts.map((p) => this.caCertificate(p));
    return pems.every((p) => p !== undefined) ? pems.join('') : undefined;
  }

  /** The CRLs of the given issuers as one PEM text (or one DER), or undefined when one is missing. */
  crls(issuers: CrlIssuer[], format: 'pem' | 'der' = 'pem'): Buffer | undefined {
    const ders = issuers.map((i) => this.crl(i));
    if (!ders.every((d) => d !== undefined)) return undefined;
    if (format === 'der') return ders[0];
    return Buffer.from(ders.map((d) => toPem(d!, 'X509 CRL')).join(''));
  }
}
