/**
 * The ACME interop matrix: which client, which challenge, and the one run every case goes
 * through against any target (target.ts): obtain, check the certificate with `openssl verify` to
 * the target's root, renew (forced) and check again, revoke and ask the target whether it says
 * revoked. interop-pebble.test.ts and interop-mutual.test.ts run the same cases with this same
 * code, so a difference between them is the server's or the client's.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, test, type TestContext } from 'node:test';
import { freePort, requireTool, runAsync } from '../helpers/tools.ts';
import { certbot, dehydrated, lego, startWebroot, type AcmeClient, type ChallengeMode, type ClientOptions, type ClientRun, type Webroot } from './clients.ts';
import type { AcmeTarget, StartTarget } from './target.ts';
import { startTestDns, type TestDns } from './test-dns.ts';

/** The clients, by name. */
export const CLIENTS: Record<AcmeClient['name'], (o: ClientOptions) => AcmeClient> = { certbot, lego, dehydrated };

/** One row of the matrix. */
export interface MatrixCase {
  /** The test's name (`ok/...`); its last part also names the certificate's DNS name. */
  name: string;
  client: AcmeClient['name'];
  challenge: 'http-01/standalone' | 'http-01/webroot' | 'dns-01' | 'tls-alpn-01';
  /** The target requires external account binding, and the client registers with it. */
  eab?: boolean;
}

/**
 * What the issue asks of the real clients (certbot, lego, dehydrated), and two more that cost
 * little: EAB by certbot and dns-01 by dehydrated's hook, so each of the three clients meets a
 * second challenge or binding. dehydrated comes first: it is bash forking curl and openssl for every
 * JSON field and takes 30-60 s on a loaded 2-core machine, so it starts at once.
 */
export const MATRIX: readonly MatrixCase[] = [
  { name: 'ok/dehydrated-http-01-wellknown', client: 'dehydrated', challenge: 'http-01/webroot' },
  { name: 'ok/dehydrated-dns-01-hook', client: 'dehydrated', challenge: 'dns-01' },
  { name: 'ok/certbot-http-01-standalone', client: 'certbot', challenge: 'http-01/standalone' },
  { name: 'ok/certbot-http-01-webroot', client: 'certbot', challenge: 'http-01/webroot' },
  { name: 'ok/certbot-dns-01-manual-hook', client: 'certbot', challenge: 'dns-01' },
  { name: 'ok/certbot-http-01-eab', client: 'certbot', challenge: 'http-01/standalone', eab: true },
  { name: 'ok/lego-http-01', client: 'lego', challenge: 'http-01/standalone' },
  { name: 'ok/lego-dns-01-exec', client: 'lego', challenge: 'dns-01' },
  { name: 'ok/lego-tls-alpn-01', client: 'lego', challenge: 'tls-alpn-01' },
  { name: 'ok/lego-http-01-eab', client: 'lego', challenge: 'http-01/standalone', eab: true },
];

/** The DNS name a case's certificate is for. */
export const caseDomain = (c: MatrixCase): string => `${c.name.replace(/^(ok|fail)\//, '')}.acme.internal`;

/** The tools a case needs (with `pebble`, pebble too); false when one is missing and the test was skipped. */
export function requireCaseTools(t: TestContext, c: { client: AcmeClient['name'] }, pebble: boolean): boolean {
  const tools = [c.client, 'openssl', 'curl', ...(pebble ? ['pebble'] : [])];
  return tools.every((tool) => requireTool(t, tool));
}

/** A failure message: what the client said, then the tail of what the server said. */
function explain(what: string, run: ClientRun, target: AcmeTarget): string {
  return `${what} failed (exit ${run.status})\n--- client ---\n${run.output}\n--- ${target.name} (tail) ---\n${target.output().slice(-3000)}`;
}

