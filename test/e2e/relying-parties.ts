/**
 * The relying parties of the root-rollover test, each terminating mTLS with a server certificate
 * and client-CA trust that one `mutual agent` (the real Agent, in process, on the test's clock)
 * deploys and reloads: Debian's nginx (HUP), Debian's HAProxy in master-worker mode (USR2 to the
 * master: a restart-free reload, the listeners handed to the new worker), `mutual gateway`
 * (watches its files) and an SDK server (`createServer`, reloaded on WINCH sent by the agent to
 * this process). Every one answers 200 to `GET /` from a verified client.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { stringify as toYaml } from 'yaml';
import { pino } from 'pino';
import { createServer, loadIdentity, type MtlsServer, type IdentitySource } from '../../src/sdk/index.ts';
import { startGateway, type Gateway } from '../../src/gateway/index.ts';
import { EVENT_WAIT_MS, freePort, until, type AgentTestCa } from '../agent/harness.ts';

/** The relying parties, in the order the loops visit them. */
export const PARTY_NAMES = ['nginx', 'haproxy', 'gateway', 'sdk'] as const;
export type PartyName = (typeof PARTY_NAMES)[number];

/** One running relying party. */
export interface RelyingParty {
  name: PartyName;
  port: number;
  /** Its output so far (for failure messages). */
  log(): string;
  close(): Promise<void>;
}

/** Where a party's agent-managed files are. */
export interface PartyFiles {
  key: string;
  fullchain: string;
  /** Roots and client CAs OpenSSL checks client chains against. */
  bundle: string;
  /** The client CAs alone (the trust boundary of the gateway and the SDK). */
  clientCas: string;
  /** CRLs, PEM: the root's and the client CAs'. */
  crl: string;
}

/** The files of `name` under `dir`. */
export function partyFiles(dir: string, name: PartyName): PartyFiles {
  const d = path.join(dir, name);
  return {
    key: path.join(d, 'site.pem.key'), fullchain: path.join(d, 'site.pem'),
    bundle: path.join(d, 'trust/ca.pem'), clientCas: path.join(d, 'trust/client-cas.pem'), crl: path.join(d, 'trust/crl.pem'),
  };
}

/** How the agent checks and reloads each party (none for the gateway: it watches its files). */
function hooksOf(dir: string, name: PartyName): Record<string, unknown> {
  const d = path.join(dir, name);
  if (name === 'nginx') return { check: ['nginx', '-t', '-q', '-p', d, '-c', path.join(d, 'nginx.conf'), '-g', `pid ${d}/nginx.pid; error_log stderr;`], reload: { signal: 'HUP', pidFile: path.join(d, 'nginx.pid') } };
  if (name === 'haproxy') return { check: ['haproxy', '-c', '-q', '-f', path.join(d, 'haproxy.cfg')], reload: { signal: 'USR2', pidFile: path.join(d, 'haproxy.pid') } };
  // WINCH: ignored by Node when nothing listens (USR2 would write a diagnostic report).
  if (name === 'sdk') return { reload: { signal: 'WINCH', pidFile: path.join(d, 'self.pid') } };
  return {};
}

/**
 * agent.yaml for the four parties: one server certificate each (fullchain + key where the party
 * reads them) and its trust files (bundle, client CAs, CRLs), with the party's hooks.
 */
export function partiesManifest(dir: string, ca: AgentTestCa, o: { renewalFraction: number }): Record<string, unknown> {
  const bundles: unknown[] = [];
  const crls: unknown[] = [];
  const certificates = PARTY_NAMES.map((name) => {
    const f = partyFiles(dir, name);
    const hooks = hooksOf(dir, name);
    // nginx and HAProxy check client chains with OpenSSL against the bundle (and its CRLs, every
    // level); the gateway and the SDK anchor OpenSSL's check on the root (clients send their
    // chain) and draw the trust boundary with the client CAs alone.
    const anchors = name === 'nginx' || name === 'haproxy' ? ['root', 'client-ca'] : ['root'];
    bundles.push({ path: f.bundle, include: anchors, ...hooks }, { path: f.clientCas, include: ['client-ca'], ...hooks });
    crls.push({ path: f.crl, issuers: ['root', 'client'], ...hooks });
    return { name, profile: 'server', names: ['localhost', '127.0.0.1'], tokenFile: path.join(dir, `${name}.token`), files: { fullchain: f.fullchain, key: f.key }, ...hooks };
  });
  return {
    ca: { url: ca.url, rootFingerprint: ca.rootFingerprint },
    stateDir: path.join(dir, 'agent-state'),
    renewal: { fraction: o.renewalFraction, jitter: 0, retryInitial: '200ms', retryMax: '2s' },
    trust: { refresh: '500ms', bundles, crls },
    certificates,
  };
}

