/**
 * Real peers for the monitor and doctor tests: TLS servers built from a test CA (node:https), nginx
 * with a temp config, TCP servers that hang or reset, an SMTP server (smtp-server) and an HTTP
 * server that receives webhooks. Everything listens on 127.0.0.1, on ports the OS picks.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';
import type { IssueRequest, IssueResult } from '../../src/ca/authority.ts';
import { toPem } from '../../src/core/pem.ts';

export const DAY = 86_400_000;
/** Test CAs are made this long before the real now, so expired certificates can be issued. */
export const CA_AGE_MS = 60 * DAY;

/** A CA made 60 days ago (its clock stays there; pass `now` to issue at other times). */
export function makePastCa(name = 'Acme Test'): Promise<TestCa> {
  return makeTestCa({ now: new Date(Date.now() - CA_AGE_MS), name });
}

/** Issues and returns PEM strings. */
export async function issuePem(t: TestCa, req: IssueRequest): Promise<IssueResult & { keyPem: string }> {
  const r = await t.ca.issue({ now: new Date(), ...req });
  return { ...r, keyPem: r.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
}

export const serverNames = (...dns: string[]) => ({ dns, ip: [], uri: [] });
export const clientNames = (service: string) => ({ dns: [], ip: [], uri: [`spiffe://acme.internal/prod/${service}`] });

/** A listening server and how to stop it. */
export interface Running {
  port: number;
  close(): Promise<void>;
}

const closeServer = (s: net.Server): Promise<void> => new Promise((resolve) => {
  s.close(() => resolve());
  (s as http.Server).closeAllConnections?.();
});

/** Options of {@link startTlsServer}. */
export interface TlsServerOptions {
  cert: string;
  key: string;
  /** Client CA bundle: turns on requestCert + rejectUnauthorized. */
  clientCa?: string;
  crl?: string[];
}

/** An https server answering 200 "ok" (mTLS when clientCa is given). */
export async function startTlsServer(o: TlsServerOptions): Promise<Running> {
  const server = https.createServer({
    cert: o.cert, key: o.key, ...(o.clientCa ? { ca: o.clientCa, requestCert: true, rejectUnauthorized: true } : {}), ...(o.crl ? { crl: o.crl } : {}),
  }, (_req, res) => res.end('ok\n'));
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => closeServer(server) };
}

/** A TCP server that accepts and never says a word (a hung service). */
export async function startHangingServer(): Promise<Running> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => { for (const s of sockets) s.destroy(); return closeServer(server); } };
}

/** A TCP server that resets every connection at once. */
export async function startResettingServer(): Promise<Running> {
  const server = net.createServer((s) => s.resetAndDestroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => closeServer(server) };
}

/** A port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await closeServer(s);
  return port;
}

/** Options of {@link startNginx}. */
export interface NginxOptions {
  dir: string;
  fullchain: string;
  key: string;
  /** Client CA bundle (PEM); with it, `ssl_verify_client on`. */
  clientCa?: string;
  /** CRLs (PEM) for every CA of the client chain. */
  crlPem?: string;
}

/** nginx from Debian with a temp config, in the foreground, on a free port. */
export async function startNginx(o: NginxOptions): Promise<Running & { log: () => string }> {
  const port = await closedPort();
  const w = (name: string, data: string) => {
    const p = path.join(o.dir, name);
    fs.writeFileSync(p, data, { mode: 0o600 });
    return p;
  };
  const cert = w('nginx-fullchain.pem', o.fullchain);
  const key = w('nginx-key.pem', o.key);
  const clientCa = o.clientCa && w('nginx-client-ca.pem', o.clientCa);
  const crl = o.crlPem && w('nginx-crl.pem', o.crlPem);
  fs.mkdirSync(path.join(o.dir, 'nginx-tmp'), { recursive: true });
  const tmp = path.join(o.dir, 'nginx-tmp');
  const conf = w('nginx.conf', `
error_log ${o.dir}/nginx-error.log info;
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${tmp}/body; proxy_temp_path ${tmp}/proxy; fastcgi_temp_path ${tmp}/fastcgi; uwsgi_temp_path ${tmp}/uwsgi; scgi_temp_path ${tmp}/scgi;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    ${clientCa ? `ssl_client_certificate ${clientCa};\n    ssl_verify_client on;\n    ssl_verify_depth 2;` : ''}
    ${crl ? `ssl_crl ${crl};` : ''}
    location / { return 200 "ok\\n"; }
  }
}
`);
  const child: ChildProcess = spawn('nginx', ['-p', o.dir, '-c', conf, '-e', `${o.dir}/nginx-error.log`, '-g', `daemon off; pid ${o.dir}/nginx.pid;`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const log = () => stderr + (fs.existsSync(`${o.dir}/nginx-error.log`) ? fs.readFileSync(`${o.dir}/nginx-error.log`, 'utf8') : '');
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${log()}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not listen: ${log()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port, log,
    close: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}

/** One email the SMTP server received. */
export interface ReceivedMail {
  from: string;
  to: string[];
  raw: string;
  subject: string;
  /** The body, quoted-printable decoded. */
  body: string;
}

/** Decodes a quoted-printable body (RFC 2045 6.7). */
export function decodeQuotedPrintable(text: string): string {
  const bytes = Buffer.from(text.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
  return bytes.toString('utf8');
}

/** A real SMTP server (npm smtp-server) on a free port, keeping what it receives. */
export async function startSmtpServer(o: { user?: string; password?: string } = {}): Promise<Running & { mails: ReceivedMail[]; logins: string[] }> {
  const mails: ReceivedMail[] = [];
  const logins: string[] = [];
  const server = new SMTPServer({
    secure: false, disabledCommands: o.user ? ['STARTTLS'] : ['STARTTLS', 'AUTH'], authOptional: !o.user, allowInsecureAuth: true, logger: false,
    onAuth(auth, _session, cb) {
      if (auth.username === o.user && auth.password === o.password) {
        logins.push(auth.username!);
        return cb(null, { user: auth.username });
      }
      return cb(new Error('bad credentials'));
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        // Headers may be folded (RFC 5322 2.2.3): unfold before reading the subject.
        const head = raw.split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]+/g, ' ');
        const subject = /^Subject: (.*)$/m.exec(head)?.[1] ?? '';
        const rawBody = raw.slice(raw.search(/\r?\n\r?\n/)).trim();
        const body = /Content-Transfer-Encoding: quoted-printable/i.test(head) ? decodeQuotedPrintable(rawBody) : rawBody;
        mails.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), raw, subject, body });
        cb();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.server.address() as AddressInfo).port;
  return { port, mails, logins, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** An HTTP server that records POSTed JSON; `status` decides its answer. */
export async function startWebhookServer(): Promise<Running & { bodies: unknown[]; status: number; url: string }> {
  const state = { bodies: [] as unknown[], status: 200 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      if (state.status === 200) state.bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(state.status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const out = {
    port, url: `http://127.0.0.1:${port}/hook`, close: () => closeServer(server),
    get bodies() { return state.bodies; },
    get status() { return state.status; },
    set status(v: number) { state.status = v; },
  };
  return out;
}

/** The CRLs of a test CA as PEM, for TLS servers (every level: root and client CA). */
export function crlPems(t: TestCa): string[] {
  return [t.layout.rootCrl, `${t.layout.caDir}/client.crl`].map((f) => toPem(fs.readFileSync(f), 'X509 CRL'));
}
