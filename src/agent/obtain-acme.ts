/**
 * A certificate whose agent.yaml entry has an `acme:` section: obtained from its ACME server with
 * the SDK's client (a new order for each renewal, `replaces` naming the certificate it renews when
 * the server gave renewal information for it), and that server's renewal information (RFC 9773)
 * kept in the state file for the renewal decision. The decision, the deployment and the state stay
 * the agent's own, as for token-enrolled certificates.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { generateKeyPair } from '../core/algorithms.ts';
import { buildCsr } from '../core/csr.ts';
import type { CertificateInfo } from '../core/certificate.ts';
import { MutualError } from '../core/errors.ts';
import { AcmeClient, acmeAccountKey, ariCertificateId, type AcmeCertificate } from '../sdk/index.ts';
import { challengeSolver } from './acme-challenges.ts';
import type { CertificateState } from './agent-state.ts';
import { asError, type AgentContext } from './cycle-report.ts';
import type { AcmeSpec, CertificateSpec } from './manifest.ts';
import { pkcs12Of, readAnswer, type ObtainResult } from './obtain-certificate.ts';
import type { Current } from './plan-certificate.ts';

/** Largest EAB HMAC key file read. */
export const MAX_EAB_KEY_FILE_BYTES = 4096;
/** Shortest wait before renewal information is asked again, whatever Retry-After says (RFC 9773 4.3.2 lets clients clamp it). */
export const MIN_ARI_RECHECK_MS = 60_000;
/** Longest wait before renewal information is asked again (RFC 9773 4.3.2 suggests clamping to a day). */
export const MAX_ARI_RECHECK_MS = 24 * 3600_000;

/** The ACME account key file of a directory, in the state folder (one account per directory). */
export const accountKeyFile = (stateDir: string, directory: string): string =>
  path.join(stateDir, 'acme', `account-${crypto.createHash('sha256').update(directory).digest('hex').slice(0, 16)}.key`);

/** The client for a certificate's ACME server: its account key (made once), EAB key and trust anchors. */
export function acmeClientFor(stateDir: string, a: AcmeSpec, now: () => Date): AcmeClient {
  const read = (file: string, what: string, max: number): string => {
    try {
      const st = fs.statSync(file);
      if (st.isFile() && st.size <= max) return fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new MutualError('CONFIG_INVALID', { detail: `acme.${what} ${file}: ${(e as Error).message}` });
    }
    throw new MutualError('CONFIG_INVALID', { detail: `acme.${what} ${file}: not a file of at most ${max} bytes` });
  };
  const hmac = a.eabHmacKeyFile ? read(a.eabHmacKeyFile, 'eabHmacKeyFile', MAX_EAB_KEY_FILE_BYTES).trim() : undefined;
  if (hmac !== undefined && !/^[A-Za-z0-9_-]+={0,2}$/.test(hmac)) throw new MutualError('CONFIG_INVALID', { detail: `acme.eabHmacKeyFile ${a.eabHmacKeyFile}: expected the base64url HMAC key the CA gave` });
  return new AcmeClient({
    directoryUrl: a.directory,
    accountKey: acmeAccountKey(accountKeyFile(stateDir, a.directory)),
    ca: a.caFile ? read(a.caFile, 'ca', 1024 * 1024) : undefined,
    eab: a.eabKeyId && hmac ? { keyId: a.eabKeyId, hmacKey: Buffer.from(hmac, 'base64url') } : undefined,
    now,
  });
}

/** Inputs of {@link obtainWithAcme}. */
export interface AcmeObtainOptions {
  stateDir: string;
  c: CertificateSpec & { acme: AcmeSpec };
  cs: CertificateState;
  cur?: Current;
  now: () => Date;
}

/**
 * Orders, validates, finalizes and downloads a certificate for the certificate's names; a new key
 * unless agent.yaml says `newKey: false` and one is in place. Checked (key, issuer signature)
 * before anything is written.
 */
