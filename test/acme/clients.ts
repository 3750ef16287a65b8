/**
 * Real ACME clients from Debian, driven the same way against any ACME server: certbot 2.1, lego
 * 4.9 and dehydrated 0.7. Each keeps its whole state in the folder it is given, trusts only the CA
 * bundle it is given for the server's HTTPS, and never reaches beyond loopback (certbot always gets
 * `--server` and its three folders; no email, no EFF list, no random sleep before a renewal).
 *
 * Challenge modes: http-01 with the client's own standalone responder on a port, http-01 by webroot
 * (the test serves the folder, {@link startWebroot}), dns-01 through one hook script that sets the
 * TXT record over the test DNS's record API (test-dns.ts), tls-alpn-01 (lego only) on a port.
 * Every caller checks `requireTool` for the client (and `curl`, which the dns-01 hook and dehydrated use).
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { runAsync } from '../helpers/tools.ts';
import type { EabCredentials } from './target.ts';

/** How a client proves control of its name. */
export type ChallengeMode =
  | { type: 'http-01'; via: 'standalone'; port: number }
  | { type: 'http-01'; via: 'webroot'; dir: string }
  | { type: 'dns-01'; controlUrl: string; dnsPort: number }
  | { type: 'tls-alpn-01'; port: number };

/** What every client function takes. */
export interface ClientOptions {
  /** The ACME directory URL. */
  directoryUrl: string;
  /** PEM file trusted for the ACME server's HTTPS (and nothing else). */
  caBundle: string;
  /** The one DNS name the certificate is for. */
  domain: string;
  challenge: ChallengeMode;
  /** External account binding for the account the client registers. */
  eab?: EabCredentials;
  /** An empty folder the client keeps all its state in. */
  dir: string;
  /** Longest one action may run before the client is killed; default 120 s. */
  timeoutMs?: number;
}

/** The files of the certificate a client holds (PEM paths; `cert` is the leaf alone). */
export interface CertFiles {
  cert: string;
  chain: string;
  fullchain: string;
  key: string;
}

/** The outcome of one client action. */
export interface ClientRun {
  /** The client's exit status (-1 when it was killed). */
  status: number;
  /** The command and the tail of its output, for failure messages. */
  output: string;
  /** The certificate the client now holds (after obtain and renew). */
  files?: CertFiles;
}

/** One client bound to one server, name and challenge mode. */
export interface AcmeClient {
  name: 'certbot' | 'lego' | 'dehydrated';
  /** Registers an account (when needed) and gets a certificate. */
  obtain(): Promise<ClientRun>;
  /** Gets a new certificate now, whatever the old one's remaining life (a forced renewal). */
  renew(): Promise<ClientRun>;
  /** Revokes the certificate held now. */
  revoke(): Promise<ClientRun>;
}

/** Default bound on one client action. */
const ACTION_TIMEOUT_MS = 120_000;
/** Output kept per run for failure messages. */
const OUTPUT_TAIL = 12_000;

/**
 * The dns-01 hook of all three clients, called by each in its own way (lego `exec`, certbot's
 * manual hooks, dehydrated's HOOK). It sets and clears `_acme-challenge.<name>.` through the test
 * DNS's record API at $DNS_CONTROL.
 */
const DNS_HOOK = `#!/bin/sh
set -eu
api() { curl -sS --fail --max-time 10 -d "$2" "$DNS_CONTROL/$1"; }
case "\${1:-}" in
  present) api set-txt "{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}" ;;
  cleanup) api clear-txt "{\\"host\\":\\"$2\\"}" ;;
  certbot-auth) api set-txt "{\\"host\\":\\"_acme-challenge.$CERTBOT_DOMAIN.\\",\\"value\\":\\"$CERTBOT_VALIDATION\\"}" ;;
  certbot-cleanup) api clear-txt "{\\"host\\":\\"_acme-challenge.$CERTBOT_DOMAIN.\\"}" ;;
  deploy_challenge) api set-txt "{\\"host\\":\\"_acme-challenge.$2.\\",\\"value\\":\\"$4\\"}" ;;
  clean_challenge) api clear-txt "{\\"host\\":\\"_acme-challenge.$2.\\"}" ;;
  *) ;;
esac
`;

/** Writes the dns-01 hook into `dir` and returns its path. */
function writeDnsHook(dir: string): string {
  const p = path.join(dir, 'dns-hook.sh');
  fs.writeFileSync(p, DNS_HOOK, { mode: 0o755 });
  return p;
}

