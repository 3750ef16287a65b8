/**
 * Getting a certificate from the CA (renewal over mTLS, enrollment with a one-time token) and the
 * material a generation holds: the CA's answer is checked (key, chain to the pinned root) before
 * anything is written, and a token is spent at most once.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { MutualError, isMutualError } from '../core/errors.ts';
import { readCertificateDers, readPemOrDer, toPem } from '../core/pem.ts';
import { buildPkcs12 } from '../core/pkcs12.ts';
import { MAX_SPENT_TOKENS, type CertificateState } from './agent-state.ts';
import { enroll, fingerprintOf, readTokenClaims, renew, type IssuedCertificate } from '../sdk/index.ts';
import { GENERATION_FILES, type GenerationMaterial, type GenerationStore } from './generation-store.ts';
import type { CertificateSpec } from './manifest.ts';
import { writeOwnedFile } from './owned-file.ts';
import type { Current } from './plan-certificate.ts';
import { MAX_TRUSTED_ROOTS, chainsToRoots } from './root-set.ts';

/** Largest token file read. */
export const MAX_TOKEN_FILE_BYTES = 8 * 1024;

/** What enrollment and renewal return: the CA's answer and the key it certifies (when made here). */
type Obtained = IssuedCertificate & { key?: crypto.KeyObject };

const sha256 = (s: string): string => crypto.createHash('sha256').update(s).digest('hex');

