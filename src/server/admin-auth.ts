/**
 * Who may call the admin routes of `mutual serve` (sign, revoke, list, get, tokens): a client
 * certificate that OpenSSL chained to a client CA of this CA, with EKU clientAuth and an identity
 * matching the admin patterns, that is not revoked: not in this replica's revocation set, and not
 * revoked in the store the replicas share.
 *
 * The store is read per admin request (issue 13, item 9): the revocation set follows other replicas
 * only at its next poll (REVOCATION_POLL_MS), so an admin revoked on replica A kept signing on
 * replica B for up to a second. A revocation is committed to the shared store before its call
 * returns; one indexed read (issuer key id, serial), and only for certificates that could be an
 * admin's, makes every replica refuse it from that moment. Admin calls are rare.
 */
import type { InventoryQueries } from '../ca/store.ts';
import { certificateIdentity, type CertificateInfo } from '../core/certificate.ts';
import { MutualError } from '../core/errors.ts';
import { matchIdentity } from '../core/identity.ts';
import { OID } from '../core/oids.ts';

/**
 * The inventory's word on a presented admin certificate: `mismatch` when the row of that serial
 * holds other bytes; `unrecorded` when the store has no row (an admin certificate made by
 * `mutual init` on SQLite, used by replicas on PostgreSQL: it cannot be revoked there, so it is refused).
 */
export type AdminStatus = 'valid' | 'revoked' | 'mismatch' | 'unrecorded';

/** Options for {@link AdminAuthenticator}. */
export interface AdminAuthenticatorOptions {
  /** Identity patterns of the admins (`spiffe://<td>/admin/*`). */
  admins: string[];
  /** Key ids (hex) of the client CAs whose certificates may be admins': the current one and retired ones still valid. */
  issuerKeyIds: Iterable<string>;
  store: Pick<InventoryQueries, 'getCertificate'>;
  /** This replica's revocation set (serial, lowercase hex). */
  isRevoked: (serial: string) => boolean;
}

/** See the module comment. */
export class AdminAuthenticator {
  readonly #admins: string[];
  readonly #store: Pick<InventoryQueries, 'getCertificate'>;
  readonly #isRevoked: (serial: string) => boolean;
  #issuers: Set<string>;

  constructor(o: AdminAuthenticatorOptions) {
    this.#admins = o.admins;
    this.#store = o.store;
    this.#isRevoked = o.isRevoked;
    this.#issuers = new Set(o.issuerKeyIds);
  }

  /** Replaces the admin issuers (after a reload of the intermediates). */
  setIssuers(keyIds: Iterable<string>): void {
    this.#issuers = new Set(keyIds);
  }

  /**
   * The store's word on the presented certificate, or undefined when it could not be an admin's
   * anyway (no read is made then).
   */
  async readStatus(peer: CertificateInfo | undefined, chainOk: boolean): Promise<AdminStatus | undefined> {
    if (!peer || !this.#isClientCertOfThisCa(peer, chainOk) || !this.#isAdminIdentity(peer)) return undefined;
    const stored = await this.#store.getCertificate(peer.serial, peer.authorityKeyId!.toString('hex'));
    return !stored ? 'unrecorded' : !stored.der.equals(peer.der) ? 'mismatch' : stored.status;
  }

  /**
   * Returns the admin's identity, or throws AUTH_REQUIRED (no certificate), AUTH_FORBIDDEN (not a
   * client certificate of this CA, not an admin identity, or the inventory holds other bytes under
   * its serial) or CERT_REVOKED. `status` is what {@link readStatus} returned for this request;
   * an admin certificate without it is refused (fail closed: a route that forgot to read it).
   */
  require(peer: CertificateInfo | undefined, chainOk: boolean, status: AdminStatus | undefined): string {
    if (!peer) throw new MutualError('AUTH_REQUIRED', { detail: 'no client certificate' });
    if (!this.#isClientCertOfThisCa(peer, chainOk)) {
      throw new MutualError('AUTH_FORBIDDEN', { detail: 'the client certificate is not a valid client certificate of this CA' });
    }
    if (this.#isRevoked(peer.serial) || status === 'revoked') throw new MutualError('CERT_REVOKED', { serial: peer.serial, detail: peer.serial });
    if (!this.#isAdminIdentity(peer)) throw new MutualError('AUTH_FORBIDDEN', { detail: `${certificateIdentity(peer) ?? peer.subject} is not an admin` });
    // A programmer error (a route that did not call readStatus), not a refusal of input: TypeError, a 500.
    if (status === undefined) throw new TypeError('AdminAuthenticator.require without readStatus for this request');
    if (status === 'mismatch') throw new MutualError('AUTH_FORBIDDEN', { detail: 'the inventory holds another certificate under this serial' });
    // Fail closed: a certificate the shared store does not know could not be revoked there, so it
    // is no admin credential (an admin made on a SQLite home before the replicas moved to PostgreSQL).
    if (status === 'unrecorded') {
      throw new MutualError('AUTH_FORBIDDEN', { serial: peer.serial, detail: `the admin certificate (serial ${peer.serial}) is not in this CA's inventory, so it could not be revoked here; issue an admin certificate from the store the servers use (\`mutual issue client NAME --env admin\` with MUTUAL_DATABASE_URL or the config's database set)` });
    }
    return certificateIdentity(peer)!;
  }

  #isClientCertOfThisCa(peer: CertificateInfo, chainOk: boolean): boolean {
    return chainOk && this.#issuers.has(peer.authorityKeyId?.toString('hex') ?? '') && peer.eku.includes(OID.clientAuth);
  }

  #isAdminIdentity(peer: CertificateInfo): boolean {
    const id = certificateIdentity(peer);
    return id !== undefined && this.#admins.some((p) => matchIdentity(p, id));
  }
}
