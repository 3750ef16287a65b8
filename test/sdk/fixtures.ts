/**
 * Fixtures for the SDK and gateway tests: a test CA with the files a service needs on disk,
 * certificates of every kind the verifier must refuse (forged with the CA's own keys), a plain
 * HTTP CRL server whose CRL the test controls, and small HTTPS clients.
 */
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import http2 from 'node:http2';
import path from 'node:path';
import crypto from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';
import { generateKeyPair, spkiDer, keyIdentifier } from '../../src/core/algorithms.ts';
import { bitString, explicit, implicit, integer, octetString, oid, seq, time, unsignedInteger, boolean as derBoolean, floorSeconds } from '../../src/core/der.ts';
import { encodeGeneralNames, encodeName, type SubjectAltNames } from '../../src/core/names.ts';
import { OID } from '../../src/core/oids.ts';
import { toPem } from '../../src/core/pem.ts';
import type { IssuerContext } from '../../src/core/certificate-template.ts';
import type { LeafRole } from '../../src/ca/authority.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { defaultNamePolicy } from '../../src/core/policy.ts';
import { keyObjectSigner, type Signer } from '../../src/core/signer.ts';
import { SIGNATURE_ALGORITHMS } from '../../src/core/algorithms.ts';
import { readEncryptedKey } from '../../src/keys/encrypted-key-file.ts';
import { offlineLayout } from '../../src/ca/home.ts';
import { signCaCertificate } from '../../src/ca/init-ca.ts';
import { TEST_PASSPHRASE } from '../helpers/test-ca.ts';

export const TD = 'acme.internal';
export const id = (p: string): string => `spiffe://${TD}/${p}`;
/** The gateway's own identity in the tests. */
export const GATEWAY = id('infra/gateway');
export const names = (o: Partial<SubjectAltNames>): SubjectAltNames => ({ dns: [], ip: [], uri: [], ...o });
/** An extension OID no verifier knows (a private arc), for the critical-extension cases. */
export const UNKNOWN_EXTENSION_OID = '1.3.6.1.4.1.55555.1.1';

/** A CA certificate made for a test, and (when the test holds its key) the context to sign leaves with. */
export interface TestCaCert {
  pem: string;
  der: Buffer;
  issuer?: IssuerContext;
  /** The CA's own key, for a look-alike made here (a test key, never written to the repository). */
  privateKey?: crypto.KeyObject;
}

/** What {@link Pki.forge} can vary. */
export interface ForgeOptions {
  by: 'client' | 'server';
  eku: string[];
  names: SubjectAltNames;
  notBefore?: Date;
  notAfter?: Date;
  name: string;
  /** Default p256; rsa1024 makes a weak key. */
  key?: 'p256' | 'rsa1024';
  /** basicConstraints CA:TRUE (with keyCertSign) instead of an end entity. */
  ca?: boolean;
  /** OIDs of extensions added as critical, with an empty value. */
  critical?: string[];
  /** Sign with this CA instead of the real one (`chainPem` is what the client sends with the leaf). */
  issuer?: { context: IssuerContext; chainPem: string };
}

/** A certificate and key as PEM, with paths of the files written for it. */
export interface Credential {
  serial: string;
  cert: string;
  key: string;
  fullchain: string;
  certFile: string;
  keyFile: string;
  fullchainFile: string;
}

/** The test PKI. */
export interface Pki {
  tc: TestCa;
  root: string;
  clientCa: string;
  serverCa: string;
  /** root + client CA + server CA, PEM. */
  bundle: string;
  rootFile: string;
  clientCaFile: string;
  serverCaFile: string;
  bundleFile: string;
  /** Issues through the CA (the real pipeline) and writes the files under `name`. */
  issue(role: LeafRole, n: SubjectAltNames, name: string, lifetimeSeconds?: number): Promise<Credential>;
  /** A leaf signed by the client or server CA with any EKU list and validity (forged, not in the inventory). */
  forge(o: ForgeOptions): Credential;
  /**
   * A CA certificate named like the client CA: `key: 'client'` reuses the client CA's public key
   * (a copy, e.g. expired), `key: 'new'` makes a look-alike with its own key (`rsa1024`: a weak
   * one). Signed by the real root (offline key), or by itself.
   */
  clientCaCopy(o: { key: 'client' | 'new' | 'rsa1024'; signedBy: 'root' | 'self'; notBefore: Date; notAfter: Date }): Promise<TestCaCert>;
  /** The client CA's CRL now (DER). */
  crl(): Promise<Buffer>;
  close(): Promise<void>;
}

