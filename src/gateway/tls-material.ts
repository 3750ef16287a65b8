/**
 * The gateway's TLS material: the trust bundle and client CAs, the {@link PeerVerifier} (with its
 * CRL files and revocation settings), the server certificate (files, watched, or enrolled with the
 * CA) and the client certificate for mTLS upstreams. {@link TlsMaterial.update} applies a new
 * config to them without a restart: what can fail is built first; then the verifier, identities
 * and bundles are swapped, each in one assignment.
 */
import fs from 'node:fs';
import { constants as cryptoConstants } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import { MutualError } from '../core/errors.ts';
import { PeerVerifier, loadIdentity, readCertificates, enrollIdentity, type IdentitySource, type FetchBytes } from '../sdk/index.ts';
import type { GatewayConfig } from './config.ts';
import type { UpstreamTlsMaterial } from './gateway-state.ts';

/** How often watched files are polled besides fs.watch (which misses events on some file systems). */
export const WATCH_POLL_MS = 2000;

/** Options of {@link TlsMaterial.load}. */
export interface TlsMaterialOptions {
  log: Logger;
  /** Watch certificate files and rotate on change. */
  watch: boolean;
  /** Fetcher for CRLs/OCSP (tests); default HTTPS trusting trust.ca. */
  fetch?: FetchBytes;
  now: () => Date;
}

/** What {@link TlsMaterial.update} changed. */
export interface TlsMaterialChanges {
  /** trust.ca's content changed (a new verifier, a new server context). */
  trustChanged: boolean;
  /** The server certificate's source changed (a new identity, a new server context). */
  serverChanged: boolean;
  /** The trust anchors for https upstreams changed. */
  upstreamCaChanged: boolean;
  /** The upstream client certificate that was replaced: close it once the pools using it are retired. */
  replacedUpstreamIdentity: IdentitySource | undefined;
}

const fileText = (f: string) => fs.readFileSync(f, 'utf8');

/** Throws CONFIG_INVALID naming the file when `text` is not a PEM bundle of certificates. */
function checkTrustFile(file: string, text: string): void {
  let count = 0;
  try {
    count = readCertificates(text).length;
  } catch (e) {
    throw new MutualError('CONFIG_INVALID', { detail: `${file}: not a PEM bundle of certificates (${errText(e)}); the bundle in force is kept` });
  }
  if (count === 0) throw new MutualError('CONFIG_INVALID', { detail: `${file} holds no certificate; the bundle in force is kept` });
}
const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** The gateway's certificates, trust and verifier; see the module doc. */
export class TlsMaterial implements UpstreamTlsMaterial {
  readonly #o: TlsMaterialOptions;
  #trustCa: string;
  #clientCas: string;
  #verifier!: PeerVerifier;
  #serverIdentity!: IdentitySource;
  #upstreamIdentity: IdentitySource | undefined;
  #upstreamCa: string;
  #onRotated: (() => void) | undefined;
  readonly #onServerIdentityError: (e: Error) => void;

  private constructor(c: GatewayConfig, o: TlsMaterialOptions) {
    this.#o = o;
    this.#trustCa = fileText(c.trust.ca);
    this.#clientCas = fileText(c.trust.clientCas);
    this.#upstreamCa = '';
    this.#onServerIdentityError = (e: Error) => o.log.warn({ err: e.message }, 'server certificate reload failed; the current one stays in use');
  }

  /** Reads and starts everything `c` names. Throws file errors, CONFIG_INVALID, KEY_MISMATCH. */
  static async load(c: GatewayConfig, o: TlsMaterialOptions): Promise<TlsMaterial> {
    const m = new TlsMaterial(c, o);
    m.#verifier = m.#makeVerifier(c, m.#trustCa, m.#clientCas);
    m.#loadCrlFiles(c);
    await m.#verifier.start();
    m.#serverIdentity = await m.#loadServerIdentity(c);
    m.#upstreamIdentity = m.#loadUpstreamIdentity(c);
    m.#upstreamCa = c.upstreamTls.ca ? fileText(c.upstreamTls.ca) : m.#trustCa;
    return m;
  }

  /** The verifier in use (replaced when trust or revocation settings change). */
  get verifier(): PeerVerifier {
    return this.#verifier;
  }

  get upstreamIdentity(): IdentitySource | undefined {
    return this.#upstreamIdentity;
  }

  get upstreamCa(): string {
    return this.#upstreamCa;
  }

  /** The server's TLS options: the current certificate, trust.ca for client certificates, tickets unless turned off. */
  serverOptions(sessionResumption: boolean): SecureContextOptions & { requestCert: true; rejectUnauthorized: false } {
    const id = this.#serverIdentity.current;
    return {
      cert: id.cert, key: id.key, ca: this.#trustCa, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' as const,
      ...(sessionResumption ? {} : { secureOptions: cryptoConstants.SSL_OP_NO_TICKET }),
    };
  }

  /** Calls `f` whenever the server certificate rotates (and after {@link update} replaces its source, for the new one). */
  onServerRotated(f: () => void): void {
    this.#onRotated = f;
    this.#serverIdentity.on('rotated', f);
    this.#serverIdentity.on('error', this.#onServerIdentityError);
  }

