/**
 * tls-alpn-01 validation against a real node:tls responder serving certificates made by the
 * openssl CLI: the right one, and each way one can be wrong (digest, criticality, SANs, issuer),
 * a server that does not speak acme-tls/1, one that never finishes the handshake, nothing listening.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.ts';
import { freePort, openssl, runAsync } from '../helpers/tools.ts';
import { ACME_TLS_ALPN_PROTOCOL, reverseDnsName, validateTlsAlpn01 } from '../../src/ca/acme/validate-tls-alpn01.ts';
import { keyAuthorization } from '../../src/ca/acme/key-authorization.ts';
import type { ValidationOptions } from '../../src/ca/acme/validation-options.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';

const ka = keyAuthorization('KTUCmPT1hBX3u7WWfOBGBAOr9-Bd41-hxFoRvWe1Y_I', 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
const digestHex = crypto.createHash('sha256').update(ka).digest('hex');

let dir: string;
let dns: DnsServer;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-tls-alpn-'));
  dns = await startDnsServer();
  dns.set('site.test', 'A', ['127.0.0.1']);
});
after(async () => {
  await dns.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Made {
  cert: string;
  key: string;
}

let serial = 0;
/**
 * A challenge certificate made by openssl: `san` as openssl writes it (DNS:x,IP:y), the
 * acmeIdentifier extension's value as DER hex (undefined: none), `critical` or not, self-signed
 * unless `issuer` is given.
 */
function makeCert(o: { san: string; acmeId?: string; critical?: boolean; issuer?: Made }): Made {
  const n = ++serial;
  const keyFile = path.join(dir, `k${n}.pem`);
  const certFile = path.join(dir, `c${n}.pem`);
  const exts = [`subjectAltName=${o.san}`];
  if (o.acmeId !== undefined) exts.push(`1.3.6.1.5.5.7.1.31=${o.critical === false ? '' : 'critical,'}DER:${o.acmeId}`);
  const base = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-subj', '/CN=ACME challenge', ...exts.flatMap((e) => ['-addext', e])];
  if (o.issuer) {
    const csr = path.join(dir, `r${n}.csr`);
    const extFile = path.join(dir, `e${n}.cnf`);
    fs.writeFileSync(path.join(dir, `i${n}.pem`), o.issuer.cert);
    fs.writeFileSync(path.join(dir, `ik${n}.pem`), o.issuer.key);
    fs.writeFileSync(extFile, exts.join('\n') + '\n');
    assert.equal(openssl(['req', '-new', ...base, '-out', csr]).status, 0);
    const r = openssl(['x509', '-req', '-in', csr, '-CA', path.join(dir, `i${n}.pem`), '-CAkey', path.join(dir, `ik${n}.pem`), '-days', '1', '-extfile', extFile, '-out', certFile]);
    assert.equal(r.status, 0, r.stderr);
  } else {
    const r = openssl(['req', '-x509', '-days', '1', ...base, '-out', certFile]);
    assert.equal(r.status, 0, r.stderr);
  }
  return { cert: fs.readFileSync(certFile, 'utf8'), key: fs.readFileSync(keyFile, 'utf8') };
}

/** The acmeIdentifier value: DER OCTET STRING of the 32-byte digest (RFC 8737 section 3). */
const acmeId = (hex: string) => `04${(hex.length / 2).toString(16).padStart(2, '0')}${hex}`;

interface Responder {
  port: number;
  /** SNI of each handshake that sent one. */
  servernames: string[];
  close(): Promise<void>;
}

/** A real TLS server answering acme-tls/1 (or the given protocols; 'none': no ALPN at all) with `made`. */
async function startResponder(made: Made, alpn: string[] | 'none' = [ACME_TLS_ALPN_PROTOCOL]): Promise<Responder> {
  const servernames: string[] = [];
  const context = tls.createSecureContext({ cert: made.cert, key: made.key });
  const server = tls.createServer({
    cert: made.cert,
    key: made.key,
    ...(alpn === 'none' ? {} : { ALPNProtocols: alpn }),
    SNICallback: (name, cb) => {
      servernames.push(name);
      cb(null, context);
    },
  }, (s) => s.end());
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    servernames,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const options = (port: number): ValidationOptions => ({ httpPort: 80, tlsAlpnPort: port, dnsServers: [`${dns.address}:${dns.port}`], timeoutMs: 3_000 });

/** Asserts that `p` rejects with `code` and returns the error's detail. */
async function rejects(p: Promise<unknown>, code: ErrorCode): Promise<string> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  assert.ok(isMutualError(e, code), `expected ${code}, got ${String(e)}`);
  return String(e.fields.detail);
}

