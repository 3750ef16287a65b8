/**
 * The agent's copy of the CA's public material (`<stateDir>/trust/`): the pinned root, the two
 * intermediates, the intermediates retired by a key rotation that are still valid, and the last
 * good CRL of each, checked before they were saved. Trust files and templates are rendered from
 * here, so a CA outage changes nothing on disk.
 */
import fs from 'node:fs';
import path from 'node:path';
import { keyIdOf, parseCertificate } from '../core/certificate.ts';
import { readCertificateDers, toPem } from '../core/pem.ts';
import { writeFileAtomic } from '../io/index.ts';
import { checkCrl, type CrlInfo } from './crl-check.ts';
import type { BundlePart, CrlIssuer } from './manifest.ts';

/** The CA certificate that signs each issuer's CRL. */
export const CRL_SIGNER: Record<CrlIssuer, BundlePart> = { root: 'root', server: 'server-ca', client: 'client-ca' };

/** A leaf role's intermediates: the current one's bundle part and CRL issuer. */
export type LeafRole = 'server' | 'client';
const ROLE_OF: Partial<Record<BundlePart | CrlIssuer, LeafRole>> = { 'server-ca': 'server', 'client-ca': 'client', server: 'server', client: 'client' };

/**
 * Where a CRL is kept: an issuer's current CRL (`root`, `server`, `client`), or a retired
 * intermediate's, named as the CA names it: `client.<first 16 hex digits of its key id>`.
 */
export type CrlSlot = CrlIssuer | `${LeafRole}.${string}` | `root-${string}`;

/**
 * The slot of the CRL of a trusted root other than the one `/crl/root.crl` is from: during a root
 * rollover each root signs its own CRL (`/crl/root-<16 hex of its fingerprint>.crl`), and a
 * relying party that checks every level's CRL (nginx's ssl_crl, HAProxy's crl-file) needs one
 * for each root a chain may end at.
 */
export const rootSlot = (fingerprint: string): CrlSlot => `root-${fingerprint.slice(0, 16)}`;
const OTHER_ROOT_CRL = /^crl-root-[0-9a-f]{16}\.der$/;

/** The slot of a retired intermediate's CRL. */
export const retiredSlot = (role: LeafRole, keyId: string): CrlSlot => `${role}.${keyId.slice(0, 16)}`;

/** A retired intermediate as cached. */
export interface CachedRetired {
  role: LeafRole;
  pem: string;
  keyId: string;
  slot: CrlSlot;
  notAfter: Date;
}

/** Reads and writes `<stateDir>/trust/`. */
export class TrustCache {
  readonly dir: string;
  #parsed = new Map<string, { der: Buffer; signer: string; info: CrlInfo }>();

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

  /**
   * The retired intermediates of a role that are still valid at `now`, from
   * `<role>-ca.retired.pem` (checked against the pinned root when they were fetched).
   */
  retired(role: LeafRole, now: Date = new Date()): CachedRetired[] {
    const text = this.#read(`${role}-ca.retired.pem`)?.toString('utf8');
    if (!text) return [];
    const out: CachedRetired[] = [];
    try {
      for (const der of readCertificateDers(text, { maxBlocks: 16 })) {
        const info = parseCertificate(der);
        if (info.notAfter.getTime() <= now.getTime()) continue;
        const keyId = keyIdOf(info);
        out.push({ role, pem: toPem(der, 'CERTIFICATE'), keyId, slot: retiredSlot(role, keyId), notAfter: info.notAfter });
      }
    } catch {
      // Not what the agent wrote: as if none were cached (the next refresh writes it again).
      return [];
    }
    return out;
  }

