/**
 * A whole gateway set-up for tests: a test CA, a CRL server, an mTLS backend made with the SDK
 * (which trusts XFCC only from the gateway), a plain-HTTP backend, the gateway's certificates on
 * disk, a gateway.yaml, and the gateway itself.
 */
import fs from 'node:fs';
import http from 'node:http';
import type https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { stringify } from 'yaml';
import { pino } from 'pino';
import { makePki, startCrlServer, id, names, type Pki, type Credential } from '../sdk/fixtures.ts';
import { createServer, loadIdentity, peerIdentity, identityFromXfcc, type MtlsServer, type IdentitySource } from '../../src/sdk/index.ts';
import { startGateway, type Gateway } from '../../src/gateway/index.ts';
import { waitForPort } from '../helpers/tools.ts';

export const GATEWAY_ID = id('infra/gateway');

/** What a backend echoes back. */
export interface Echo {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** The identity of the connection (the gateway's client certificate). */
  peer?: string;
  peerSerial?: string;
  /** The caller as forwarded by the gateway. */
  caller?: string;
  body?: string;
}

export interface Harness {
  pki: Pki;
  dir: string;
  configFile: string;
  config: Record<string, unknown>;
  gateway: Gateway;
  backend: MtlsServer;
  backendUrl: string;
  plainUrl: string;
  crl: Awaited<ReturnType<typeof startCrlServer>>;
  gwServer: Credential;
  gwClient: Credential;
  creds: Record<string, Credential>;
  writeConfig(c: Record<string, unknown>): void;
  close(): Promise<void>;
}

async function listen(s: http.Server | MtlsServer): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

/** Builds everything; `tweak` edits the gateway config before start. */
export async function startHarness(tweak: (c: Record<string, unknown>, h: { backendUrl: string; plainUrl: string; crlUrl: string }) => void = () => {}): Promise<Harness> {
  const pki = await makePki();
  const dir = pki.tc.dir;
  const crl = await startCrlServer(() => pki.crl());
  const gwServer = await pki.issue('server', names({ dns: ['localhost', 'gw.acme.internal'], ip: ['127.0.0.1'] }), 'gw-server');
  const gwClient = await pki.issue('client', names({ uri: [GATEWAY_ID] }), 'gw-client');
  const backendCred = await pki.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'backend');
  const backendIdentity: IdentitySource = loadIdentity({ certFile: backendCred.fullchainFile, keyFile: backendCred.keyFile, caFile: pki.bundleFile, watch: false });
  const backend = await createServer({ identity: backendIdentity, clientCas: pki.clientCa, allow: [GATEWAY_ID], revocation: { mode: 'off' } }, (req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const p = (req.url ?? '').split('?')[0];
      const send = () => {
        let caller: string | undefined;
        try {
          caller = identityFromXfcc(req, { trustedProxies: [GATEWAY_ID] })?.spiffeId;
        } catch {
          caller = 'untrusted';
        }
        const echo: Echo = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, peer: peerIdentity(req)?.spiffeId, peerSerial: peerIdentity(req)?.serial, caller, body: Buffer.concat(parts).toString('utf8') };
        const text = JSON.stringify(echo);
        (res as http.ServerResponse).writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), connection: 'keep-alive' });
        res.end(text);
      };
      if (p.endsWith('/slow')) setTimeout(send, 1500);
      else send();
    });
  });
  const backendUrl = `https://127.0.0.1:${await listen(backend)}`;
  const plain = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`plain ${req.url} xfcc=${req.headers['x-forwarded-client-cert'] ?? ''}`);
  });
  const plainUrl = `http://127.0.0.1:${await listen(plain)}`;
  const creds: Record<string, Credential> = {
    payments: await pki.issue('client', names({ uri: [id('prod/payments')] }), 'payments'),
    billing: await pki.issue('client', names({ uri: [id('staging/billing')] }), 'billing'),
    admin: await pki.issue('client', names({ uri: [id('prod/admin-tool')] }), 'admin-tool'),
  };
  const config: Record<string, unknown> = {
    listen: { host: '127.0.0.1', port: 0 },
    tls: { cert: gwServer.fullchainFile, key: gwServer.keyFile },
    trust: { ca: pki.bundleFile, clientCas: pki.clientCaFile },
    revocation: { mode: 'fail-closed', crlUrls: [crl.url], refreshSeconds: 60 },
    upstreamTls: { cert: gwClient.fullchainFile, key: gwClient.keyFile, ca: pki.bundleFile },
    forward: { xfcc: true, clientCert: true, strip: ['x-client-*'] },
    routes: [
      { name: 'admin', pathPrefix: '/api/admin', upstream: backendUrl, allow: [{ identities: [id('prod/admin-tool')] }] },
      { name: 'api', pathPrefix: '/api', upstream: backendUrl, allow: [{ identities: [id('prod/*')], methods: ['GET', 'POST', 'HEAD'] }] },
      { name: 'plain', pathPrefix: '/plain', upstream: plainUrl, stripPrefix: true, allow: [{ identities: ['*'] }] },
      { name: 'down', pathPrefix: '/down', upstream: 'http://127.0.0.1:1', allow: [{ identities: ['*'] }] },
    ],
    limits: { upstreamTimeoutMs: 1000, headersTimeoutMs: 1000, shutdownTimeoutMs: 2000 },
    accessLog: false,
    logLevel: 'silent',
    admin: { host: '127.0.0.1', port: 0 },
  };
  tweak(config, { backendUrl, plainUrl, crlUrl: crl.url });
  const configFile = path.join(dir, 'gateway.yaml');
  const writeConfig = (c: Record<string, unknown>) => {
    const tmp = configFile + '.tmp';
    fs.writeFileSync(tmp, stringify(c));
    fs.renameSync(tmp, configFile);
  };
  writeConfig(config);
  const gateway = await startGateway({ configFile, logger: pino({ level: 'silent' }), accessLogger: false });
  return {
    pki, dir, configFile, config, gateway, backend, backendUrl, plainUrl, crl, gwServer, gwClient, creds, writeConfig,
    async close() {
      await gateway.close();
      const closedBackend = new Promise<void>((r) => backend.close(() => r()));
      (backend as https.Server).closeAllConnections();
      await closedBackend;
      backendIdentity.close();
      await new Promise<void>((r) => {
        plain.close(() => r());
        plain.closeAllConnections();
      });
      await crl.close();
      await pki.close();
    },
  };
}

/**
 * Debian's nginx in the foreground with a temp prefix: `servers` is the body of its `http` block
 * (server blocks); it must listen on 127.0.0.1:`port`. Resolves once the port accepts.
 */
export async function startNginx(dir: string, port: number, servers: string): Promise<{ close(): Promise<void> }> {
  const tmp = path.join(dir, 'tmp');
  fs.mkdirSync(tmp, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, `
worker_processes 1;
error_log ${dir}/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${tmp}/body; proxy_temp_path ${tmp}/proxy; fastcgi_temp_path ${tmp}/fastcgi; uwsgi_temp_path ${tmp}/uwsgi; scgi_temp_path ${tmp}/scgi;
  ${servers}
}
`);
  const nginx = spawn('nginx', ['-p', dir, '-c', conf, '-g', `daemon off; pid ${dir}/nginx.pid;`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  nginx.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((r) => nginx.once('exit', () => r()));
  const close = async () => {
    nginx.kill('SIGTERM');
    await exited;
  };
  try {
    await waitForPort(port, 5000);
  } catch (e) {
    await close();
    throw new Error(`${(e as Error).message}: ${stderr}`);
  }
  return { close };
}
