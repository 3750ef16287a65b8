/**
 * A real `mutual serve` for tests: a fresh CA whose configured public URL is the address the server
 * then listens on (so the CRL/OCSP/AIA URLs in issued certificates point at it), started
 * in-process on 127.0.0.1, with the trust files on disk for curl and OpenSSL.
 */
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { pino } from 'pino';
import pg from 'pg';
import type { InitCaOptions } from '../../src/ca/init-ca.ts';
import { startCaServer, type CaServer, type CaServerOptions } from '../../src/server/ca-server.ts';
import { call } from '../../src/sdk/ca-client.ts';
import { makeTestCa, TEST_PASSPHRASE, type TestCa } from './test-ca.ts';
import type { RunResult } from './tools.ts';
export { freePort, runAsync } from './tools.ts';
import { freePort, runAsync } from './tools.ts';


/** The trust and admin files of a test CA, as paths for curl and OpenSSL. */
export interface CaFiles {
  root: string;
  serverCa: string;
  clientCa: string;
  adminCert: string;
  adminKey: string;
}

/** Paths of the files a test CA keeps in its state folder. */
export function caFiles(tc: TestCa): CaFiles {
  return {
    root: tc.layout.rootCert,
    serverCa: tc.layout.serverCaCert,
    clientCa: tc.layout.clientCaCert,
    adminCert: path.join(tc.layout.adminDir, 'cert.pem'),
    adminKey: path.join(tc.layout.adminDir, 'key.pem'),
  };
}

/** A running test server and its CA. */
export interface TestServer {
  tc: TestCa;
  srv: CaServer;
  url: string;
  files: CaFiles;
  /** The admin's TLS material, for ca-client calls. */
  admin: { cert: string; key: string; root: string };
  /** Starts another server on the same CA (other options: a clock ahead, a rate limit); closed with this one. */
  another(o?: Partial<CaServerOptions>): Promise<CaServer>;
  close(): Promise<void>;
}

/** The options every test server gets: silent logs, no rate limit unless asked. */
function serverOptions(tc: TestCa, o: Partial<CaServerOptions>): CaServerOptions {
  return { ca: tc.ca, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), rateLimit: false, ...o };
}

/** Makes a CA whose URL is a free local port and serves it there. */
export async function startTestServer(o: { ca?: Partial<InitCaOptions>; server?: Partial<CaServerOptions> } = {}): Promise<TestServer> {
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const tc = await makeTestCa({ url, ...o.ca });
  const srv = await startCaServer(serverOptions(tc, { port, url, ...o.server }));
  const files = caFiles(tc);
  const others: CaServer[] = [];
  return {
    tc, srv, url, files,
    admin: { cert: fs.readFileSync(files.adminCert, 'utf8'), key: fs.readFileSync(files.adminKey, 'utf8'), root: tc.init.rootPem },
    async another(more = {}) {
      const s = await startCaServer(serverOptions(tc, more));
      // Closing twice (by the test, then by this helper) is harmless.
      let closed: Promise<void> | undefined;
      const close = s.close.bind(s);
      s.close = () => (closed ??= close());
      others.push(s);
      return s;
    },
    async close() {
      for (const s of [...others, srv]) await s.close();
      await tc.close();
    },
  };
}

/** An HTTPS call's answer with the problem code (if any) picked out. */
export interface Answer {
  status: number;
  body: Buffer;
  json?: any;
  code?: string;
}

/** One HTTPS call with the given TLS material (ca-client `call`), returning status, JSON and problem code. */
export async function request(url: string, o: Parameters<typeof call>[1] = {}): Promise<Answer> {
  const r = await call(url, o);
  const json = r.json as any;
  return { ...r, json, code: json && typeof json.code === 'string' ? json.code : undefined };
}

/** TLS material for {@link send}: the trusted root and, for mTLS, a certificate and key (PEM). */
export interface SendTls {
  ca: string;
  cert?: string;
  key?: string;
}

/** The answer to {@link send}, with the problem code (if any) picked out. */
export interface SendAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json?: any;
  code?: string;
}

/**
 * One HTTPS request with an exact body (bytes or text, sent as is; an object is sent as JSON) and
 * headers; `chunked` leaves out content-length so the body goes chunked. A new connection per
 * request unless an `agent` (keep-alive) is given. A connection the server drops rejects.
 */