/** Removes the hooks: the bootstrap run, before the parties and all their files exist. */
export function withoutReloads(raw: Record<string, any>): Record<string, any> {
  const copy = structuredClone(raw);
  for (const x of [...copy.certificates, ...copy.trust.bundles, ...copy.trust.crls]) {
    delete x.check;
    delete x.reload;
    delete x.verify;
  }
  return copy;
}

function spawnLogged(cmd: string, args: string[]): { child: ChildProcess; log: () => string; exited: Promise<void> } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { child, log: () => out, exited };
}

function writeNginxConfig(dir: string, port: number): void {
  const d = path.join(dir, 'nginx');
  const f = partyFiles(dir, 'nginx');
  fs.mkdirSync(path.join(d, 'tmp'), { recursive: true });
  fs.writeFileSync(path.join(d, 'nginx.conf'), `
worker_processes 1;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${d}/tmp/body; proxy_temp_path ${d}/tmp/proxy; fastcgi_temp_path ${d}/tmp/fastcgi; uwsgi_temp_path ${d}/tmp/uwsgi; scgi_temp_path ${d}/tmp/scgi;
  server {
    listen 127.0.0.1:${port} ssl;
    server_name localhost;
    ssl_certificate ${f.fullchain};
    ssl_certificate_key ${f.key};
    ssl_client_certificate ${f.bundle};
    ssl_verify_client on;
    ssl_verify_depth 3;
    ssl_crl ${f.crl};
    location / { return 200 "ok\\n"; }
  }
}
`);
}

async function startNginx(dir: string, port: number): Promise<RelyingParty> {
  const d = path.join(dir, 'nginx');
  const p = spawnLogged('nginx', ['-p', d, '-c', path.join(d, 'nginx.conf'), '-g', `daemon off; pid ${d}/nginx.pid; error_log stderr;`]);
  await until(() => fs.existsSync(path.join(d, 'nginx.pid')), EVENT_WAIT_MS, `nginx to start: ${p.log()}`);
  return { name: 'nginx', port, log: p.log, close: async () => { p.child.kill('SIGTERM'); await p.exited; } };
}

function writeHaproxyConfig(dir: string, port: number): void {
  const d = path.join(dir, 'haproxy');
  const f = partyFiles(dir, 'haproxy');
  const cfg = path.join(d, 'haproxy.cfg');
  // `crt` loads the key from site.pem.key beside it; verify with CRLs makes OpenSSL check every
  // level of the chain (X509_V_FLAG_CRL_CHECK_ALL), as nginx's ssl_crl does.
  fs.writeFileSync(cfg, `
global
  master-worker
  hard-stop-after 30s
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend mtls
  bind 127.0.0.1:${port} ssl crt ${f.fullchain} ca-file ${f.bundle} verify required crl-file ${f.crl}
  http-request return status 200 content-type text/plain string "ok"
`);
}

async function startHaproxy(dir: string, port: number): Promise<RelyingParty> {
  const d = path.join(dir, 'haproxy');
  const cfg = path.join(d, 'haproxy.cfg');
  const check = spawnLogged('haproxy', ['-c', '-q', '-f', cfg]);
  await check.exited;
  if (check.child.exitCode !== 0) throw new Error(`haproxy -c refused the config: ${check.log()}`);
  const p = spawnLogged('haproxy', ['-W', '-db', '-f', cfg, '-p', path.join(d, 'haproxy.pid')]);
  await until(() => fs.existsSync(path.join(d, 'haproxy.pid')), EVENT_WAIT_MS, `haproxy to start: ${p.log()}`);
  return { name: 'haproxy', port, log: p.log, close: async () => { p.child.kill('SIGTERM'); await p.exited; } };
}

