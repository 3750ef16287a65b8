/**
 * A root rollover for tests (issue 17): two complete test CAs, old and new, whose roots share one
 * subject name (RFC 4210 5.3.13 root key update: the cross-certificates are self-issued, so they do
 * not count against the old root's pathLen 1; roots with different names would make the chain
 * leaf -> new intermediate -> new-by-old -> old root exceed it, and OpenSSL refuses that), the two
 * cross-certificates, and the trust bundle and /roots.json in the format of
 * /work/briefs/rotation-contract.md, plus a small HTTP server serving them.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { makePki, type Pki } from '../sdk/fixtures.ts';
import { signCaCertificate } from '../../src/ca/init-ca.ts';
import { offlineLayout } from '../../src/ca/home.ts';
import { readEncryptedKey } from '../../src/keys/encrypted-key-file.ts';
import { keyObjectSigner } from '../../src/core/signer.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { floorSeconds } from '../../src/core/der.ts';
import { toPem } from '../../src/core/pem.ts';
import { TEST_PASSPHRASE, tempDir, type TestCa } from './test-ca.ts';
import { openssl } from './tools.ts';

/** The two CAs of a rollover and the cross-certificates between their roots. */
export interface Rollover {
  old: Pki;
  new: Pki;
  /** Subject and key of the new root, issued by the old root. */
  newByOld: string;
  /** Subject and key of the old root, issued by the new root. */
  oldByNew: string;
  /** Fingerprints (SHA-256 hex) of the roots. */
  oldFp: string;
  newFp: string;
  dir: string;
  close(): Promise<void>;
}

export const fingerprint = (pem: string): string => new crypto.X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();

/**
 * A cross-certificate: the subject and key of `subjectPem`, issued by `issuer`'s root (its offline
 * key). Valid from two days ago (the agent tests' clock runs a day behind) until `notAfter`.
 */
export async function crossCertificate(subjectPem: string, issuer: { root: string; tc: TestCa }, notAfter: Date): Promise<string> {
  const s = parseCertificate(new crypto.X509Certificate(subjectPem).raw);
  const i = parseCertificate(new crypto.X509Certificate(issuer.root).raw);
  const signer = keyObjectSigner(readEncryptedKey(offlineLayout(issuer.tc.offlineDir).rootKey, TEST_PASSPHRASE));
  const der = await signCaCertificate({
    role: 'root', issuerName: i.subjectName, issuerKeyId: i.subjectKeyId!, signer, subject: s.subjectName, spki: s.spki,
    notBefore: floorSeconds(new Date(Date.now() - 2 * 86_400_000)), notAfter: floorSeconds(notAfter),
  });
  return toPem(der, 'CERTIFICATE');
}

/** Makes the old and new CA and the cross-certificates (valid for `crossDays`, default 30). */
export async function makeRollover(o: { crossDays?: number } = {}): Promise<Rollover> {
  const old = await makePki({ name: 'Acme Test' });
  const neu = await makePki({ name: 'Acme Test' });
  const until = new Date(Date.now() + (o.crossDays ?? 30) * 86_400_000);
  const dir = tempDir('mutual-rollover-');
  return {
    old, new: neu, dir,
    newByOld: await crossCertificate(neu.root, old, until),
    oldByNew: await crossCertificate(old.root, neu, until),
    oldFp: fingerprint(old.root), newFp: fingerprint(neu.root),
    async close() {
      await old.close();
      await neu.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A root in a bundle as the contract lists it. */
export interface BundleRoot {
  pem: string;
  retireAt?: Date;
}

/** ca/roots.pem as the contract writes it: comment lines before each block. */
export function rootsPem(roots: BundleRoot[]): string {
  return roots.map((r) => {
    const x = new crypto.X509Certificate(r.pem);
    const lines = [`# mutual-root ${fingerprint(r.pem)}`, `# not-after ${x.validToDate.toISOString()}`];
    if (r.retireAt) lines.push(`# retire-at ${r.retireAt.toISOString()}`);
    return `${lines.join('\n')}\n${r.pem}`;
  }).join('');
}

/** /roots.json as the contract serves it. */
export function rootsJson(o: { current: string; roots: BundleRoot[]; cross: { pem: string; subject: string; issuer: string }[]; phase: 'none' | 'overlap' | 'retired'; oldRoot?: string; newRoot?: string; retireAt?: Date }): string {
  return JSON.stringify({
    current: fingerprint(o.current),
    roots: o.roots.map((r) => ({
      fingerprint: fingerprint(r.pem), pem: r.pem, notAfter: new crypto.X509Certificate(r.pem).validToDate.toISOString(),
      status: r.retireAt ? 'retiring' : 'active', ...(r.retireAt ? { retireAt: r.retireAt.toISOString() } : {}),
    })),
    cross: o.cross.map((c) => ({ pem: c.pem, subjectFingerprint: fingerprint(c.subject), issuerFingerprint: fingerprint(c.issuer) })),
    rotation: { phase: o.phase, ...(o.oldRoot ? { oldRoot: fingerprint(o.oldRoot) } : {}), ...(o.newRoot ? { newRoot: fingerprint(o.newRoot) } : {}), ...(o.retireAt ? { retireAt: o.retireAt.toISOString() } : {}) },
  });
}

/** `openssl verify -x509_strict` of a leaf with the untrusted chain it is sent with, against a bundle. */
export function verifyStrict(dir: string, leaf: string, chain: string, bundle: string): boolean {
  const n = crypto.randomBytes(4).toString('hex');
  const f = (name: string, data: string) => {
    const p = path.join(dir, `${n}-${name}`);
    fs.writeFileSync(p, data);
    return p;
  };
  const args = ['verify', '-x509_strict', '-CAfile', f('bundle.pem', bundle), ...(chain ? ['-untrusted', f('chain.pem', chain)] : []), f('leaf.pem', leaf)];
  return openssl(args).status === 0;
}

/** A plain-HTTP server answering /roots.pem and /roots.json with what the test sets. */
export interface RootsServer {
  url: string;
  pem: string;
  json: string;
  close(): Promise<void>;
}

export async function startRootsServer(pem: string, json: string): Promise<RootsServer> {
  const state = { url: '', pem, json, close: async () => {} } as RootsServer;
  const server = http.createServer((req, res) => {
    const [type, body] = req.url === '/roots.pem' ? ['application/pem-certificate-chain', state.pem] : req.url === '/roots.json' ? ['application/json', state.json] : ['text/plain', ''];
    res.writeHead(body ? 200 : 404, { 'content-type': type });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () => new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });
  return state;
}
