/**
 * Test harness for the agent: a real CA server in this process (port 0 style: a free port the
 * CA's URL names), leaf lifetimes of its own, a clock the test moves (the CA and the agent read
 * it, so "time passing" is the test moving it, never a sleep), tokens, revocation through the
 * admin API, manifests written to a temp folder, and key/certificate pair checks on disk.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { pino } from 'pino';
import { stringify as toYaml } from 'yaml';
import { makeTestCa, tempDir, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';
import { startCaServer, type CaServer } from '../../src/server/ca-server.ts';
import { splitNames } from '../../src/core/names.ts';
import { loadTokenKey, mintToken } from '../../src/ca/tokens.ts';
import { adminCall } from '../../src/sdk/ca-client.ts';
import { readPemOrDer } from '../../src/core/pem.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { CertificateAuthority, type IssueRequest } from '../../src/ca/authority.ts';
import { readConfig } from '../../src/ca/config.ts';
import { installIntermediate, intermediateCsr } from '../../src/ca/intermediate.ts';
import { signIntermediate } from '../../src/ca/offline.ts';
import { defaultNamePolicy } from '../../src/core/policy.ts';
import { loadManifest, type AgentManifest } from '../../src/agent/manifest.ts';
import { fetchCrl } from '../../src/sdk/ca-client.ts';
import { parseCrl } from '../../src/core/crl-reader.ts';
export { freePort, runAsync } from '../helpers/tools.ts';
import { freePort, runAsync } from '../helpers/tools.ts';
import { openAuthority } from '../../src/ca/open-authority.ts';

/**
 * How far behind the wall clock a {@link testClock} starts. Real peers (nginx, curl, OpenSSL, Node's
 * TLS client) judge certificates by the wall clock: everything the CA issues at the test's time
 * must not be "not yet valid" for them, so the test's time starts a day in the past and a test
 * moves it forward by less than that.
 */
export const CLOCK_BEHIND_MS = 86_400_000;
/** Longest a harness wait on an event (a CRL rebuilt, a process answering) lasts before it fails. */
export const EVENT_WAIT_MS = 60_000;

/** A clock a test moves; the CA (issuance, renewal, tokens, CRLs) and the agent read it. */
export interface TestClock {
  now: () => Date;
  /** Moves the clock to `t` (never backwards). */
  set(t: number | Date): void;
  advance(ms: number): void;
}

/** A clock standing still at `start` (default {@link CLOCK_BEHIND_MS} behind the wall clock, whole seconds) until moved. */
export function testClock(start = Math.floor((Date.now() - CLOCK_BEHIND_MS) / 1000) * 1000): TestClock {
  let t = start;
  return {
    now: () => new Date(t),
    set(to) {
      const ms = typeof to === 'number' ? to : to.getTime();
      if (ms < t) throw new Error(`the test clock does not go back (${new Date(t).toISOString()} -> ${new Date(ms).toISOString()})`);
      t = ms;
    },
    advance(ms) {
      this.set(t + ms);
    },
  };
}