/** Runs one client command, bounded, and returns its status and output. */
async function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv, o: ClientOptions, files?: () => CertFiles): Promise<ClientRun> {
  const r = await runAsync(cmd, args, { env: { ...process.env, ...env }, timeoutMs: o.timeoutMs ?? ACTION_TIMEOUT_MS });
  const killed = r.signal ? ` (killed by ${r.signal}${r.signal === 'SIGKILL' ? ', timeout' : ''})` : '';
  const output = `$ ${cmd} ${args.join(' ')}${killed}\n${(r.stdout + r.stderr).slice(-OUTPUT_TAIL)}`;
  return { status: r.status, output, files: r.status === 0 && files ? files() : undefined };
}

/** The first PEM certificate of a bundle (lego writes leaf and issuer into one file). */
function firstPem(bundle: string): string {
  const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/.exec(bundle);
  if (!m) throw new Error('no certificate in the bundle');
  return m[0].endsWith('\n') ? m[0] : `${m[0]}\n`;
}

/** certbot 2.1: standalone or webroot http-01, or dns-01 through manual hooks (no tls-alpn-01). */
export function certbot(o: ClientOptions): AcmeClient {
  const d = (n: string) => path.join(o.dir, n);
  const common = ['--server', o.directoryUrl, '--config-dir', d('config'), '--work-dir', d('work'), '--logs-dir', d('logs'), '--non-interactive'];
  const env = { REQUESTS_CA_BUNDLE: o.caBundle, ...(o.challenge.type === 'dns-01' ? { DNS_CONTROL: o.challenge.controlUrl } : {}) };
  const ch = o.challenge;
  let how: string[];
  if (ch.type === 'http-01' && ch.via === 'standalone') how = ['--standalone', '--preferred-challenges', 'http', '--http-01-port', String(ch.port), '--http-01-address', '127.0.0.1'];
  else if (ch.type === 'http-01') how = ['--webroot', '-w', ch.dir, '--preferred-challenges', 'http'];
  else if (ch.type === 'dns-01') {
    const hook = writeDnsHook(o.dir);
    how = ['--manual', '--preferred-challenges', 'dns', '--manual-auth-hook', `${hook} certbot-auth`, '--manual-cleanup-hook', `${hook} certbot-cleanup`];
  } else throw new TypeError('certbot has no tls-alpn-01 authenticator');
  const live = d(`config/live/${o.domain}`);
  const files = (): CertFiles => ({ cert: `${live}/cert.pem`, chain: `${live}/chain.pem`, fullchain: `${live}/fullchain.pem`, key: `${live}/privkey.pem` });
  const eab = o.eab ? ['--eab-kid', o.eab.kid, '--eab-hmac-key', o.eab.hmac] : [];
  return {
    name: 'certbot',
    obtain: () => exec('certbot', ['certonly', ...common, ...how, '-d', o.domain, '--agree-tos', '--register-unsafely-without-email', '--no-eff-email', ...eab], env, o, files),
    renew: () => exec('certbot', ['renew', ...common, '--cert-name', o.domain, '--force-renewal', '--no-random-sleep-on-renew'], env, o, files),
    revoke: () => exec('certbot', ['revoke', ...common, '--cert-name', o.domain, '--no-delete-after-revoke', '--reason', 'unspecified'], env, o),
  };
}

/** lego 4.9: http-01 standalone or webroot, dns-01 through `--dns exec`, tls-alpn-01; EAB. */
export function lego(o: ClientOptions): AcmeClient {
  const common = ['--server', o.directoryUrl, '--path', o.dir, '--accept-tos', '--email', 'interop@acme.internal', '--domains', o.domain];
  if (o.eab) common.push('--eab', '--kid', o.eab.kid, '--hmac', o.eab.hmac);
  const ch = o.challenge;
  const env: NodeJS.ProcessEnv = { LEGO_CA_CERTIFICATES: o.caBundle };
  if (ch.type === 'http-01' && ch.via === 'standalone') common.push('--http', '--http.port', `127.0.0.1:${ch.port}`);
  else if (ch.type === 'http-01') common.push('--http', '--http.webroot', ch.dir);
  else if (ch.type === 'tls-alpn-01') common.push('--tls', '--tls.port', `127.0.0.1:${ch.port}`);
  else {
    // The test DNS is the only resolver and the only "authoritative" server: no propagation wait.
    common.push('--dns', 'exec', '--dns.resolvers', `127.0.0.1:${ch.dnsPort}`, '--dns.disable-cp');
    Object.assign(env, { EXEC_PATH: writeDnsHook(o.dir), DNS_CONTROL: ch.controlUrl, EXEC_POLLING_INTERVAL: '1', EXEC_PROPAGATION_TIMEOUT: '30' });
  }
  const base = path.join(o.dir, 'certificates', o.domain);
  const files = (): CertFiles => {
    const leaf = `${base}.leaf.pem`;
    fs.writeFileSync(leaf, firstPem(fs.readFileSync(`${base}.crt`, 'utf8')));
    return { cert: leaf, chain: `${base}.issuer.crt`, fullchain: `${base}.crt`, key: `${base}.key` };
  };
  return {
    name: 'lego',
    obtain: () => exec('lego', [...common, 'run'], env, o, files),
    // lego renews when fewer than --days are left: more days than any certificate lives forces it.
    renew: () => exec('lego', [...common, 'renew', '--days', '100000', '--no-random-sleep'], env, o, files),
    revoke: () => exec('lego', [...common, 'revoke', '--keep'], env, o),
  };
}