/** Validates `site.test` against a responder serving `made`. */
async function against<T>(made: Made, f: (o: ValidationOptions, r: Responder) => Promise<T>, alpn?: string[] | 'none'): Promise<T> {
  const r = await startResponder(made, alpn);
  try {
    return await f(options(r.port), r);
  } finally {
    await r.close();
  }
}

const site = { type: 'dns', value: 'site.test' } as const;

test('ok/tls-alpn-01: the acmeIdentifier certificate for the name, SNI the name', async () => {
  await against(makeCert({ san: 'DNS:site.test', acmeId: acmeId(digestHex) }), async (o, r) => {
    await validateTlsAlpn01(site, ka, o);
    assert.deepEqual(r.servernames, ['site.test']);
  });
});

test('ok/tls-alpn-01: an IP identifier, SNI its reverse-DNS name (RFC 8738 section 6)', async () => {
  assert.equal(reverseDnsName('192.0.2.1'), '1.2.0.192.in-addr.arpa');
  assert.equal(reverseDnsName('2001:db8::1'), `${'1'}.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.ip6.arpa`);
  await against(makeCert({ san: 'IP:127.0.0.1', acmeId: acmeId(digestHex) }), async (o, r) => {
    await validateTlsAlpn01({ type: 'ip', value: '127.0.0.1' }, ka, { ...o, dnsServers: undefined });
    assert.deepEqual(r.servernames, ['1.0.0.127.in-addr.arpa']);
  });
});

test('fail/tls-alpn-01: a server that does not negotiate ALPN is ACME_TLS', async () => {
  const made = makeCert({ san: 'DNS:site.test', acmeId: acmeId(digestHex) });
  const detail = await against(made, (o) => rejects(validateTlsAlpn01(site, ka, o), 'ACME_TLS'), 'none');
  assert.match(detail, /did not choose ALPN acme-tls\/1/);
  // One offering only other protocols refuses the handshake (no_application_protocol).
  await against(made, (o) => rejects(validateTlsAlpn01(site, ka, o), 'ACME_TLS'), ['h2', 'http/1.1']);
});

test('fail/tls-alpn-01: the wrong digest is ACME_INCORRECT_RESPONSE naming both', async () => {
  const wrong = crypto.createHash('sha256').update('other').digest('hex');
  const detail = await against(makeCert({ san: 'DNS:site.test', acmeId: acmeId(wrong) }), (o) => rejects(validateTlsAlpn01(site, ka, o), 'ACME_INCORRECT_RESPONSE'));
  assert.ok(detail.includes(wrong) && detail.includes(digestHex) && detail.includes('SNI site.test'), detail);
});

test('fail/tls-alpn-01: the digest not wrapped in an OCTET STRING is ACME_INCORRECT_RESPONSE', async () => {
  await against(makeCert({ san: 'DNS:site.test', acmeId: `0c20${digestHex}` }), (o) => rejects(validateTlsAlpn01(site, ka, o), 'ACME_INCORRECT_RESPONSE'));
});

test('fail/tls-alpn-01: a non-critical acmeIdentifier is ACME_INCORRECT_RESPONSE', async () => {
  const detail = await against(makeCert({ san: 'DNS:site.test', acmeId: acmeId(digestHex), critical: false }), (o) => rejects(validateTlsAlpn01(site, ka, o), 'ACME_INCORRECT_RESPONSE'));
  assert.match(detail, /not marked critical/);
});

test('fail/tls-alpn-01: no acmeIdentifier is ACME_INCORRECT_RESPONSE', async () => {
  await against(makeCert({ san: 'DNS:site.test' }), (o) => rejects(validateTlsAlpn01(site, ka, o), 'ACME_INCORRECT_RESPONSE'));
});