/** A running CA for agent tests. */
export interface AgentTestCa {
  tc: TestCa;
  srv: CaServer;
  url: string;
  root: string;
  rootFingerprint: string;
  /** Certificates issued through the server (enroll + renew), counted by the issue wrapper. */
  issued(): number;
  token(names: string[], ttlSeconds?: number): Promise<string>;
  /** Revokes through the admin API and resolves once the CA serves a CRL that lists the serial. */
  revoke(serial: string): Promise<void>;
  /** Stops the server (the CA stays open) and starts it again on the same port. */
  restart(): Promise<void>;
  /** Rotates an intermediate's key (CSR, offline signature, install) and restarts the server on it. */
  rotate(role: 'server-ca' | 'client-ca'): Promise<void>;
  stop(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts a CA server. `leafSeconds` sets the lifetime of certificates issued through /v1/enroll and
 * /v1/renew (the server has no lifetime option of its own, so the test wraps the CA's issue());
 * `clock` is the CA's and the server's clock (the hierarchy is made at its time), default the wall clock.
 */
export async function startAgentCa(o: { leafSeconds?: number; graceSeconds?: number; clock?: TestClock } = {}): Promise<AgentTestCa> {
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const now = o.clock?.now;
  const tc = await makeTestCa({ url, clock: now });
  let count = 0;
  const wrapIssue = (ca: CertificateAuthority) => {
    const issue = ca.issue.bind(ca);
    ca.issue = (req: IssueRequest) => {
      const viaServer = /^(token|renew):/.test(req.actor ?? '');
      if (viaServer) count++;
      return issue(viaServer && o.leafSeconds ? { ...req, days: undefined, lifetimeSeconds: o.leafSeconds } : req);
    };
  };
  wrapIssue(tc.ca);
  const start = () => startCaServer({ ca: tc.ca, passphrase: TEST_PASSPHRASE, host: '127.0.0.1', port, url, logger: pino({ level: 'silent' }), rateLimit: false, renewalGraceSeconds: o.graceSeconds, now });
  let srv: CaServer | undefined = await start();
  const root = tc.init.rootPem;
  const rootFingerprint = crypto.createHash('sha256').update(readPemOrDer(root, ['CERTIFICATE'])).digest('hex');
  const admin = { cert: fs.readFileSync(path.join(tc.layout.adminDir, 'cert.pem'), 'utf8'), key: fs.readFileSync(path.join(tc.layout.adminDir, 'key.pem'), 'utf8'), root };
  const tokenKey = loadTokenKey(tc.layout.keysDir, TEST_PASSPHRASE);
  const self: AgentTestCa = {
    tc, url, root, rootFingerprint,
    get srv() {
      return srv!;
    },
    issued: () => count,
    async token(names, ttlSeconds = 600) {
      return (await mintToken({ key: tokenKey, names: splitNames(names), ttlSeconds, rootFingerprint, madeBy: 'test', now: now?.() })).token;
    },
    async revoke(serial) {
      const r = await adminCall({ caUrl: url, path: '/v1/revoke', body: { serial, reason: 'keyCompromise' }, ...admin }) as { role: string };
      // The server rebuilds the CRL right after answering; wait for that event, not for time.
      const stored = await self.tc.ca.store.getCertificate(serial);
      const slot = `${r.role}.${stored!.issuerKeyId.slice(0, 16)}` as Parameters<typeof fetchCrl>[2];
      await until(async () => parseCrl(await fetchCrl(url, root, slot)).revoked.has(serial), EVENT_WAIT_MS, `the CA's CRL to list ${serial}`);
    },
    async restart() {
      await srv?.close();
      srv = await start();
    },
    async stop() {
      await srv?.close();
      srv = undefined;
    },
    async rotate(role) {
      // The air-gapped flow of docs/operations.md, in process: CSR for a new key, signed with the
      // offline root, installed; then the CA is reopened (it loads the old key as retired).
      const config = readConfig(tc.layout.config);
      const csr = await intermediateCsr({ home: tc.home, role, passphrase: TEST_PASSPHRASE, newKey: true });
      const pem = await signIntermediate({
        offlineDir: tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, csr, role, url: config.url, organization: config.name, now: now?.(),
        policy: defaultNamePolicy(config.trustDomain, { dns: config.policy.permitDns, ip: config.policy.permitIp }),
      });
      await srv?.close();
      srv = undefined;
      await tc.ca.close();
      await installIntermediate({ home: tc.home, role, certificate: pem, passphrase: TEST_PASSPHRASE });
      tc.ca = await openAuthority({ home: tc.home, passphrase: TEST_PASSPHRASE, now });
      wrapIssue(tc.ca);
      srv = await start();
    },
    async close() {
      await srv?.close();
      srv = undefined;
      await tc.close();
    },
  };
  return self;
}

/** A temp folder for one test's host files, removed by the returned cleanup. */
export function hostDir(): string {
  return tempDir('mutual-agent-');
}

/** Writes agent.yaml (an object, or raw text) into `dir` and returns its path. */
export function writeManifest(dir: string, m: unknown, name = 'agent.yaml'): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, typeof m === 'string' ? m : toYaml(m));
  return p;
}

/** Writes agent.yaml and loads it. */
export function manifestFor(dir: string, m: unknown): AgentManifest {
  return loadManifest(writeManifest(dir, m));
}

/** A basic manifest object for one server certificate with files under `dir/certs`. */
export function serverManifest(dir: string, ca: AgentTestCa, extra: Record<string, unknown> = {}, cert: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ca: { url: ca.url, rootFingerprint: ca.rootFingerprint },
    stateDir: path.join(dir, 'state'),
    renewal: { fraction: 0.5, jitter: 0, retryInitial: '200ms', retryMax: '2s' },
    certificates: [{
      name: 'web', profile: 'server', names: ['localhost', '127.0.0.1'], tokenFile: path.join(dir, 'web.token'),
      files: { cert: path.join(dir, 'certs/web.crt'), key: path.join(dir, 'certs/web.key'), fullchain: path.join(dir, 'certs/web.fullchain.pem') },
      ...cert,
    }],
    ...extra,
  };
}

/** True when the key file's public key is the certificate file's (the pair matches). */
export function pairMatches(keyFile: string, certFile: string): boolean {
  const key = crypto.createPublicKey(fs.readFileSync(keyFile, 'utf8')).export({ type: 'spki', format: 'der' });
  const cert = parseCertificate(readPemOrDer(fs.readFileSync(certFile, 'utf8'), ['CERTIFICATE']));
  return key.equals(cert.spki);
}

/** The serial of the certificate in a file (the first block). */
export function serialOf(certFile: string): string {
  return parseCertificate(readPemOrDer(fs.readFileSync(certFile, 'utf8'), ['CERTIFICATE'])).serial;
}

/** SHA-256 of every file under `dir` (following links), for "nothing changed" checks. */
export function snapshot(files: string[]): Record<string, string> {
  return Object.fromEntries(files.map((f) => [f, fs.existsSync(f) ? crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex') : 'absent']));
}


/**
 * Runs `mutual agent ...` through the CLI entry of these tests; resolves with exit status and
 * output. The kill guard is generous: a loaded 2-core machine starts Node with type stripping slowly.
 */
export function agentCli(args: string[], o: { env?: NodeJS.ProcessEnv } = {}) {
  return runAsync(process.execPath, [path.join(import.meta.dirname, 'cli-entry.ts'), 'agent', ...args], { ...o, timeoutMs: 2 * EVENT_WAIT_MS });
}

/** Waits until `fn` is true, polling; throws after `ms`. */
export async function until(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