  /** The CA certificate that signs a slot's CRL, if cached. */
  #signerOf(slot: CrlSlot): string | undefined {
    if (slot in CRL_SIGNER) return this.caCertificate(CRL_SIGNER[slot as CrlIssuer]);
    const role = slot.slice(0, slot.indexOf('.')) as LeafRole;
    return this.retired(role, new Date(0)).find((r) => r.slot === slot)?.pem;
  }

  /** A CRL (DER), if cached. */
  crl(slot: CrlSlot): Buffer | undefined {
    return this.#read(`crl-${slot}.der`);
  }

  /**
   * The parsed cached CRL of a slot. Its signature is checked again against the cached CA
   * certificate (the cache is a file others could write); freshness is the caller's concern.
   */
  crlInfo(slot: CrlSlot): CrlInfo | undefined {
    const der = this.crl(slot);
    const signer = this.#signerOf(slot);
    if (!der || !signer) return undefined;
    const hit = this.#parsed.get(slot);
    if (hit && hit.der.equals(der) && hit.signer === signer) return hit.info;
    try {
      const info = checkCrl(der, signer, new Date(0), `cached ${slot} CRL`);
      this.#parsed.set(slot, { der, signer, info });
      return info;
    } catch {
      return undefined;
    }
  }

  /**
   * The cached CRL that covers a certificate of a leaf role: the current intermediate's, or, for
   * one issued by a key since rotated away (its AKI names another key), that key's.
   */
  crlCovering(role: LeafRole, authorityKeyId: Buffer | undefined): CrlInfo | undefined {
    const crl = this.crlInfo(role);
    if (crl?.authorityKeyId && authorityKeyId && !authorityKeyId.equals(crl.authorityKeyId)) return this.crlInfo(retiredSlot(role, authorityKeyId.toString('hex')));
    return crl;
  }

  /** Every root trusted (PEM, the pinned root's set during a rollover, agent/root-set.ts), if cached. */
  roots(): string | undefined {
    return this.#read('roots.pem')?.toString('utf8');
  }

  /** Saves the checked set of trusted roots. */
  saveRoots(pem: string): void {
    writeFileAtomic(path.join(this.dir, 'roots.pem'), pem, { mode: 0o644, dirMode: 0o711 });
  }

  /** Saves a checked CA certificate. */
  saveCaCertificate(part: BundlePart, pem: string): void {
    writeFileAtomic(path.join(this.dir, `${part}.pem`), pem, { mode: 0o644, dirMode: 0o711 });
  }

  /**
   * Saves the checked retired intermediates of a role (none: the file goes), and drops the CRLs of
   * those no longer listed.
   */
  saveRetired(role: LeafRole, pems: string[]): void {
    const file = path.join(this.dir, `${role}-ca.retired.pem`);
    const text = pems.join('');
    if (text) {
      if (this.#read(`${role}-ca.retired.pem`)?.toString('utf8') !== text) writeFileAtomic(file, text, { mode: 0o644, dirMode: 0o711 });
    } else {
      fs.rmSync(file, { force: true });
    }
    const keep = new Set(this.retired(role, new Date(0)).map((r) => `crl-${r.slot}.der`));
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    const retiredCrl = new RegExp(`^crl-${role}\\.[0-9a-f]{16}\\.der$`);
    for (const n of names) if (retiredCrl.test(n) && !keep.has(n)) fs.rmSync(path.join(this.dir, n), { force: true });
  }

  /** Drops the cached CRLs of other roots (see {@link rootSlot}) not in `keep`. */
  keepRootCrls(keep: readonly CrlSlot[]): void {
    const names = new Set(keep.map((s) => `crl-${s}.der`));
    let files: string[] = [];
    try {
      files = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    for (const n of files) if (OTHER_ROOT_CRL.test(n) && !names.has(n)) fs.rmSync(path.join(this.dir, n), { force: true });
  }

  /** The cached CRLs of the other trusted roots, during a rollover. */
  #otherRootCrls(): Buffer[] {
    let files: string[] = [];
    try {
      files = fs.readdirSync(this.dir);
    } catch {
      return [];
    }
    return files.filter((n) => OTHER_ROOT_CRL.test(n)).sort().map((n) => this.#read(n)).filter((d): d is Buffer => d !== undefined);
  }

  /** Saves a checked CRL (DER). */
  saveCrl(slot: CrlSlot, der: Buffer): void {
    writeFileAtomic(path.join(this.dir, `crl-${slot}.der`), der, { mode: 0o644, dirMode: 0o711 });
  }

  /**
   * The PEM bundle of the given parts, or undefined when one is not cached yet. An intermediate's
   * part brings the retired intermediates of its role still valid at `now`: after a key
   * rotation a relying party must still accept what the old key issued until it expires. The
   * `root` part is every trusted root (during a root rollover, old and new) once the set is cached.
   */
  bundle(parts: BundlePart[], now: Date = new Date()): string | undefined {
    const pems: (string | undefined)[] = [];
    for (const p of parts) {
      pems.push(p === 'root' ? (this.roots() ?? this.caCertificate(p)) : this.caCertificate(p));
      const role = ROLE_OF[p];
      if (role) for (const r of this.retired(role, now)) pems.push(r.pem);
    }
    return pems.every((p) => p !== undefined) ? pems.join('') : undefined;
  }

  /**
   * The CRLs of the given issuers as one PEM text (or one DER), or undefined when one is missing.
   * In PEM an intermediate's CRL comes with those of its role's retired intermediates valid at
   * `now` (a relying party checking with every CRL needs one per CA). A DER file holds one CRL:
   * the current key's.
   */
  crls(issuers: CrlIssuer[], format: 'pem' | 'der' = 'pem', now: Date = new Date()): Buffer | undefined {
    const ders = issuers.map((i) => this.crl(i));
    if (!ders.every((d) => d !== undefined)) return undefined;
    if (format === 'der') return ders[0];
    const all: Buffer[] = [];
    for (const [k, i] of issuers.entries()) {
      all.push(ders[k]!);
      if (i === 'root') all.push(...this.#otherRootCrls());
      const role = ROLE_OF[i];
      if (!role) continue;
      for (const r of this.retired(role, now)) {
        const der = this.crl(r.slot);
        if (der) all.push(der);
      }
    }
    return Buffer.from(all.map((d) => toPem(d, 'X509 CRL')).join(''));
  }
}
