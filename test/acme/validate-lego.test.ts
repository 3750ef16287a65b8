/**
 * The validators against a real client's responders: lego (`--tls`, then `--http`) orders a
 * certificate from pebble through a logging HTTPS proxy in this process. When lego tells pebble
 * its challenge is ready, the proxy first runs mutual's validator against lego's challenge
 * server, with the key authorization made from the token pebble issued and the account key lego
 * registered, and once more with a wrong one. Pebble is told to take every challenge as valid:
 * the judge here is mutual's validator.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type net from 'node:net';
import { spawn } from 'node:child_process';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { freePort, openssl, requireTool, runAsync, waitForPort } from '../helpers/tools.ts';
import { validateTlsAlpn01 } from '../../src/ca/acme/validate-tls-alpn01.ts';
import { validateHttp01 } from '../../src/ca/acme/validate-http01.ts';
import { keyAuthorization } from '../../src/ca/acme/key-authorization.ts';
import type { ValidationOptions } from '../../src/ca/acme/validation-options.ts';
import { isMutualError } from '../../src/core/errors.ts';

/** Reads a request or response body. */
const readAll = (s: NodeJS.ReadableStream): Promise<Buffer> => new Promise((resolve, reject) => {
  const parts: Buffer[] = [];
  s.on('data', (c: Buffer) => parts.push(c));
  s.on('end', () => resolve(Buffer.concat(parts)));
  s.on('error', reject);
});

const b64json = (s: string): Record<string, unknown> => JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Record<string, unknown>;

/** What one validation ended in: 'valid' or the error code. */
const outcome = (p: Promise<void>): Promise<string> => p.then(() => 'valid', (e: unknown) => (isMutualError(e) ? e.code : String(e)));

/** A validator run while lego's responder is up: with the right key authorization, then a wrong one. */
type Check = (token: string, keyAuth: string, wrongKeyAuth: string, o: ValidationOptions) => Promise<{ right: string; wrong: string }>;

/**
 * Runs lego with `solver` (its flag: tls or http) against pebble behind the proxy; runs `check`
 * when lego says the `type` challenge is ready. Returns what each check saw.
 */
async function orderWithLego(t: TestContext, solver: 'tls' | 'http', type: 'tls-alpn-01' | 'http-01', check: Check): Promise<{ right: string; wrong: string }[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-lego-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // One self-signed certificate for 127.0.0.1 serves pebble and the proxy; lego trusts it (LEGO_CA_CERTIFICATES).
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const made = openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert]);
  assert.equal(made.status, 0, made.stderr);
  const [pebblePort, managementPort, solverPort] = [await freePort(), await freePort(), await freePort()];
  fs.writeFileSync(path.join(dir, 'pebble.json'), JSON.stringify({
    pebble: { listenAddress: `127.0.0.1:${pebblePort}`, managementListenAddress: `127.0.0.1:${managementPort}`, certificate: cert, privateKey: key, httpPort: solverPort, tlsPort: solverPort, ocspResponderURL: '', externalAccountBindingRequired: false },
  }));
  const pebble = spawn('pebble', ['-config', path.join(dir, 'pebble.json')], { env: { ...process.env, PEBBLE_VA_ALWAYS_VALID: '1', PEBBLE_VA_NOSLEEP: '1' }, stdio: 'ignore' });
  t.after(() => pebble.kill());
  await waitForPort(pebblePort);

  let thumbprint: string | undefined;
  const tokens = new Map<string, string>();
  const results: { right: string; wrong: string }[] = [];
  const o: ValidationOptions = { httpPort: solverPort, tlsAlpnPort: solverPort, hostOverride: '127.0.0.1', timeoutMs: 10_000 };
  const proxy = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, async (req, res) => {
    const body = await readAll(req);
    const jws = body.length > 0 ? (JSON.parse(body.toString('utf8')) as { protected: string; payload: string }) : undefined;
    const header = jws ? b64json(jws.protected) : {};
    // Only newAccount carries the key itself (RFC 8555 section 6.2); the others name the account (kid).
    if (header.jwk) thumbprint = await calculateJwkThumbprint(header.jwk as JWK, 'sha256');
    // lego says the challenge is ready (payload "{}", not a POST-as-GET): its responder is up now.
    const token = tokens.get(String(header.url));
    if (token && jws?.payload && thumbprint) results.push(await check(token, keyAuthorization(token, thumbprint), keyAuthorization(token, 'not-the-account'), o));
    const upstream = https.request({ host: '127.0.0.1', port: pebblePort, method: req.method, path: req.url, headers: req.headers, rejectUnauthorized: false, agent: false }, async (up) => {
      const answer = await readAll(up);
      if (String(up.headers['content-type']).includes('json')) {
        const doc = JSON.parse(answer.toString('utf8')) as { challenges?: { type: string; url: string; token: string }[] };
        for (const c of doc.challenges ?? []) if (c.type === type) tokens.set(c.url, c.token);
      }
      res.writeHead(up.statusCode ?? 502, up.headers).end(answer);
    });
    upstream.on('error', () => res.writeHead(502).end());
    upstream.end(body);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
  proxy.on('connection', (s: net.Socket) => t.after(() => s.destroy()));

  const lego = await runAsync('lego', [
    '--server', `https://127.0.0.1:${(proxy.address() as net.AddressInfo).port}/dir`, '--email', 'admin@site.test', '--accept-tos',
    '--domains', 'site.test', `--${solver}`, `--${solver}.port`, `127.0.0.1:${solverPort}`, '--path', path.join(dir, 'lego'), 'run',
  ], { env: { ...process.env, LEGO_CA_CERTIFICATES: cert }, timeoutMs: 90_000 });
  assert.equal(lego.status, 0, lego.stderr);
  return results;
}

const site = { type: 'dns', value: 'site.test' } as const;

test('ok/tls-alpn-01: lego\'s challenge responder passes mutual\'s validator, and a wrong key authorization does not', { timeout: 120_000 }, async (t) => {
  if (!requireTool(t, 'lego') || !requireTool(t, 'pebble')) return;
  const results = await orderWithLego(t, 'tls', 'tls-alpn-01', async (_token, ka, wrong, o) => ({
    right: await outcome(validateTlsAlpn01(site, ka, o)),
    wrong: await outcome(validateTlsAlpn01(site, wrong, o)),
  }));
  assert.deepEqual(results, [{ right: 'valid', wrong: 'ACME_INCORRECT_RESPONSE' }], 'validated once, while lego\'s responder was up');
});

test('ok/http-01: lego\'s challenge responder passes mutual\'s validator (Host as lego expects it), and a wrong key authorization does not', { timeout: 120_000 }, async (t) => {
  if (!requireTool(t, 'lego') || !requireTool(t, 'pebble')) return;
  const results = await orderWithLego(t, 'http', 'http-01', async (token, ka, wrong, o) => ({
    right: await outcome(validateHttp01(site, token, ka, o)),
    wrong: await outcome(validateHttp01(site, token, wrong, o)),
  }));
  assert.deepEqual(results, [{ right: 'valid', wrong: 'ACME_INCORRECT_RESPONSE' }], 'validated once, while lego\'s responder was up');
});