test('fail/tls-alpn-01: two SANs (the name and another) is ACME_INCORRECT_RESPONSE', async () => {
  const detail = await against(makeCert({ san: 'DNS:site.test,DNS:other.test', acmeId: acmeId(digestHex) }), (o) => rejects(validateTlsAlpn01(site, ka, o), 'ACME_INCORRECT_RESPONSE'));
  assert.ok(detail.includes('2 entries') && detail.includes('DNS:other.test'), detail);
  // A second entry of a type mutual does not keep (an email address) counts too.
  await against(makeCert({ san: 'DNS:site.test,email:a@site.test', acmeId: acmeId(digestHex) }), (o) => rejects(validateTlsAlpn01(site, ka, o), 'ACME_INCORRECT_RESPONSE'));
});

test('fail/tls-alpn-01: the wrong SAN is ACME_INCORRECT_RESPONSE', async () => {
  const detail = await against(makeCert({ san: 'DNS:other.test', acmeId: acmeId(digestHex) }), (o) => rejects(validateTlsAlpn01(site, ka, o), 'ACME_INCORRECT_RESPONSE'));
  assert.ok(detail.includes('exactly DNS:site.test') && detail.includes('DNS:other.test'), detail);
  // An IP identifier needs the IP in an iPAddress SAN, not a dNSName.
  await against(makeCert({ san: 'DNS:127.0.0.1', acmeId: acmeId(digestHex) }), (o) => rejects(validateTlsAlpn01({ type: 'ip', value: '127.0.0.1' }, ka, o), 'ACME_INCORRECT_RESPONSE'));
});

test('fail/tls-alpn-01: a certificate signed by another key is ACME_INCORRECT_RESPONSE (self-signed required)', async () => {
  const issuer = makeCert({ san: 'DNS:issuer.test' });
  const detail = await against(makeCert({ san: 'DNS:site.test', acmeId: acmeId(digestHex), issuer }), (o) => rejects(validateTlsAlpn01(site, ka, o), 'ACME_INCORRECT_RESPONSE'));
  assert.match(detail, /not self-signed/);
});

test('fail/tls-alpn-01: a server that never finishes the handshake is ACME_TLS within the deadline', async () => {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => sockets.add(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const t0 = performance.now();
    const detail = await rejects(validateTlsAlpn01(site, ka, { ...options((server.address() as net.AddressInfo).port), timeoutMs: 300 }), 'ACME_TLS');
    assert.ok(performance.now() - t0 < 2_000);
    assert.match(detail, /within the validation's 300 ms/);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});

test('fail/tls-alpn-01: nothing listening is ACME_CONNECTION', async () => {
  const detail = await rejects(validateTlsAlpn01(site, ka, options(await freePort())), 'ACME_CONNECTION');
  assert.match(detail, /ECONNREFUSED/);
});

test('fail/tls-alpn-01: a wildcard is ACME_MALFORMED (RFC 8737 section 3)', async () => {
  await rejects(validateTlsAlpn01({ type: 'dns', value: '*.site.test' }, ka, options(443)), 'ACME_MALFORMED');
});

test('ok/tls-alpn-01: openssl s_client negotiates acme-tls/1 with the test responder and sees the critical acmeIdentifier', async () => {
  await against(makeCert({ san: 'DNS:site.test', acmeId: acmeId(digestHex) }), async (o, r) => {
    const s = await runAsync('openssl', ['s_client', '-connect', `127.0.0.1:${o.tlsAlpnPort}`, '-servername', 'site.test', '-alpn', ACME_TLS_ALPN_PROTOCOL], { input: '', timeoutMs: 10_000 });
    assert.match(s.stdout, /ALPN protocol: acme-tls\/1/);
    const pem = s.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
    assert.ok(pem, s.stdout);
    const text = openssl(['x509', '-noout', '-text'], { input: pem }).stdout;
    assert.match(text, /1\.3\.6\.1\.5\.5\.7\.1\.31: critical/);
    // The extension's value is the DER OCTET STRING of the digest (RFC 8737 section 3), as OpenSSL reads it.
    const asn1 = openssl(['asn1parse'], { input: pem }).stdout;
    assert.match(asn1, new RegExp(`:1\\.3\\.6\\.1\\.5\\.5\\.7\\.1\\.31\\n.*BOOLEAN +:255\\n.*OCTET STRING +\\[HEX DUMP\\]:0420${digestHex.toUpperCase()}\\n`));
    assert.deepEqual(r.servernames, ['site.test']);
  });
});
