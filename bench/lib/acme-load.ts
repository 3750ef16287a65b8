/**
 * An ACME load client for the benchmarks (RFC 8555), written with jose: one account, reused; then
 * `concurrency` workers each run complete orders back to back for `seconds`: newOrder, fetch the
 * authorization, answer its http-01 challenge from a local responder, poll until valid, finalize
 * with a CSR, poll the order, download the certificate. It measures each complete order and
 * reports orders/s and p50/p99 latency. The same client runs against every server.
 *
 * Not a general ACME client: one dns identifier per order, http-01 only, no key rollover.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { FlattenedSign, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { buildCsr } from '../../src/core/csr.ts';
import { generateKeyPair as generateLeafKey } from '../../src/core/algorithms.ts';

/** Options of {@link runAcmeLoad}. */
export interface AcmeLoadOptions {
  directoryUrl: string;
  /** PEM of the CA trusted for the server's HTTPS. */
  ca: string;
  /** Port the server's http-01 validator connects to on 127.0.0.1 (the responder listens there). */
  httpPort: number;
  /** The DNS suffix the order names end in (each order gets a new name under it). */
  domain: string;
  concurrency: number;
  seconds: number;
  /** EAB credentials, when the server requires them. */
  eab?: { kid: string; hmac: string };
}

/** What {@link runAcmeLoad} measured. */
export interface AcmeLoadResult {
  orders: number;
  errors: number;
  seconds: number;
  ordersPerSecond: number;
  p50ms: number;
  p99ms: number;
  /** The first error, if any, for the report. */
  firstError?: string;
}

/** How often a worker polls an authorization or order that is not done yet. */
const POLL_MS = 25;
/** Polls before a worker gives up on one order. */
const MAX_POLLS = 400;

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