export function send(url: string, o: { method?: string; body?: string | Buffer | object; headers?: Record<string, string>; tls: SendTls; chunked?: boolean; agent?: https.Agent }): Promise<SendAnswer> {
  return new Promise((resolve, reject) => {
    const json = o.body !== undefined && !(typeof o.body === 'string' || Buffer.isBuffer(o.body));
    const payload = o.body === undefined ? undefined : json ? Buffer.from(JSON.stringify(o.body)) : Buffer.from(o.body as string | Buffer);
    const headers: Record<string, string> = {
      ...(json ? { 'content-type': 'application/json' } : {}),
      ...(payload && !o.chunked ? { 'content-length': String(payload.length) } : {}),
      ...o.headers,
    };
    const req = https.request(url, { method: o.method ?? (payload ? 'POST' : 'GET'), headers, ca: o.tls.ca, cert: o.tls.cert, key: o.tls.key, agent: o.agent ?? false, timeout: 20_000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(parts);
        let parsed: any;
        if (/json/.test(String(res.headers['content-type']))) {
          try {
            parsed = JSON.parse(body.toString('utf8'));
          } catch {
            parsed = undefined;
          }
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: parsed, code: typeof parsed?.code === 'string' ? parsed.code : undefined });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (payload && o.chunked) {
      // Several writes, so the body really goes as chunks.
      for (let i = 0; i < payload.length; i += 16 * 1024) req.write(payload.subarray(i, i + 16 * 1024));
      req.end();
    } else req.end(payload);
  });
}


/** Runs openssl asynchronously; every caller checks `requireTool(t, 'openssl')` first. */
export const opensslAsync = (args: string[], o: { input?: string | Buffer } = {}): Promise<RunResult> => runAsync('openssl', args, o);

/** Runs curl silently (errors shown); every caller checks `requireTool(t, 'curl')` first. */
export function curl(args: string[]): Promise<RunResult> {
  return runAsync('curl', ['-sS', '--max-time', '20', ...args]);
}

/**
 * curl writing the body to `out` and the response headers to `out`.headers; returns the HTTP
 * status (from `-w %{http_code}`), the body as text and the headers (lowercase names).
 */
export async function curlTo(args: string[], out: string): Promise<{ status: number; body: string; headers: Record<string, string> }> {
  const r = await curl(['-o', out, '-D', `${out}.headers`, '-w', '%{http_code}', ...args]);
  if (r.status !== 0) throw new Error(`curl failed (${r.status}): ${r.stderr}`);
  const headers: Record<string, string> = {};
  for (const line of fs.readFileSync(`${out}.headers`, 'utf8').split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status: Number(r.stdout), body: fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '', headers };
}

/** Polls `check` every 50 ms until it returns a value (not undefined) or `ms` pass; throws on timeout. */
export async function waitFor<T>(what: string, ms: number, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The connection string of the PostgreSQL test server, if configured. */
export const PG_URL = process.env.MUTUAL_TEST_PG;

/**
 * The `skip` option of the PostgreSQL cases: a message when MUTUAL_TEST_PG is unset; under
 * MUTUAL_INTEROP=require, undefined, so the cases run and fail on the missing server.
 */
export function pgSkip(): string | undefined {
  if (PG_URL || process.env.MUTUAL_INTEROP === 'require') return undefined;
  return 'PostgreSQL not configured: set MUTUAL_TEST_PG=postgres://... to run';
}

/** The PostgreSQL URL, or a clear failure (for cases that run under MUTUAL_INTEROP=require). */
export function pgUrl(): string {
  if (!PG_URL) throw new Error('MUTUAL_TEST_PG is not set and MUTUAL_INTEROP=require: set MUTUAL_TEST_PG=postgres://... to run');
  return PG_URL;
}

/** A fresh, random schema name. */
export const freshSchema = (): string => `mutual_srv_${crypto.randomBytes(6).toString('hex')}`;

/** Drops a test schema and everything in it. */
export async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: pgUrl() });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await c.end();
  }
}

const MUTUAL_BIN = path.resolve(import.meta.dirname, '../../bin/mutual.mjs');

/** `mutual serve` running as its own process. */
export interface Running {
  child: ChildProcess;
  url: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

/**
 * Starts `mutual serve` (the real CLI) as a process and waits until /health answers; `extra` are
 * more serve options; `port` (default: a free one) is for a CA whose configured URL names it.
 */
export async function spawnServe(tc: TestCa, db?: { url: string; schema: string }, extra: string[] = [], port?: number): Promise<Running> {
  port ??= await freePort();
  const args = [MUTUAL_BIN, '--home', tc.home, 'serve', '--listen', `127.0.0.1:${port}`, '--log-level', 'warn', '--rate-limit', 'off', ...extra];
  if (db) args.push('--database', db.url, '--database-schema', db.schema);
  const child = spawn(process.execPath, args, { env: { ...process.env, MUTUAL_CA_PASSPHRASE: TEST_PASSPHRASE, MUTUAL_DATABASE_URL: undefined }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
  let gone = false;
  void exited.then(() => (gone = true));
  const url = `https://127.0.0.1:${port}`;
  await waitFor(`mutual serve on ${url}`, 20_000, async () => {
    if (gone) throw new Error(`mutual serve exited:\n${out}`);
    try {
      return (await send(`${url}/health`, { tls: { ca: tc.init.rootPem } })).status === 200 ? true : undefined;
    } catch {
      return undefined;
    }
  });
  return { child, url, exited, output: () => out };
}