async function startGatewayParty(dir: string): Promise<RelyingParty & { gateway: Gateway }> {
  const f = partyFiles(dir, 'gateway');
  const backend = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  const upstream = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
  const configFile = path.join(dir, 'gateway', 'gateway.yaml');
  fs.writeFileSync(configFile, toYaml({
    listen: { host: '127.0.0.1', port: 0 },
    tls: { cert: f.fullchain, key: f.key },
    trust: { ca: f.bundle, clientCas: f.clientCas },
    // Revocation from the certificates' CRL distribution points (the CA), fetched over HTTPS.
    revocation: { mode: 'fail-closed', refreshSeconds: 1 },
    routes: [{ name: 'all', pathPrefix: '/', upstream, allow: [{ identities: ['*'] }] }],
    accessLog: false,
    logLevel: 'silent',
  }));
  const gateway = await startGateway({ configFile, logger: pino({ level: 'silent' }), accessLogger: false });
  return {
    name: 'gateway', port: gateway.port, gateway, log: () => '',
    async close() {
      await gateway.close();
      await new Promise<void>((r) => {
        backend.close(() => r());
        backend.closeAllConnections();
      });
    },
  };
}

async function startSdkParty(dir: string): Promise<RelyingParty & { server: MtlsServer }> {
  const f = partyFiles(dir, 'sdk');
  const identity: IdentitySource = loadIdentity({ certFile: f.fullchain, keyFile: f.key, pollMs: 200 });
  // caFile: the roots are followed by the server itself (a root rollover needs no restart).
  const server = await createServer({ identity, caFile: f.bundle, caPollMs: 200, clientCas: fs.readFileSync(f.clientCas, 'utf8'), revocation: { mode: 'fail-closed', refreshMs: 1000 } }, (_req, res) => {
    (res as http.ServerResponse).writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  // The agent's reload hook signals this process (its pid in self.pid): the client CAs are read again.
  const onReload = () => server.verifier.setClientCas(fs.readFileSync(f.clientCas, 'utf8'));
  process.on('SIGWINCH', onReload);
  fs.writeFileSync(path.join(dir, 'sdk', 'self.pid'), String(process.pid));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    name: 'sdk', port: (server.address() as AddressInfo).port, server, log: () => '',
    async close() {
      process.off('SIGWINCH', onReload);
      await new Promise<void>((r) => {
        server.close(() => r());
        (server as unknown as http.Server).closeAllConnections();
      });
      identity.close();
    },
  };
}

/** The ports of the parties that listen where their config file says (nginx, HAProxy). */
export interface PartyPorts {
  nginx: number;
  haproxy: number;
}

/**
 * Makes the folders the agent writes into and the config files of nginx and HAProxy (the agent's
 * check commands read them); returns their ports.
 */
export async function prepareParties(dir: string): Promise<PartyPorts> {
  for (const name of PARTY_NAMES) fs.mkdirSync(path.join(dir, name, 'trust'), { recursive: true });
  const ports = { nginx: await freePort(), haproxy: await freePort() };
  writeNginxConfig(dir, ports.nginx);
  writeHaproxyConfig(dir, ports.haproxy);
  return ports;
}

/** Starts the four parties on the files the agent's bootstrap run wrote. */
export async function startParties(dir: string, ports: PartyPorts): Promise<Record<PartyName, RelyingParty>> {
  const started: RelyingParty[] = [];
  try {
    started.push(await startNginx(dir, ports.nginx));
    started.push(await startHaproxy(dir, ports.haproxy));
    started.push(await startGatewayParty(dir));
    started.push(await startSdkParty(dir));
  } catch (e) {
    for (const p of started) await p.close();
    throw e;
  }
  return Object.fromEntries(started.map((p) => [p.name, p])) as Record<PartyName, RelyingParty>;
}