/** Makes a test CA and the files around it. */
export async function makePki(o: { url?: string; /** When the CA is made (its certificates' validity starts then). */ now?: Date; name?: string } = {}): Promise<Pki> {
  const tc = await makeTestCa({ ...(o.url ? { url: o.url } : {}), ...(o.now ? { now: o.now } : {}), ...(o.name ? { name: o.name } : {}) });
  const root = tc.ca.rootPem;
  const clientCa = tc.ca.client.pem;
  const serverCa = tc.ca.server.pem;
  const bundle = root + clientCa + serverCa;
  const write = (name: string, data: string) => tc.file(name, data);
  const save = (name: string, serial: string, cert: string, key: string, chain: string): Credential => ({
    serial, cert, key, fullchain: cert + chain,
    certFile: write(`${name}.cert.pem`, cert), keyFile: write(`${name}.key.pem`, key), fullchainFile: write(`${name}.fullchain.pem`, cert + chain),
  });
  return {
    tc, root, clientCa, serverCa, bundle,
    rootFile: write('root.pem', root), clientCaFile: write('client-ca.pem', clientCa), serverCaFile: write('server-ca.pem', serverCa), bundleFile: write('bundle.pem', bundle),
    async issue(role, n, name, lifetimeSeconds) {
      const r = await tc.ca.issue({ role, names: n, ...(lifetimeSeconds ? { lifetimeSeconds } : {}) });
      return save(name, r.serial, r.certificatePem, r.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string, r.chainPem);
    },
    forge(f) {
      const issuer: IssuerContext = f.issuer?.context ?? (f.by === 'client' ? tc.ca.client : tc.ca.server).template.issuer;
      const { privateKey, publicKey } = f.key === 'rsa1024' ? crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }) : generateKeyPair('p256');
      const spki = spkiDer(publicKey);
      const serial = crypto.randomBytes(16);
      serial[0] = (serial[0] & 0x3f) | 0x40;
      const ext = (o2: string, critical: boolean, v: Buffer) => (critical ? seq(oid(o2), derBoolean(true), octetString(v)) : seq(oid(o2), octetString(v)));
      const exts = [
        ext(OID.basicConstraints, true, f.ca ? seq(derBoolean(true)) : seq()),
        // digitalSignature, plus keyCertSign for a CA.
        ext(OID.keyUsage, true, f.ca ? Buffer.from([0x03, 2, 2, 0x84]) : Buffer.from([0x03, 2, 7, 0x80])),
        ...(f.critical ?? []).map((o2) => ext(o2, true, Buffer.from([0x05, 0x00]))),
        ...(f.eku.length ? [ext(OID.extKeyUsage, false, seq(...f.eku.map(oid)))] : []),
        ext(OID.authorityKeyIdentifier, false, seq(implicit(0, issuer.keyId))),
        ext(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(spki))),
        ext(OID.subjectAltName, false, encodeGeneralNames(f.names)),
      ];
      const nb = floorSeconds(f.notBefore ?? new Date(Date.now() - 60_000));
      const na = floorSeconds(f.notAfter ?? new Date(Date.now() + 86_400_000));
      const tbs = seq(explicit(0, integer(2)), unsignedInteger(serial), issuer.signer.algorithm.der, issuer.name, seq(time(nb), time(na)), encodeName({ commonName: f.name }), spki, explicit(3, seq(...exts)));
      const sig = issuer.signer.sign(tbs) as Uint8Array;
      const der = seq(tbs, issuer.signer.algorithm.der, bitString(sig));
      const chain = f.issuer?.chainPem ?? (f.by === 'client' ? clientCa : serverCa);
      return save(f.name, serial.toString('hex'), toPem(der, 'CERTIFICATE'), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, chain);
    },
    async clientCaCopy(o) {
      const client = tc.ca.client.info;
      const pair = o.key === 'new' ? generateKeyPair('p256') : o.key === 'rsa1024' ? crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }) : undefined;
      // keyObjectSigner refuses a weak key (as it should); a test CA with one signs by hand.
      const ownSigner = (k: crypto.KeyObject): Signer => (o.key === 'rsa1024'
        ? { publicKey: crypto.createPublicKey(k), algorithm: SIGNATURE_ALGORITHMS.sha256WithRSAEncryption, sign: (tbs) => crypto.sign('sha256', tbs, k) }
        : keyObjectSigner(k));
      const spki = pair ? spkiDer(pair.publicKey) : client.spki;
      const keyId = keyIdentifier(spki);
      let signer;
      let issuerName: Buffer;
      let issuerKeyId: Buffer;
      if (o.signedBy === 'root') {
        signer = keyObjectSigner(readEncryptedKey(offlineLayout(tc.offlineDir).rootKey, TEST_PASSPHRASE));
        const rootInfo = parseCertificate(new crypto.X509Certificate(root).raw);
        issuerName = rootInfo.subjectName;
        issuerKeyId = rootInfo.subjectKeyId ?? keyIdentifier(rootInfo.spki);
      } else {
        if (!pair) throw new TypeError('a self-signed copy needs its own key');
        signer = ownSigner(pair.privateKey);
        issuerName = client.subjectName;
        issuerKeyId = keyId;
      }
      const der = await signCaCertificate({
        role: 'client-ca', issuerName, issuerKeyId, signer, subject: client.subjectName, spki,
        notBefore: floorSeconds(o.notBefore), notAfter: floorSeconds(o.notAfter), nameConstraints: defaultNamePolicy(TD),
      });
      return {
        pem: toPem(der, 'CERTIFICATE'), der,
        ...(pair ? { issuer: { name: client.subjectName, keyId, signer: ownSigner(pair.privateKey) }, privateKey: pair.privateKey } : {}),
      };
    },
    crl: () => tc.ca.buildCrl('client'),
    close: () => tc.close(),
  };
}