/** The token of a certificate (agent.yaml's, or its token file's), trimmed; none when unreadable or too large. */
export function readToken(c: CertificateSpec): string | undefined {
  if (c.token) return c.token.trim();
  if (!c.tokenFile) return undefined;
  try {
    const st = fs.statSync(c.tokenFile);
    if (!st.isFile() || st.size > MAX_TOKEN_FILE_BYTES) return undefined;
    return fs.readFileSync(c.tokenFile, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** A token not spent yet, if one is configured. */
export function freshToken(c: CertificateSpec, cs: CertificateState): string | undefined {
  const t = readToken(c);
  return t && !cs.spentTokens.includes(sha256(t)) ? t : undefined;
}

/** The new generation's material, and how it was obtained. */
export interface ObtainResult {
  material: GenerationMaterial;
  action: 'renewed' | 'enrolled';
  info: CertificateInfo;
}

/** Inputs of {@link obtainCertificate}. */
export interface ObtainOptions {
  caUrl: string;
  /** The pinned root (PEM), or during a root rollover every root trusted (agent/root-set.ts). */
  root: string;
  c: CertificateSpec;
  cs: CertificateState;
  cur?: Current;
  /** Renew `cur` (falling back to a fresh token when the CA refuses), or enroll with the token. */
  need: 'renew' | 'enroll';
  /** Why, for the token-needed error. */
  why: string;
}

/**
 * Renews or enrolls. A renewal the CA refuses (revoked, expired, renewal not allowed) falls back to
 * an unused token; without one it fails with AGENT_REVOKED or AGENT_TOKEN_NEEDED. Records a revoked
 * serial and spent tokens in `cs`.
 */
export async function obtainCertificate(o: ObtainOptions): Promise<ObtainResult> {
  const { c, cs, cur, root } = o;
  let why = o.why;
  let got: Obtained | undefined;
  let action: ObtainResult['action'] = 'enrolled';
  if (o.need === 'renew') {
    try {
      got = await renew({ caUrl: o.caUrl, root, certificate: cur!.certificatePem, key: cur!.keyPem, newKey: c.newKey, keyType: c.keyType });
      action = 'renewed';
    } catch (e) {
      if (isMutualError(e, 'CERT_REVOKED')) {
        cs.revokedSerial = cur!.info.serial;
        if (!freshToken(c, cs)) throw new MutualError('AGENT_REVOKED', { detail: `${c.name}: the CA refused to renew ${cur!.info.serial}: revoked; no unused token in ${c.tokenFile ?? 'agent.yaml'}` });
        why = `${cur!.info.serial} is revoked`;
      } else if (isMutualError(e, 'CERT_EXPIRED') || isMutualError(e, 'RENEW_NOT_ALLOWED')) {
        if (!freshToken(c, cs)) throw new MutualError('AGENT_TOKEN_NEEDED', { detail: `${c.name}: the CA will not renew ${cur!.info.serial} (${e.fields.detail ?? e.message})` });
        why = `the CA will not renew ${cur!.info.serial}`;
      } else throw e;
    }
  } else if (cur && cs.revokedSerial === cur.info.serial && !freshToken(c, cs)) {
    throw new MutualError('AGENT_REVOKED', { detail: `${c.name}: ${cur.info.serial} is on the CA's CRL; no unused token in ${c.tokenFile ?? 'agent.yaml'}` });
  }
  if (!got) {
    got = await enrollWithToken(o.caUrl, c, cs, root, why);
    action = 'enrolled';
  }
  const keyPem = got.key ? (got.key.export({ type: 'pkcs8', format: 'pem' }) as string) : cur!.keyPem;
  const info = checkObtained(got, keyPem, root);
  const material = { certificatePem: got.certificate, chainPem: got.chain, fullchainPem: got.fullchain, keyPem, pkcs12: pkcs12Of(c, keyPem, got.certificate, got.chain) };
  return { material, action, info };
}

/** The material of the generation in place, for a redeployment of the same certificate. */
export function currentMaterial(c: CertificateSpec, store: GenerationStore, cur: Current): GenerationMaterial {
  const chainPem = fs.readFileSync(path.join(store.dir, cur.gen, GENERATION_FILES.chain), 'utf8');
  const fullchainPem = fs.readFileSync(path.join(store.dir, cur.gen, GENERATION_FILES.fullchain), 'utf8');
  return { certificatePem: cur.certificatePem, chainPem, fullchainPem, keyPem: cur.keyPem, pkcs12: pkcs12Of(c, cur.keyPem, cur.certificatePem, chainPem) };
}

/**
 * The warning for a certificate whose names differ from what agent.yaml asks (renewals keep the
 * certificate's names), or undefined.
 */
export function nameMismatch(c: CertificateSpec, info: CertificateInfo): string | undefined {
  const want = [...c.names.dns, ...c.names.ip, ...c.names.uri].sort().join(',');
  const got = [...info.names.dns, ...info.names.ip, ...info.names.uri].sort().join(',');
  if (want === got) return undefined;
  return `${c.name}: the certificate names ${got}, agent.yaml asks for ${want}; renewals keep the certificate's names: enroll with a new token to change them`;
}

/** The PKCS#12 bundle agent.yaml asks for, if any; its password file is made on first use. */
export function pkcs12Of(c: CertificateSpec, keyPem: string, certificatePem: string, chainPem: string): Buffer | undefined {
  if (!c.files.pkcs12) return undefined;
  const pwFile = c.files.pkcs12.passwordFile;
  let password: string;
  try {
    password = fs.readFileSync(pwFile, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new MutualError('AGENT_WRITE_FAILED', { detail: `${pwFile}: ${(e as Error).message}` });
    // No password yet: make one, readable only by the owner of the bundle.
    password = crypto.randomBytes(24).toString('base64url');
    writeOwnedFile(pwFile, password + '\n', { ...c.ownership, mode: c.keyMode });
  }
  if (!password) throw new MutualError('CONFIG_INVALID', { detail: `${pwFile} is empty; a PKCS#12 bundle needs a password` });
  return buildPkcs12({
    key: crypto.createPrivateKey(keyPem), certificate: readPemOrDer(certificatePem, ['CERTIFICATE']), chain: [readPemOrDer(chainPem, ['CERTIFICATE'])], password,
  });
}

/** Checks what the CA returned before anything is written: the key matches, the chain leads to the root. */
function checkObtained(got: Obtained, keyPem: string, root: string): CertificateInfo {
  let info: CertificateInfo;
  let leaf: crypto.X509Certificate;
  let issuer: crypto.X509Certificate;
  try {
    info = parseCertificate(readPemOrDer(got.certificate, ['CERTIFICATE']));
    leaf = new crypto.X509Certificate(got.certificate);
    issuer = new crypto.X509Certificate(got.chain);
  } catch (e) {
    throw new MutualError('CA_UNTRUSTED', { detail: `the CA's answer does not hold a readable certificate and chain (${(e as Error).message}); nothing was written` });
  }
  const spki = crypto.createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
  if (!spki.equals(info.spki)) throw new MutualError('KEY_MISMATCH', { detail: `the CA returned ${info.serial} for another key; nothing was written` });
  if (!chainsToRoots(leaf, got.chain, root)) {
    throw new MutualError('CA_UNTRUSTED', { detail: `the certificate ${info.serial} does not chain to the pinned root (or a root accepted from it); nothing was written` });
  }
  return info;
}

/** Enrolls with the certificate's token, which must be unused and made by the pinned root's CA. */
async function enrollWithToken(caUrl: string, c: CertificateSpec, cs: CertificateState, root: string, why: string): Promise<Obtained> {
  const token = readToken(c);
  const where = c.tokenFile ?? `certificates (${c.name}).token`;
  if (!token) throw new MutualError('AGENT_TOKEN_NEEDED', { detail: `${c.name}: ${why}; no token in ${where}` });
  const h = sha256(token);
  if (cs.spentTokens.includes(h)) throw new MutualError('AGENT_TOKEN_NEEDED', { detail: `${c.name}: ${why}; the token in ${where} was already used` });
  try {
    const pin = readTokenClaims(token.trim()).rootFingerprint.toLowerCase();
    if (!readCertificateDers(root, { maxBlocks: MAX_TRUSTED_ROOTS }).some((d) => fingerprintOf(toPem(d, 'CERTIFICATE')) === pin)) {
      throw new MutualError('CA_UNTRUSTED', { detail: 'the token was made by a CA with another root than the one agent.yaml pins' });
    }
    const got = await enroll({ caUrl, root, token, names: c.names, keyType: c.keyType });
    cs.spentTokens = [...cs.spentTokens, h].slice(-MAX_SPENT_TOKENS);
    return got;
  } catch (e) {
    // A refused token is not sent again; an unreachable CA did not see it.
    if (isMutualError(e) && e.code.startsWith('TOKEN_')) cs.spentTokens = [...cs.spentTokens, h].slice(-MAX_SPENT_TOKENS);
    throw e;
  }
}