/** dehydrated 0.7: http-01 by its WELLKNOWN folder (served by the test), or dns-01 through its HOOK. */
export function dehydrated(o: ClientOptions): AcmeClient {
  const ch = o.challenge;
  const q = (s: string) => `"${s.replace(/["\\$`]/g, '\\$&')}"`;
  const lines = [`CA=${q(o.directoryUrl)}`, `BASEDIR=${q(o.dir)}`, `CURL_OPTS=${q(`--cacert ${o.caBundle}`)}`, 'CONTACT_EMAIL=""', 'KEY_ALGO="secp384r1"'];
  const env: NodeJS.ProcessEnv = {};
  if (ch.type === 'http-01' && ch.via === 'webroot') {
    const wellKnown = path.join(ch.dir, '.well-known', 'acme-challenge');
    fs.mkdirSync(wellKnown, { recursive: true });
    lines.push('CHALLENGETYPE="http-01"', `WELLKNOWN=${q(wellKnown)}`);
  } else if (ch.type === 'dns-01') {
    lines.push('CHALLENGETYPE="dns-01"', `HOOK=${q(writeDnsHook(o.dir))}`);
    env.DNS_CONTROL = ch.controlUrl;
  } else throw new TypeError('dehydrated here answers http-01 by webroot or dns-01 by its hook');
  if (o.eab) lines.push(`EAB_KID=${q(o.eab.kid)}`, `EAB_HMAC_KEY=${q(o.eab.hmac)}`);
  const config = path.join(o.dir, 'config');
  fs.writeFileSync(config, `${lines.join('\n')}\n`);
  const live = path.join(o.dir, 'certs', o.domain);
  const files = (): CertFiles => ({ cert: `${live}/cert.pem`, chain: `${live}/chain.pem`, fullchain: `${live}/fullchain.pem`, key: `${live}/privkey.pem` });
  return {
    name: 'dehydrated',
    async obtain() {
      const reg = await exec('dehydrated', ['--config', config, '--register', '--accept-terms'], env, o);
      if (reg.status !== 0) return reg;
      const got = await exec('dehydrated', ['--config', config, '--cron', '--domain', o.domain], env, o, files);
      return { ...got, output: `${reg.output}\n${got.output}` };
    },
    renew: () => exec('dehydrated', ['--config', config, '--cron', '--domain', o.domain, '--force'], env, o, files),
    revoke: () => exec('dehydrated', ['--config', config, '--revoke', `${live}/cert.pem`], env, o),
  };
}

/** A running webroot responder. */
export interface Webroot {
  /** The folder served: a client writes `.well-known/acme-challenge/<token>` under it. */
  dir: string;
  /** Paths the validator asked for, in order. */
  requests: string[];
  close(): Promise<void>;
}

/** A token is base64url (RFC 8555 section 8.1); anything else is not looked up on disk. */
const TOKEN = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]{1,256})$/;

/** What a webroot responder answers for a token file that exists, when told to answer wrongly. */
export const WRONG_KEY_AUTHORIZATION = 'not-the-key-authorization';

/**
 * Serves `dir/.well-known/acme-challenge/<token>` over plain HTTP on 127.0.0.1:`port`: the
 * http-01 responder of the webroot mode, for any client. With `wrong`, it answers
 * {@link WRONG_KEY_AUTHORIZATION} instead of the file's content (a validation that must fail).
 */
export function startWebroot(dir: string, port: number, o: { wrong?: boolean } = {}): Promise<Webroot> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const m = TOKEN.exec(req.url ?? '');
    const file = m ? path.join(dir, '.well-known', 'acme-challenge', m[1]) : undefined;
    if (!file || !fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(o.wrong ? WRONG_KEY_AUTHORIZATION : fs.readFileSync(file));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve({
      dir,
      requests,
      close: () => new Promise((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
    }));
  });
}