  /**
   * Applies `next` (the config was `prev`): reads every file first (a missing or bad one throws
   * and nothing changes), then swaps what changed. The caller sets the server's secure context
   * when trust or the server certificate changed, and closes the replaced upstream identity.
   */
  async update(prev: GatewayConfig, next: GatewayConfig): Promise<TlsMaterialChanges> {
    const nextTrustCa = fileText(next.trust.ca);
    const nextClientCas = fileText(next.trust.clientCas);
    const nextUpstreamCa = next.upstreamTls.ca ? fileText(next.upstreamTls.ca) : nextTrustCa;
    // Build everything that can fail before changing anything.
    const trustChanged = nextTrustCa !== this.#trustCa;
    const clientCasChanged = nextClientCas !== this.#clientCas;
    // A trust file that does not read as certificates (a bundle being rewritten, a bad edit) fails
    // the reload here, before anything is swapped: the bundles in force keep serving.
    if (trustChanged) checkTrustFile(next.trust.ca, nextTrustCa);
    if (clientCasChanged) checkTrustFile(next.trust.clientCas, nextClientCas);
    const revocationChanged = JSON.stringify({ ...prev.revocation, crlFiles: [] }) !== JSON.stringify({ ...next.revocation, crlFiles: [] });
    const serverTlsChanged = JSON.stringify(prev.tls) !== JSON.stringify(next.tls);
    const upstreamTlsChanged = prev.upstreamTls.cert !== next.upstreamTls.cert || prev.upstreamTls.key !== next.upstreamTls.key;
    const newServerIdentity = serverTlsChanged ? await this.#loadServerIdentity(next) : undefined;
    const newUpstreamIdentity = upstreamTlsChanged ? this.#loadUpstreamIdentity(next) : undefined;
    if (revocationChanged || trustChanged) {
      // A new verifier, with the new roots and client CAs, made and started before it replaces the old.
      const made = this.#makeVerifier(next, nextTrustCa, nextClientCas);
      // The CRLs the verifier in force learned of: fetched before the swap, so that no client is
      // refused fail-closed for want of a CRL its predecessor had (a root rollover changes trust.ca).
      made.learnCrlUrls(this.#verifier.learnedCrlUrls());
      await made.start();
      const old = this.#verifier;
      this.#verifier = made;
      this.#trustCa = nextTrustCa;
      this.#clientCas = nextClientCas;
      old.close();
    } else if (clientCasChanged) {
      this.#verifier.setClientCas(nextClientCas);
      this.#clientCas = nextClientCas;
    }
    this.#loadCrlFiles(next);
    if (newServerIdentity) {
      if (this.#onRotated) this.#serverIdentity.off('rotated', this.#onRotated);
      this.#serverIdentity.close();
      this.#serverIdentity = newServerIdentity;
      if (this.#onRotated) this.onServerRotated(this.#onRotated);
    }
    this.#trustCa = nextTrustCa;
    const replacedUpstreamIdentity = upstreamTlsChanged ? this.#upstreamIdentity : undefined;
    if (upstreamTlsChanged) this.#upstreamIdentity = newUpstreamIdentity;
    const upstreamCaChanged = nextUpstreamCa !== this.#upstreamCa;
    this.#upstreamCa = nextUpstreamCa;
    return { trustChanged, serverChanged: !!newServerIdentity, upstreamCaChanged, replacedUpstreamIdentity };
  }

  /** Stops the verifier's refresh and the certificate watchers. */
  close(): void {
    if (this.#onRotated) this.#serverIdentity.off('rotated', this.#onRotated);
    this.#verifier.close();
    this.#serverIdentity.close();
    this.#upstreamIdentity?.close();
  }

  #makeVerifier(c: GatewayConfig, trustCa: string, clientCas: string): PeerVerifier {
    return new PeerVerifier({
      clientCas,
      revocation: { mode: c.revocation.mode, crlUrls: c.revocation.crlUrls, ocsp: c.revocation.ocsp, refreshMs: c.revocation.refreshSeconds * 1000 },
      fetchCa: trustCa,
      // The roots the handshake trusts: the verifier checks their validity on its own clock.
      roots: trustCa,
      closeRevokedConnections: c.revocation.closeRevokedConnections,
      now: this.#o.now,
      ...(this.#o.fetch ? { fetch: this.#o.fetch } : {}),
    });
  }

  #loadCrlFiles(c: GatewayConfig): void {
    for (const f of c.revocation.crlFiles) {
      try {
        this.#verifier.loadCrl(fs.readFileSync(f), f);
      } catch (e) {
        this.#o.log.error({ err: errText(e), file: f }, 'could not load the CRL file; the previous CRL stays in use');
      }
    }
  }

  async #loadServerIdentity(c: GatewayConfig): Promise<IdentitySource> {
    if ('cert' in c.tls) return loadIdentity({ certFile: c.tls.cert, keyFile: c.tls.key, pollMs: WATCH_POLL_MS, watch: this.#o.watch });
    const token = c.tls.enroll.tokenFile ? fileText(c.tls.enroll.tokenFile).trim() : process.env.MUTUAL_GATEWAY_TOKEN;
    if (!token) throw new MutualError('CONFIG_INVALID', { detail: 'tls.enroll needs tokenFile or MUTUAL_GATEWAY_TOKEN' });
    return enrollIdentity({ caUrl: c.tls.enroll.caUrl, token, ...(c.tls.enroll.dir ? { dir: c.tls.enroll.dir } : {}) });
  }

  #loadUpstreamIdentity(c: GatewayConfig): IdentitySource | undefined {
    return c.upstreamTls.cert && c.upstreamTls.key ? loadIdentity({ certFile: c.upstreamTls.cert, keyFile: c.upstreamTls.key, pollMs: WATCH_POLL_MS, watch: this.#o.watch }) : undefined;
  }
}