export async function obtainWithAcme(o: AcmeObtainOptions): Promise<ObtainResult> {
  const { c, cs, cur } = o;
  const client = acmeClientFor(o.stateDir, c.acme, o.now);
  const key = !cur || c.newKey ? generateKeyPair(c.keyType).privateKey : crypto.createPrivateKey(cur.keyPem);
  const names = { dns: c.names.dns, ip: c.names.ip };
  const csr = buildCsr({ privateKey: key, commonName: names.dns[0] ?? names.ip[0], names: c.names });
  // `replaces` only for a certificate the server gave renewal information for (RFC 9773 5).
  const replaces = cur && cs.ari?.serial === cur.info.serial ? cs.ari.id : undefined;
  const got = await client.obtain({ names, csr, solver: challengeSolver(c.acme.challenge), replaces });
  const keyPem = key.export({ type: 'pkcs8', format: 'pem' }) as string;
  const info = checkAcmeAnswer(got, keyPem);
  return {
    material: { certificatePem: got.certificate, chainPem: got.chain, fullchainPem: got.fullchain, keyPem, pkcs12: pkcs12Of(c, keyPem, got.certificate, got.chain) },
    action: cur ? 'renewed' : 'enrolled',
    info,
  };
}

/** The answer's leaf is for our key and signed by the first certificate of its chain (the server's TLS vouched for the rest). */
function checkAcmeAnswer(got: AcmeCertificate, keyPem: string): CertificateInfo {
  const { info, leaf, issuer } = readAnswer(got, keyPem, 'ACME_CLIENT_FAILED', 'the ACME server');
  if (!leaf.checkIssued(issuer) || !leaf.verify(issuer.publicKey)) throw new MutualError('ACME_CLIENT_FAILED', { detail: `${info.serial} is not signed by the chain's first certificate; nothing was written` });
  return info;
}

/**
 * Asks the ACME server for the renewal information of the certificate in place when none is kept
 * for it or its re-check time has come, and chooses the renewal time: at once when the window has
 * begun, else a random time inside it (RFC 9773 4.2). A failure keeps what was known and is only
 * logged: the schedule's rule still renews the certificate.
 */
export async function refreshRenewalInfo(ctx: AgentContext, c: CertificateSpec & { acme: AcmeSpec }, cs: CertificateState, cur: Current, now: Date): Promise<void> {
  const kept = cs.ari?.serial === cur.info.serial ? cs.ari : undefined;
  if (kept && now.getTime() < Date.parse(kept.checkAfter)) return;
  const clamp = (ms: number) => Math.min(Math.max(ms, MIN_ARI_RECHECK_MS), MAX_ARI_RECHECK_MS);
  try {
    const ri = await acmeClientFor(ctx.manifest.stateDir, c.acme, () => now).renewalInfo(cur.certificatePem);
    if (!ri) {
      cs.ari = undefined;
      return;
    }
    const start = ri.start.toISOString();
    const end = ri.end.toISOString();
    // The same window keeps its chosen time: choosing again at each check would drift towards its start.
    const same = kept && kept.start === start && kept.end === end;
    const at = same ? kept.renewAt : ri.start <= now ? now.toISOString() : new Date(ri.start.getTime() + ctx.random() * (ri.end.getTime() - ri.start.getTime())).toISOString();
    cs.ari = { serial: cur.info.serial, id: ariCertificateId(cur.certificatePem), start, end, renewAt: at, checkAfter: new Date(now.getTime() + clamp(ri.retryAfter.getTime() - now.getTime())).toISOString() };
    if (!same) ctx.log.info({ name: c.name, serial: cur.info.serial, start, end, renewAt: at }, 'the ACME server suggested a renewal window');
  } catch (e) {
    if (kept) cs.ari = { ...kept, checkAfter: new Date(now.getTime() + clamp(ctx.manifest.renewal.retryInitialMs)).toISOString() };
    ctx.log.warn({ name: c.name, err: asError(e).message }, 'could not fetch the renewal information; the renewal schedule applies');
  }
}