/** `openssl verify` of a leaf to the target's root, strictly, for TLS server use; asserts OK and the name. */
export async function verifyIssued(target: AcmeTarget, run: ClientRun, domain: string): Promise<X509Certificate> {
  const f = run.files;
  assert.ok(f, 'the client reported no certificate files');
  const r = await runAsync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', target.rootFile, '-untrusted', f.chain, f.cert]);
  assert.equal(r.status, 0, `openssl verify: ${r.stdout}${r.stderr}\n${run.output}`);
  assert.equal(r.stdout.trim(), `${f.cert}: OK`);
  const leaf = new X509Certificate(fs.readFileSync(f.cert));
  assert.equal(leaf.checkHost(domain, { subject: 'never' }), domain, `the certificate does not name ${domain}: ${leaf.subjectAltName}`);
  assert.ok(fs.readFileSync(f.fullchain, 'utf8').startsWith(fs.readFileSync(f.cert, 'utf8').trim()), 'fullchain does not start with the leaf');
  return leaf;
}

/** The challenge mode of a case, with its responder (the test's webroot server) started if it has one. */
async function challengeFor(c: MatrixCase, dir: string, httpPort: number, tlsPort: number, dns: TestDns): Promise<{ mode: ChallengeMode; webroot?: Webroot }> {
  switch (c.challenge) {
    case 'http-01/standalone':
      return { mode: { type: 'http-01', via: 'standalone', port: httpPort } };
    case 'http-01/webroot': {
      const webroot = await startWebroot(path.join(dir, 'webroot'), httpPort);
      fs.mkdirSync(webroot.dir);
      return { mode: { type: 'http-01', via: 'webroot', dir: webroot.dir }, webroot };
    }
    case 'dns-01':
      return { mode: { type: 'dns-01', controlUrl: dns.controlUrl, dnsPort: dns.port } };
    case 'tls-alpn-01':
      return { mode: { type: 'tls-alpn-01', port: tlsPort } };
  }
}

/** What a case leaves for target-specific checks after the common ones passed. */
export interface CaseOutcome {
  target: AcmeTarget;
  domain: string;
  /** Copies of the first and of the renewed certificate (leaf and issuer PEM files). */
  first: { cert: string; chain: string };
  renewed: { cert: string; chain: string };
}

/**
 * Runs one case against a fresh target: obtain, verify, renew, verify (a new serial), revoke, and
 * the target says the renewed certificate is revoked and the first still good. `more` runs target
 * checks before the target is stopped.
 */