const b64u = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One HTTPS request on the shared keep-alive agent. */
function request(agent: https.Agent, url: string, method: string, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'content-type': 'application/jose+json', 'content-length': Buffer.byteLength(body) };
    const req = https.request(url, { method, agent, headers, timeout: 30_000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: timeout`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** An account and the signed requests it makes. */
class AcmeSession {
  private nonces: string[] = [];
  kid = '';
  readonly agent: https.Agent;
  readonly dir: Record<string, string>;
  readonly jwk: JWK;
  readonly thumbprint: string;
  private readonly key: CryptoKey;
  constructor(o: { dir: Record<string, string>; key: CryptoKey; jwk: JWK; thumbprint: string; ca: string; concurrency: number }) {
    this.dir = o.dir;
    this.key = o.key;
    this.jwk = o.jwk;
    this.thumbprint = o.thumbprint;
    this.agent = new https.Agent({ keepAlive: true, maxSockets: o.concurrency * 2, ca: o.ca });
  }

  private async nonce(): Promise<string> {
    const n = this.nonces.pop();
    if (n) return n;
    const r = await request(this.agent, this.dir.newNonce, 'HEAD');
    const fresh = r.headers['replay-nonce'];
    if (typeof fresh !== 'string') throw new Error(`newNonce: no Replay-Nonce (${r.status})`);
    return fresh;
  }

  /** A JWS-signed POST (`payload` undefined: POST-as-GET); retries a badNonce once, as RFC 8555 section 6.5 asks. */
  async post(url: string, payload?: object, header: Record<string, unknown> = this.kid ? { kid: this.kid } : { jwk: this.jwk }): Promise<Reply> {
    for (let attempt = 0; ; attempt++) {
      const bytes = payload === undefined ? new Uint8Array(0) : new TextEncoder().encode(JSON.stringify(payload));
      const jws = await new FlattenedSign(bytes).setProtectedHeader({ alg: 'ES256', nonce: await this.nonce(), url, ...header }).sign(this.key);
      const r = await request(this.agent, url, 'POST', JSON.stringify(jws));
      const next = r.headers['replay-nonce'];
      if (typeof next === 'string') this.nonces.push(next);
      if (r.status === 400 && attempt === 0 && /badNonce/.test(r.body.toString())) continue;
      if (r.status >= 400) throw new Error(`${url}: ${r.status} ${r.body.toString().slice(0, 300)}`);
      return r;
    }
  }
}

/** The externalAccountBinding JWS (RFC 8555 section 7.3.4): the account key, MACed with the EAB key. */
async function eabJws(eab: { kid: string; hmac: string }, jwk: JWK, url: string): Promise<object> {
  const key = Buffer.from(eab.hmac, 'base64url');
  return new FlattenedSign(new TextEncoder().encode(JSON.stringify(jwk))).setProtectedHeader({ alg: 'HS256', kid: eab.kid, url }).sign(key);
}

/** Polls `url` (POST-as-GET) until its status is not pending/processing; throws when it is invalid. */
async function pollUntilDone(s: AcmeSession, url: string): Promise<any> {
  for (let i = 0; i < MAX_POLLS; i++) {
    const j = JSON.parse((await s.post(url)).body.toString());
    if (j.status === 'invalid') throw new Error(`${url}: invalid ${JSON.stringify(j).slice(0, 400)}`);
    if (j.status !== 'pending' && j.status !== 'processing') return j;
    await sleep(POLL_MS);
  }
  throw new Error(`${url}: still not done after ${MAX_POLLS} polls`);
}

/** One complete order for `name`; `answers` is the responder's token -> key authorization map. */
async function oneOrder(s: AcmeSession, name: string, leafKey: crypto.KeyObject, answers: Map<string, string>): Promise<void> {
  const created = await s.post(s.dir.newOrder, { identifiers: [{ type: 'dns', value: name }] });
  const orderUrl = String(created.headers.location);
  const order = JSON.parse(created.body.toString());
  for (const authzUrl of order.authorizations as string[]) {
    const authz = JSON.parse((await s.post(authzUrl)).body.toString());
    if (authz.status === 'valid') continue;
    const ch = (authz.challenges as { type: string; url: string; token: string }[]).find((c) => c.type === 'http-01');
    if (!ch) throw new Error(`${authzUrl}: no http-01 challenge`);
    answers.set(ch.token, `${ch.token}.${s.thumbprint}`);
    try {
      await s.post(ch.url, {});
      await pollUntilDone(s, authzUrl);
    } finally {
      answers.delete(ch.token);
    }
  }
  const csr = buildCsr({ privateKey: leafKey, commonName: name, names: { dns: [name], ip: [], uri: [] } });
  await s.post(order.finalize, { csr: b64u(csr) });
  const done = await pollUntilDone(s, orderUrl);
  if (done.status !== 'valid' || typeof done.certificate !== 'string') throw new Error(`${orderUrl}: ${JSON.stringify(done).slice(0, 300)}`);
  const pem = (await s.post(done.certificate)).body.toString();
  if (!pem.startsWith('-----BEGIN CERTIFICATE-----')) throw new Error(`${done.certificate}: not a PEM chain`);
}

/** Serves the key authorizations for http-01 on 127.0.0.1:`port`. */
function startResponder(port: number, answers: Map<string, string>): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const token = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '')?.[1];
    const answer = token ? answers.get(token) : undefined;
    if (answer) res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(answer);
    else res.writeHead(404).end();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** Percentile of sorted numbers (nearest rank). */
const percentile = (sorted: number[], p: number): number => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN);

/** Runs the load (see the file's top) and returns what it measured. */
export async function runAcmeLoad(o: AcmeLoadOptions): Promise<AcmeLoadResult> {
  const answers = new Map<string, string>();
  const responder = await startResponder(o.httpPort, answers);
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = await exportJWK(publicKey);
  const probe = new https.Agent({ ca: o.ca });
  const dir = JSON.parse((await request(probe, o.directoryUrl, 'GET')).body.toString());
  probe.destroy();
  const s = new AcmeSession({ dir, key: privateKey, jwk, thumbprint: await calculateJwkThumbprint(jwk), ca: o.ca, concurrency: o.concurrency });
  try {
    const eab = o.eab ? { externalAccountBinding: await eabJws(o.eab, jwk, dir.newAccount) } : {};
    const acct = await s.post(dir.newAccount, { termsOfServiceAgreed: true, ...eab }, { jwk });
    s.kid = String(acct.headers.location);
    const leafKey = generateLeafKey('p256').privateKey;
    const latencies: number[] = [];
    let errors = 0;
    let firstError: string | undefined;
    let seq = 0;
    const run = crypto.randomBytes(3).toString('hex');
    const t0 = performance.now();
    const end = t0 + o.seconds * 1000;
    const worker = async () => {
      while (performance.now() < end) {
        const started = performance.now();
        try {
          await oneOrder(s, `o${seq++}-${run}.${o.domain}`, leafKey, answers);
          latencies.push(performance.now() - started);
        } catch (e) {
          errors++;
          firstError ??= String((e as Error).message ?? e);
        }
      }
    };
    await Promise.all(Array.from({ length: o.concurrency }, worker));
    const seconds = (performance.now() - t0) / 1000;
    latencies.sort((a, b) => a - b);
    return { orders: latencies.length, errors, seconds, ordersPerSecond: latencies.length / seconds, p50ms: percentile(latencies, 50), p99ms: percentile(latencies, 99), firstError };
  } finally {
    s.agent.destroy();
    await new Promise((r) => responder.close(r));
  }
}
