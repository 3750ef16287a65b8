/**
 * A root rollover for tests (issue 17): one made by the CA's own ceremonies ({@link makeRealRollover}),
 * cross-certificates made by hand for the cases a real CA never produces (a root vouched for by
 * itself), and the trust bundle and /roots.json in the contract's format (the roots share one
 * subject name, RFC 4210 root key update: the cross-certificates are self-issued and do not count
 * against the old root's pathLen 1; with different names OpenSSL refuses leaf -> new intermediate
 * -> new-by-old -> old root), plus a small HTTP server serving them.
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

/** A rollover made by the CA's own ceremonies (`mutual root rotate`, `root install`, new intermediates, `root retire`), in process. */
export interface RealRollover {
  /** The CA before the rotation: its root and intermediates (leaves were issued by `beforeRotate`). */
  old: Pick<Pki, 'root' | 'clientCa' | 'serverCa'>;
  /** The same CA after: the new root, its intermediates, and issue() under them. */
  new: Pki;
  newByOld: string;
  oldByNew: string;
  dir: string;
  /** ca/roots.pem as the CA wrote it now (both roots in the overlap, the contract's comment lines). */
  bundle(): string;
  /** `mutual root retire --force`: the old root leaves ca/roots.pem. */
  retire(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Runs a real root rollover on a test CA: `beforeRotate` issues what must be under the old root;
 * then the offline root is rotated and installed, new intermediates are signed by the new root
 * and installed, and the authority reopened on them (the harness of test/agent does the same for
 * an intermediate rotation).
 */
export async function makeRealRollover(beforeRotate: (old: Pki) => Promise<void>): Promise<RealRollover> {
  const ca = await import('../../src/ca/index.ts');
  const { readConfig } = await import('../../src/ca/config.ts');
  const { defaultNamePolicy } = await import('../../src/core/policy.ts');
  const pki = await makePki({ name: 'Acme Test' });
  const tc = pki.tc;
  await beforeRotate(pki);
  const old = { root: pki.root, clientCa: pki.clientCa, serverCa: pki.serverCa };
  await ca.rotateRoot({ offlineDir: tc.offlineDir, rootPassphrase: TEST_PASSPHRASE });
  await ca.installRoot({ home: tc.home, from: tc.offlineDir, store: tc.ca.store });
  const config = readConfig(tc.layout.config);
  const intermediates: Record<string, string> = {};
  for (const role of ['server-ca', 'client-ca'] as const) {
    const csr = await ca.intermediateCsr({ home: tc.home, role, passphrase: TEST_PASSPHRASE, newKey: true });
    intermediates[role] = await ca.signIntermediate({
      offlineDir: tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, csr, role, url: config.url, organization: config.name,
      policy: defaultNamePolicy(config.trustDomain, { dns: config.policy.permitDns, ip: config.policy.permitIp }),
    });
  }
  await tc.ca.close();
  for (const role of ['server-ca', 'client-ca'] as const) await ca.installIntermediate({ home: tc.home, role, certificate: intermediates[role], passphrase: TEST_PASSPHRASE });
  tc.ca = await ca.openAuthority({ home: tc.home, passphrase: TEST_PASSPHRASE });
  const neu: Pki = { ...pki, root: fs.readFileSync(tc.layout.rootCert, 'utf8'), clientCa: tc.ca.client.pem, serverCa: tc.ca.server.pem };
  const dir = tempDir('mutual-rollover-');
  return {
    old, new: neu, dir,
    newByOld: fs.readFileSync(path.join(tc.layout.crossDir, 'new-by-old.pem'), 'utf8'),
    oldByNew: fs.readFileSync(path.join(tc.layout.crossDir, 'old-by-new.pem'), 'utf8'),
    bundle: () => fs.readFileSync(tc.layout.rootsBundle, 'utf8'),
    async retire() {
      await ca.retireRoot({ home: tc.home, store: tc.ca.store, force: true });
    },
    async close() {
      await pki.close();
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
