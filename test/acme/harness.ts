/**
 * The ACME lifecycle tests' harness: a real test CA (SQLite), an AcmeAuthority on it with a clock
 * the test moves and the real validators (http-01 connecting to 127.0.0.1 by `hostOverride`), a
 * real http-01 responder (node:http on a random port of 127.0.0.1), account keys, EAB JWSs and
 * CSRs made with the real libraries, and `openssl verify` for what is issued.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { calculateJwkThumbprint, FlattenedSign } from 'jose';
import { AcmeAuthority } from '../../src/ca/acme/acme-authority.ts';
import type { FlattenedJws } from '../../src/ca/acme/acme-api.ts';
import { acmeConfig, type AcmeConfig } from '../../src/ca/config.ts';
import { buildCsr } from '../../src/core/csr.ts';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';
import { openssl } from '../helpers/tools.ts';

export const ACCOUNT_URL = 'https://ca.acme.internal/acme/new-account';

/** Tokens the responder answers, with their key authorizations (a test may put a wrong one). */
export type Responder = { port: number; answers: Map<string, string>; close(): Promise<void> };

/** A real http-01 responder: GET /.well-known/acme-challenge/<token> answers the key authorization. */
export async function startResponder(): Promise<Responder> {
  const answers = new Map<string, string>();
  const server = http.createServer((req, res) => {
    const token = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '')?.[1];
    const body = token ? answers.get(token) : undefined;
    res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'text/plain' }).end(body ?? 'not found');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, answers, close: () => new Promise((r) => server.close(() => r())) };
}

/** A CA, its ACME service on a movable clock, and an http-01 responder. */
export interface AcmeHarness {
  tc: TestCa;
  acme: AcmeAuthority;
  responder: Responder;
  /** The clock's current time; `advance` moves it. */
  now(): Date;
  advance(ms: number): void;
  close(): Promise<void>;
}

/** Makes the harness; `config` overrides parts of the ACME config (enabled, http-01 on the responder's port). */
export async function makeHarness(config: Partial<AcmeConfig> = {}): Promise<AcmeHarness> {
  // Near the wall clock, whole seconds: `openssl verify` checks at the clock's time (-attime).
  let t = Math.floor(Date.now() / 1000) * 1000;
  const clock = () => new Date(t);
  const tc = await makeTestCa({ clock });
  const responder = await startResponder();
  const cfg: AcmeConfig = { ...acmeConfig({}), enabled: true, challenges: ['http-01'], httpPort: responder.port, validationTimeout: '2s', ...config };
  const acme = new AcmeAuthority({ ca: tc.ca, config: cfg, now: clock, retry: { attempts: 2, backoffMs: 5 }, hostOverride: '127.0.0.1' });
  return {
    tc, acme, responder, now: clock,
    advance(ms) {
      t += ms;
    },
    async close() {
      await acme.settle();
      await responder.close();
      await tc.close();
    },
  };
}

/** An account key pair with its public JWK and RFC 7638 thumbprint. */
export async function accountKey(kind: 'p256' | 'p384' | 'ed25519' | 'rsa2048' = 'p256'): Promise<{ privateKey: crypto.KeyObject; jwk: JsonWebKey; thumbprint: string }> {
  const kp = kind === 'ed25519' ? crypto.generateKeyPairSync('ed25519')
    : kind === 'rsa2048' ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
      : crypto.generateKeyPairSync('ec', { namedCurve: kind === 'p256' ? 'P-256' : 'P-384' });
  const jwk = kp.publicKey.export({ format: 'jwk' }) as JsonWebKey;
  return { privateKey: kp.privateKey, jwk, thumbprint: await calculateJwkThumbprint(jwk as Parameters<typeof calculateJwkThumbprint>[0]) };
}

/** An EAB JWS over `jwk` (RFC 8555 section 7.3.4), HS256 with `hmacKey`. */
export async function eabJws(jwk: JsonWebKey, keyId: string, hmacKey: Buffer, url = ACCOUNT_URL): Promise<FlattenedJws> {
  const jws = await new FlattenedSign(Buffer.from(JSON.stringify(jwk))).setProtectedHeader({ alg: 'HS256', kid: keyId, url }).sign(hmacKey);
  return { protected: jws.protected!, payload: jws.payload, signature: jws.signature };
}

/** Creates an account for a new P-256 key (no EAB). */
export async function newAccount(h: AcmeHarness): Promise<{ id: string; jwk: JsonWebKey; thumbprint: string }> {
  const k = await accountKey();
  const { account } = await h.acme.newAccount({ jwk: k.jwk, thumbprint: k.thumbprint, contact: ['mailto:ops@acme.internal'], termsOfServiceAgreed: true, accountUrl: ACCOUNT_URL });
  return { id: account.id, jwk: k.jwk, thumbprint: k.thumbprint };
}

/** A DER CSR for `dns` and `ip` names with a new P-256 key. */
export function csrFor(dns: string[], ip: string[] = [], privateKey = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey): Buffer {
  return buildCsr({ privateKey, commonName: dns[0] ?? ip[0], names: { dns, ip, uri: [] } });
}

/** Orders `dns` names, answers every http-01 challenge on the responder, and waits until the order is ready. */
export async function readyOrder(h: AcmeHarness, account: { id: string; thumbprint: string }, dns: string[], ip: string[] = []): Promise<string> {
  const order = await h.acme.newOrder(account.id, { identifiers: [...dns.map((value) => ({ type: 'dns' as const, value })), ...ip.map((value) => ({ type: 'ip' as const, value }))] });
  for (const id of order.authorizationIds) {
    const a = await h.acme.authorization(account.id, id);
    if (a.status === 'valid') continue;
    const c = a.challenges.find((x) => x.type === 'http-01')!;
    h.responder.answers.set(c.token, `${c.token}.${account.thumbprint}`);
    await h.acme.respondChallenge(account.id, c.id);
  }
  await h.acme.settle();
  return order.id;
}

/** Leaf certificates in the inventory. */
export async function inventoryCount(h: AcmeHarness): Promise<number> {
  return (await h.tc.ca.list({ role: 'server', limit: 10_000 })).length;
}

/** `openssl verify -x509_strict -purpose sslserver` of a downloaded chain against the test CA's root. */
export function opensslVerify(tc: TestCa, chainPem: string, at: Date): { status: number; output: string } {
  const blocks = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  const leaf = tc.file(`leaf-${crypto.randomBytes(4).toString('hex')}.pem`, blocks[0] ?? '');
  const untrusted = tc.file(`chain-${crypto.randomBytes(4).toString('hex')}.pem`, blocks.slice(1).join(''));
  const root = path.join(tc.dir, 'root-for-verify.pem');
  if (!fs.existsSync(root)) fs.writeFileSync(root, tc.ca.rootPem);
  const r = openssl(['verify', '-x509_strict', '-purpose', 'sslserver', '-attime', String(Math.floor(at.getTime() / 1000)), '-CAfile', root, '-untrusted', untrusted, leaf]);
  return { status: r.status, output: r.stdout + r.stderr };
}