export async function runCase(c: MatrixCase, start: StartTarget, dns: TestDns, more?: (o: CaseOutcome) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-acme-'));
  const [httpPort, tlsPort] = [await freePort(), await freePort()];
  const domain = caseDomain(c);
  await dns.addHost(domain);
  const target = await start({ httpPort, tlsPort, dns, eab: c.eab === true });
  let webroot: Webroot | undefined;
  try {
    const ch = await challengeFor(c, dir, httpPort, tlsPort, dns);
    webroot = ch.webroot;
    const eab = c.eab ? await target.eab([domain]) : undefined;
    fs.mkdirSync(path.join(dir, 'client'));
    const client = CLIENTS[c.client]({ directoryUrl: target.directoryUrl, caBundle: target.tlsCaFile, domain, challenge: ch.mode, eab, dir: path.join(dir, 'client') });
    const keep = (run: ClientRun, name: string) => {
      const cert = path.join(dir, `${name}.pem`);
      const chain = path.join(dir, `${name}-chain.pem`);
      fs.copyFileSync(run.files!.cert, cert);
      fs.copyFileSync(run.files!.chain, chain);
      return { cert, chain };
    };

    const got = await client.obtain();
    assert.equal(got.status, 0, explain('obtain', got, target));
    const firstLeaf = await verifyIssued(target, got, domain);
    const first = keep(got, 'first');
    if (webroot) assert.ok(webroot.requests.some((u) => u.startsWith('/.well-known/acme-challenge/')), 'the validator never fetched from the webroot');

    const renewedRun = await client.renew();
    assert.equal(renewedRun.status, 0, explain('renew', renewedRun, target));
    const renewedLeaf = await verifyIssued(target, renewedRun, domain);
    assert.notEqual(renewedLeaf.serialNumber, firstLeaf.serialNumber, 'the renewal returned the same certificate');
    const renewed = keep(renewedRun, 'renewed');

    const rev = await client.revoke();
    assert.equal(rev.status, 0, explain('revoke', rev, target));
    const now = await target.status(renewed.cert, renewed.chain);
    assert.equal(now.status, 'revoked', `${target.name} on the renewed certificate after the revoke: ${now.detail}`);
    const before = await target.status(first.cert, first.chain);
    assert.equal(before.status, 'good', `${target.name} on the first certificate: ${before.detail}`);
    await more?.({ target, domain, first, renewed });
  } finally {
    await webroot?.close();
    await target.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A case that must fail, with the ACME problem type (RFC 8555 section 6.7) each server answers. */
export interface FailCase {
  name: string;
  client: 'certbot' | 'lego';
  /**
   * What goes wrong: `nobody-listens`, the client's responder listens on another port than the one
   * the validator connects to; `wrong-key-authorization`, the webroot answers something else.
   */
  breaks: 'nobody-listens' | 'wrong-key-authorization';
  /**
   * The problem type each server answers with. RFC 8555 names none for a wrong answer: pebble
   * says `unauthorized` (as Boulder does), mutual `incorrectResponse` (section 6.7's meaning).
   */
  problem: Record<AcmeTarget['name'], string>;
}

/** Validations that must fail, the same way for every client. */
export const FAILURES: readonly FailCase[] = [
  { name: 'fail/lego-http-01-nobody-listens', client: 'lego', breaks: 'nobody-listens', problem: { pebble: 'connection', mutual: 'connection' } },
  { name: 'fail/certbot-http-01-wrong-key-authorization', client: 'certbot', breaks: 'wrong-key-authorization', problem: { pebble: 'unauthorized', mutual: 'incorrectResponse' } },
];

/** Runs a failing case against a fresh target: obtain fails with the expected problem type, and no certificate. */
export async function runFailCase(c: FailCase, start: StartTarget, dns: TestDns): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-acme-'));
  const [httpPort, tlsPort] = [await freePort(), await freePort()];
  const domain = `${c.name.replace(/^fail\//, '')}.acme.internal`;
  await dns.addHost(domain);
  const target = await start({ httpPort, tlsPort, dns, eab: false });
  let webroot: Webroot | undefined;
  try {
    let mode: ChallengeMode;
    if (c.breaks === 'nobody-listens') mode = { type: 'http-01', via: 'standalone', port: await freePort() };
    else {
      webroot = await startWebroot(path.join(dir, 'webroot'), httpPort, { wrong: true });
      fs.mkdirSync(webroot.dir);
      mode = { type: 'http-01', via: 'webroot', dir: webroot.dir };
    }
    fs.mkdirSync(path.join(dir, 'client'));
    const client = CLIENTS[c.client]({ directoryUrl: target.directoryUrl, caBundle: target.tlsCaFile, domain, challenge: mode, dir: path.join(dir, 'client') });
    const run = await client.obtain();
    assert.notEqual(run.status, 0, `obtain succeeded:\n${run.output}`);
    assert.equal(run.files, undefined);
    // lego prints the type's URN; certbot prints `Type:   <type>` with the URN's prefix cut.
    const type = c.problem[target.name];
    assert.match(run.output, new RegExp(`(urn:ietf:params:acme:error:${type}|Type:\\s+${type})\\b`), `not the ${type} problem:\n${run.output}`);
    if (webroot) assert.ok(webroot.requests.length > 0, 'the validator never fetched from the webroot');
  } finally {
    await webroot?.close();
    await target.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The whole matrix (MATRIX, then FAILURES) against one ACME server, `concurrency` cases at once,
 * with one test DNS for them all: the pebble and the mutual runs are this one function, so a
 * difference between them is the server's (or the client's reading of it), not the harness's.
 */
export function interopSuite(title: string, start: StartTarget, o: { pebble: boolean; concurrency: number; check?: (o: CaseOutcome) => Promise<void> }): void {
  describe(title, { concurrency: o.concurrency, timeout: 300_000 }, () => {
    let dns: TestDns | undefined;
    before(async () => {
      dns = await startTestDns();
    });
    after(async () => {
      await dns?.close();
    });
    for (const c of MATRIX) {
      test(c.name, async (t: TestContext) => {
        if (requireCaseTools(t, c, o.pebble)) await runCase(c, start, dns!, o.check);
      });
    }
    for (const c of FAILURES) {
      test(c.name, async (t: TestContext) => {
        if (requireCaseTools(t, c, o.pebble)) await runFailCase(c, start, dns!);
      });
    }
  });
}