/** A plain-HTTP server answering GET /crl with whatever `crl` holds; counts fetches. */
export async function startCrlServer(crl: () => Buffer | Promise<Buffer>): Promise<{ url: string; fetches: number; fail: boolean; close(): Promise<void> }> {
  const state = { url: '', fetches: 0, fail: false, close: async () => {} };
  const server = http.createServer(async (req, res) => {
    state.fetches++;
    if (state.fail) {
      res.writeHead(503).end();
      return;
    }
    const der = await crl();
    res.writeHead(200, { 'content-type': 'application/pkix-crl', 'content-length': der.length }).end(der);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/crl`;
  state.close = () => new Promise((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });
  return state;
}

/** The answer of one HTTPS request. */
export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json?: { code?: string; message?: string; hint?: string; [k: string]: unknown };
}

/** One HTTPS/1.1 request on a new connection, with an optional client certificate. */
export function request(url: string, o: { ca: string; cert?: string; key?: string; method?: string; headers?: Record<string, string>; body?: string | Buffer; servername?: string; /** Sent as is (a URL string would be normalized). */ path?: string; /** OpenSSL cipher string, e.g. `DEFAULT@SECLEVEL=0` to present a weak key. */ ciphers?: string }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: o.method ?? 'GET', ca: o.ca, cert: o.cert, key: o.key, headers: o.headers, agent: false, servername: o.servername, ...(o.path ? { path: o.path } : {}), ...(o.ciphers ? { ciphers: o.ciphers } : {}) }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const body = Buffer.concat(parts).toString('utf8');
        let json: Reply['json'];
        try {
          json = /json/.test(String(res.headers['content-type'])) ? JSON.parse(body) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/** One HTTP/2 request on a new session. */
export function request2(url: string, o: { ca: string; cert?: string; key?: string; path?: string; headers?: Record<string, string> }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, { ca: o.ca, cert: o.cert, key: o.key });
    session.on('error', reject);
    const req = session.request({ ':path': o.path ?? '/', ...o.headers });
    const parts: Buffer[] = [];
    let headers: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (headers = h));
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      session.close();
      const body = Buffer.concat(parts).toString('utf8');
      let json: Reply['json'];
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      resolve({ status: Number(headers[':status']), headers: headers as http.IncomingHttpHeaders, body, json });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Writes a file atomically (rename), as the agent does. */
export function replaceFile(file: string, data: string | Buffer): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

/** Runs a command without blocking the event loop (the servers under test live in this process). */
export function runAsync(cmd: string, args: string[], o: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(o.env ? { env: o.env } : {}) });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/**
 * A client with one keep-alive connection to `server` (127.0.0.1), presenting `cred`: `get()`
 * answers the status of a GET on it, `socket()` the idle connection after a request (to watch it
 * being closed), `close()` ends it. For the tests of open connections closed on revocation.
 */
export function keepAliveClient(server: { address(): AddressInfo | string | null }, ca: string, cred: { fullchain: string; key: string }): { get: () => Promise<number>; socket: () => import('node:net').Socket; close: () => void } {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  return {
    get: () => new Promise<number>((resolve, reject) => {
      https.get(`https://127.0.0.1:${(server.address() as AddressInfo).port}/`, { ca, cert: cred.fullchain, key: cred.key, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      }).on('error', reject);
    }),
    socket: () => Object.values(agent.freeSockets)[0]![0] as import('node:net').Socket,
    close: () => agent.destroy(),
  };
}
