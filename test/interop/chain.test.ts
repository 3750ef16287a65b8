/**
 * Chain verification, judged by OpenSSL: `openssl verify -x509_strict -purpose sslserver|sslclient`
 * over hierarchies made by initCa, and the contents of every certificate as `openssl x509 -text`
 * reads them. Failures include certificates forged past policy and lint with the server and client
 * CAs' own keys, so the intermediates' name constraints and EKUs are what stops them.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';
import { requireTool } from '../helpers/tools.ts';
import { createCertificateTemplate, newSerial, subjectFor, type Role } from '../../src/core/certificate-template.ts';
import { spkiDer, type KeyType } from '../../src/core/algorithms.ts';
import { toPem } from '../../src/core/pem.ts';
import type { SubjectAltNames } from '../../src/core/names.ts';
import { ROOT_DAYS, type InitCaOptions } from '../../src/ca/init-ca.ts';
import type { IssueRequest } from '../../src/ca/authority.ts';
import {
  DAY, HOUR, NOW, X509_ERR, asn1Times, describeVerify, failedWith, keyIdHex, opensslDate, plus, textExtensions, verify, x509Serial, x509Text,
} from './support.ts';

const names = (n: Partial<SubjectAltNames>): SubjectAltNames => ({ dns: [], ip: [], uri: [], ...n });
const SERVER_NAMES = names({ dns: ['api.acme.internal', 'localhost'], ip: ['127.0.0.1'] });
const CLIENT_NAMES = names({ uri: ['spiffe://acme.internal/prod/payments'] });

/** CAs made for the tests, by a key describing their options; closed at the end. */
const cas = new Map<string, Promise<TestCa>>();
function caFor(key: string, o: Partial<InitCaOptions> = {}): Promise<TestCa> {
  if (!cas.has(key)) cas.set(key, makeTestCa({ now: NOW, ...o }));
  return cas.get(key)!;
}
/** The main CA: default key types, policy widened by --permit-dns example.com and --permit-ip 10.0.0.0/8. */
const mainCa = () => caFor('main', { permitDns: ['example.com'], permitIp: ['10.0.0.0/8'] });

let fileNo = 0;
/** Issues a certificate and writes it to a PEM file in the CA's temp folder. */
async function issueFile(ca: TestCa, req: IssueRequest): Promise<string> {
  const r = await ca.ca.issue({ now: NOW, ...req });
  return ca.file(`leaf-${++fileNo}.pem`, r.certificatePem);
}

/**
 * Signs a leaf with an intermediate's own key and template issuer, bypassing policy and lint: what a
 * bug in them (or a stolen intermediate key used carelessly) would produce.
 */
async function forge(ca: TestCa, issuer: 'server' | 'client', role: Role, n: SubjectAltNames): Promise<string> {
  const template = createCertificateTemplate(ca.ca.issuerFor(issuer).template.issuer, { role });
  const key = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const der = await template.sign({
    serial: newSerial(), notBefore: NOW, notAfter: plus(NOW, 30 * DAY), subject: subjectFor(n.dns[0] ?? 'forged'), spki: spkiDer(key.publicKey), names: n,
  });
  return ca.file(`forged-${++fileNo}.pem`, toPem(der, 'CERTIFICATE'));
}

/** What a case checks with OpenSSL. */
interface Check {
  cert: string;
  /** Trusted root file (default: the CA's root). */
  caFile: string;
  untrusted: string;
  at?: Date;
}

interface ChainCase {
  name: string;
  purpose: 'sslserver' | 'sslclient';
  make: () => Promise<Check>;
  /** The OpenSSL error expected; absent: the chain must verify. */
  want?: { code: number; depth: number };
}

const serverCheck = async (ca: TestCa, cert: string): Promise<Check> => ({ cert, caFile: ca.layout.rootCert, untrusted: ca.layout.serverCaCert });
const clientCheck = async (ca: TestCa, cert: string): Promise<Check> => ({ cert, caFile: ca.layout.rootCert, untrusted: ca.layout.clientCaCert });

const LEAF_KEY_TYPES: KeyType[] = ['p256', 'p384', 'ed25519', 'rsa2048'];
const CA_KEY_TYPES: { label: string; keyTypes: InitCaOptions['keyTypes'] }[] = [
  { label: 'root-ed25519-intermediate-p384', keyTypes: { root: 'ed25519', intermediate: 'p384' } },
  { label: 'root-rsa3072-intermediate-p384', keyTypes: { root: 'rsa3072', intermediate: 'p384' } },
];

const CASES: ChainCase[] = [
  // --- ok: each role verifies for its own purpose
  { name: 'ok/server-as-sslserver', purpose: 'sslserver', make: async () => { const ca = await mainCa(); return serverCheck(ca, await issueFile(ca, { role: 'server', names: SERVER_NAMES })); } },
  { name: 'ok/client-as-sslclient', purpose: 'sslclient', make: async () => { const ca = await mainCa(); return clientCheck(ca, await issueFile(ca, { role: 'client', names: CLIENT_NAMES })); } },
  { name: 'ok/admin-as-sslclient', purpose: 'sslclient', make: async () => { const ca = await mainCa(); return clientCheck(ca, ca.file('admin.pem', ca.init.admin.certificatePem)); } },
  ...LEAF_KEY_TYPES.flatMap((k): ChainCase[] => [
    { name: `ok/server-key-${k}`, purpose: 'sslserver', make: async () => { const ca = await mainCa(); return serverCheck(ca, await issueFile(ca, { role: 'server', keyType: k, names: SERVER_NAMES })); } },
    { name: `ok/client-key-${k}`, purpose: 'sslclient', make: async () => { const ca = await mainCa(); return clientCheck(ca, await issueFile(ca, { role: 'client', keyType: k, names: CLIENT_NAMES })); } },
  ]),
  ...CA_KEY_TYPES.flatMap(({ label, keyTypes }): ChainCase[] => [
    { name: `ok/${label}/server`, purpose: 'sslserver', make: async () => { const ca = await caFor(label, { keyTypes }); return serverCheck(ca, await issueFile(ca, { role: 'server', names: SERVER_NAMES })); } },
    { name: `ok/${label}/client`, purpose: 'sslclient', make: async () => { const ca = await caFor(label, { keyTypes }); return clientCheck(ca, await issueFile(ca, { role: 'client', names: CLIENT_NAMES })); } },
    { name: `ok/${label}/admin`, purpose: 'sslclient', make: async () => { const ca = await caFor(label, { keyTypes }); return clientCheck(ca, ca.file('admin.pem', ca.init.admin.certificatePem)); } },
  ]),
  { name: 'ok/server-names-from-widened-policy', purpose: 'sslserver', make: async () => {
    const ca = await mainCa();
    return serverCheck(ca, await issueFile(ca, { role: 'server', names: names({ dns: ['www.example.com', 'db.eu.acme.internal'], ip: ['10.1.2.3'] }) }));
  } },
  { name: 'ok/server-ipv6-loopback-only', purpose: 'sslserver', make: async () => { const ca = await mainCa(); return serverCheck(ca, await issueFile(ca, { role: 'server', names: names({ ip: ['::1'] }) })); } },
  // A server certificate for an address only (e.g. `issue server --ip 10.0.0.5`). Its CN repeats the
  // address, and OpenSSL checks a dotted CN as a DNS name against the DNS name constraints when the
  // certificate has no DNS SAN (x509_vfy.c check_name_constraints -> NAME_CONSTRAINTS_check_CN).
  { name: 'ok/server-ipv4-only', purpose: 'sslserver', make: async () => { const ca = await mainCa(); return serverCheck(ca, await issueFile(ca, { role: 'server', names: names({ ip: ['10.0.0.5'] }) })); } },
  { name: 'ok/server-ipv4-loopback-only', purpose: 'sslserver', make: async () => { const ca = await mainCa(); return serverCheck(ca, await issueFile(ca, { role: 'server', names: names({ ip: ['127.0.0.1'] }) })); } },
  // SPIFFE path segments may hold '.', and the CN repeats the service: the same CN check applies.
  { name: 'ok/client-service-with-dot', purpose: 'sslclient', make: async () => {
    const ca = await mainCa();
    return clientCheck(ca, await issueFile(ca, { role: 'client', names: names({ uri: ['spiffe://acme.internal/prod/payments.v2'] }) }));
  } },
  { name: 'ok/with-distribution-urls', purpose: 'sslserver', make: async () => {
    const ca = await caFor('url', { url: 'https://ca.acme.internal:8443/' });
    return serverCheck(ca, await issueFile(ca, { role: 'server', names: SERVER_NAMES }));
  } },
  { name: 'ok/leaf-clipped-to-issuer-notAfter', purpose: 'sslserver', make: async () => {
    // 729 days after init, a 90-day certificate ends with its issuer (730 days) and still verifies.
    const ca = await mainCa();
    const at = plus(NOW, 729 * DAY);
    const r = await ca.ca.issue({ role: 'server', names: SERVER_NAMES, now: at });
    assert.equal(r.notAfter.getTime(), ca.ca.server.info.notAfter.getTime());
    return { ...(await serverCheck(ca, ca.file('clipped.pem', r.certificatePem))), at: plus(at, HOUR) };
  } },

  // --- fail: wrong purpose
  { name: 'fail/client-as-sslserver', purpose: 'sslserver', want: { code: X509_ERR.INVALID_PURPOSE, depth: 0 },
    make: async () => { const ca = await mainCa(); return clientCheck(ca, await issueFile(ca, { role: 'client', names: CLIENT_NAMES })); } },
  { name: 'fail/admin-as-sslserver', purpose: 'sslserver', want: { code: X509_ERR.INVALID_PURPOSE, depth: 0 },
    make: async () => { const ca = await mainCa(); return clientCheck(ca, ca.file('admin.pem', ca.init.admin.certificatePem)); } },
  { name: 'fail/server-as-sslclient', purpose: 'sslclient', want: { code: X509_ERR.INVALID_PURPOSE, depth: 0 },
    make: async () => { const ca = await mainCa(); return serverCheck(ca, await issueFile(ca, { role: 'server', names: SERVER_NAMES })); } },
  // --- fail: wrong intermediate
  { name: 'fail/client-with-server-ca-as-intermediate', purpose: 'sslclient', want: { code: X509_ERR.UNABLE_TO_GET_ISSUER_CERT_LOCALLY, depth: 0 },
    make: async () => { const ca = await mainCa(); return { ...(await clientCheck(ca, await issueFile(ca, { role: 'client', names: CLIENT_NAMES }))), untrusted: ca.layout.serverCaCert }; } },
  { name: 'fail/server-with-client-ca-as-intermediate', purpose: 'sslserver', want: { code: X509_ERR.UNABLE_TO_GET_ISSUER_CERT_LOCALLY, depth: 0 },
    make: async () => { const ca = await mainCa(); return { ...(await serverCheck(ca, await issueFile(ca, { role: 'server', names: SERVER_NAMES }))), untrusted: ca.layout.clientCaCert }; } },
  { name: 'fail/server-against-another-root', purpose: 'sslserver', want: { code: X509_ERR.UNABLE_TO_GET_ISSUER_CERT_LOCALLY, depth: 1 },
    make: async () => {
      const ca = await mainCa();
      const other = await caFor('other');
      return { ...(await serverCheck(ca, await issueFile(ca, { role: 'server', names: SERVER_NAMES }))), caFile: other.layout.rootCert };
    } },
  // --- fail: forged past policy and lint; the intermediates' constraints stop them
  { name: 'fail/forged-dns-outside-name-constraints', purpose: 'sslserver', want: { code: X509_ERR.PERMITTED_VIOLATION, depth: 0 },
    make: async () => { const ca = await mainCa(); return serverCheck(ca, await forge(ca, 'server', 'server', names({ dns: ['evil.example.org'] }))); } },
  { name: 'fail/forged-dns-lookalike-suffix', purpose: 'sslserver', want: { code: X509_ERR.PERMITTED_VIOLATION, depth: 0 },
    make: async () => { const ca = await mainCa(); return serverCheck(ca, await forge(ca, 'server', 'server', names({ dns: ['evilacme.internal'] }))); } },
  { name: 'fail/forged-ip-outside-name-constraints', purpose: 'sslserver', want: { code: X509_ERR.PERMITTED_VIOLATION, depth: 0 },
    make: async () => { const ca = await mainCa(); return serverCheck(ca, await forge(ca, 'server', 'server', names({ dns: ['api.acme.internal'], ip: ['192.168.1.1'] }))); } },
  { name: 'fail/forged-uri-outside-trust-domain', purpose: 'sslclient', want: { code: X509_ERR.PERMITTED_VIOLATION, depth: 0 },
    make: async () => { const ca = await mainCa(); return clientCheck(ca, await forge(ca, 'client', 'client', names({ uri: ['spiffe://evil.example/prod/payments'] }))); } },
  { name: 'fail/forged-client-cert-from-server-ca', purpose: 'sslclient', want: { code: X509_ERR.INVALID_PURPOSE, depth: 1 },
    make: async () => { const ca = await mainCa(); return serverCheck(ca, await forge(ca, 'server', 'client', CLIENT_NAMES)); } },
  // --- fail: outside the validity period
  { name: 'fail/expired', purpose: 'sslserver', want: { code: X509_ERR.CERT_HAS_EXPIRED, depth: 0 },
    make: async () => { const ca = await mainCa(); return { ...(await serverCheck(ca, await issueFile(ca, { role: 'server', names: SERVER_NAMES, days: 1 }))), at: plus(NOW, 2 * DAY) }; } },
  { name: 'fail/not-yet-valid', purpose: 'sslserver', want: { code: X509_ERR.CERT_NOT_YET_VALID, depth: 0 },
    make: async () => {
      const ca = await mainCa();
      return { ...(await serverCheck(ca, await issueFile(ca, { role: 'server', names: SERVER_NAMES, now: plus(NOW, 10 * DAY) }))), at: plus(NOW, DAY) };
    } },
];

describe('interop/chain: openssl verify -x509_strict -purpose', () => {
  after(async () => {
    for (const p of cas.values()) await (await p).close();
  });

  for (const c of CASES) {
    test(c.name, async (t) => {
      if (!requireTool(t, 'openssl')) return;
      const check = await c.make();
      const r = verify({ cert: check.cert, purpose: c.purpose, caFile: check.caFile, untrusted: check.untrusted, at: check.at ?? plus(NOW, HOUR) });
      if (!c.want) {
        assert.ok(r.ok, describeVerify(r));
        assert.deepEqual(r.errors, []);
      } else {
        assert.ok(failedWith(r, c.want.code, c.want.depth), `want error ${c.want.code} at depth ${c.want.depth}; ${describeVerify(r)}`);
      }
    });
  }
});

// ------------------------------------------------------------------------------------------------
// Contents, as OpenSSL reads them

const EKU_TEXT = { server: 'TLS Web Server Authentication', client: 'TLS Web Client Authentication' } as const;

/** Checks what every certificate of the hierarchy must have. */
function checkCommon(file: string, text: string): void {
  // Serial: 16 bytes, positive (OpenSSL prints the magnitude; the top byte is 0x40-0x7f).
  const serial = x509Serial(file);
  assert.equal(serial.length, 32, `serial ${serial} is not 16 bytes`);
  assert.ok(parseInt(serial.slice(0, 2), 16) >= 0x40 && parseInt(serial.slice(0, 2), 16) < 0x80, `serial ${serial}`);
  // Times: UTCTime (before 2050) to the second, in Z.
  const times = asn1Times(file);
  assert.equal(times.length, 2, `validity times: ${times.join(', ')}`);
  for (const tm of times) assert.match(tm, /^\d{12}Z$/);
  assert.match(text, /Version: 3 \(0x2\)/);
}

/** Checks a leaf: EKU exactly its role's, CA:FALSE critical, SAN present, AKI = issuer's SKI. */
function checkLeaf(file: string, role: 'server' | 'client', issuerFile: string): void {
  const text = x509Text(file);
  checkCommon(file, text);
  const ext = textExtensions(text);
  const bc = ext.get('X509v3 Basic Constraints');
  assert.deepEqual(bc, { critical: true, value: 'CA:FALSE' });
  assert.deepEqual(ext.get('X509v3 Key Usage'), { critical: true, value: 'Digital Signature' });
  const eku = ext.get('X509v3 Extended Key Usage');
  assert.ok(eku, 'EKU present');
  assert.deepEqual(eku.value.split(/,\s*/), [EKU_TEXT[role]]);
  const san = ext.get('X509v3 Subject Alternative Name');
  assert.ok(san && san.value.length > 0, 'SAN present');
  if (role === 'client') assert.match(san.value, /^URI:spiffe:\/\/acme\.internal\/[^,]+$/);
  else assert.doesNotMatch(san.value, /URI:/);
  assert.ok(!ext.has('X509v3 Name Constraints'));
  const issuerExt = textExtensions(x509Text(issuerFile));
  assert.equal(keyIdHex(ext.get('X509v3 Authority Key Identifier')?.value), keyIdHex(issuerExt.get('X509v3 Subject Key Identifier')?.value));
  assert.equal(keyIdHex(ext.get('X509v3 Subject Key Identifier')?.value).length, 40);
}

describe('interop/chain: certificate contents (openssl x509 -text)', () => {
  let ca: TestCa;
  before(async () => {
    ca = await makeTestCa({ now: NOW });
  });
  after(() => ca?.close());

  const leafCases: { name: string; role: 'server' | 'client'; req?: IssueRequest; admin?: boolean }[] = [
    { name: 'ok/server-leaf', role: 'server', req: { role: 'server', names: SERVER_NAMES } },
    { name: 'ok/server-leaf-rsa2048', role: 'server', req: { role: 'server', keyType: 'rsa2048', names: SERVER_NAMES } },
    { name: 'ok/server-leaf-ed25519', role: 'server', req: { role: 'server', keyType: 'ed25519', names: names({ dns: ['api.acme.internal'] }) } },
    { name: 'ok/client-leaf', role: 'client', req: { role: 'client', names: CLIENT_NAMES } },
    { name: 'ok/client-leaf-p384', role: 'client', req: { role: 'client', keyType: 'p384', names: CLIENT_NAMES } },
    { name: 'ok/admin-leaf', role: 'client', admin: true },
  ];
  for (const c of leafCases) {
    test(c.name, async (t) => {
      if (!requireTool(t, 'openssl')) return;
      const pem = c.admin ? ca.init.admin.certificatePem : (await ca.ca.issue({ ...c.req!, now: NOW })).certificatePem;
      const file = ca.file(`${c.name.replace(/\W/g, '_')}.pem`, pem);
      checkLeaf(file, c.role, c.role === 'server' ? ca.layout.serverCaCert : ca.layout.clientCaCert);
      const text = x509Text(file);
      if (c.admin) assert.match(text, /URI:spiffe:\/\/acme\.internal\/admin\/admin/);
      if (c.role === 'client') assert.match(text, /Subject: CN = (payments|admin)\n/);
      if (c.req?.keyType === 'rsa2048') assert.match(text, /Public-Key: \(2048 bit\)/);
      if (c.req?.keyType === 'ed25519') assert.match(text, /Public Key Algorithm: ED25519/);
      if (c.req?.keyType === 'p384') assert.match(text, /NIST CURVE: P-384/);
    });
  }

  for (const role of ['server', 'client'] as const) {
    test(`ok/${role}-ca: pathlen:0, EKU ${role}Auth, critical name constraints, AKI = root SKI`, (t) => {
      if (!requireTool(t, 'openssl')) return;
      const file = role === 'server' ? ca.layout.serverCaCert : ca.layout.clientCaCert;
      const text = x509Text(file);
      checkCommon(file, text);
      const ext = textExtensions(text);
      assert.deepEqual(ext.get('X509v3 Basic Constraints'), { critical: true, value: 'CA:TRUE, pathlen:0' });
      assert.deepEqual(ext.get('X509v3 Key Usage'), { critical: true, value: 'Certificate Sign, CRL Sign' });
      assert.deepEqual(ext.get('X509v3 Extended Key Usage')?.value.split(/,\s*/), [EKU_TEXT[role]]);
      const nc = ext.get('X509v3 Name Constraints');
      assert.ok(nc?.critical, 'name constraints critical');
      assert.deepEqual(nc.value.split('\n'), [
        'Permitted:', 'DNS:acme.internal', 'DNS:localhost', 'IP:127.0.0.0/255.0.0.0',
        'IP:0:0:0:0:0:0:0:1/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF', 'URI:acme.internal',
      ]);
      assert.match(text, /Issuer: O = Acme Test, CN = Acme Test Root CA\n/);
      const rootExt = textExtensions(x509Text(ca.layout.rootCert));
      assert.equal(keyIdHex(ext.get('X509v3 Authority Key Identifier')?.value), keyIdHex(rootExt.get('X509v3 Subject Key Identifier')?.value));
    });
  }

  test('ok/root: self-signed, pathlen:2, no EKU, 10 years', (t) => {
    if (!requireTool(t, 'openssl')) return;
    const text = x509Text(ca.layout.rootCert);
    checkCommon(ca.layout.rootCert, text);
    const ext = textExtensions(text);
    assert.deepEqual(ext.get('X509v3 Basic Constraints'), { critical: true, value: 'CA:TRUE, pathlen:2' });
    assert.deepEqual(ext.get('X509v3 Key Usage'), { critical: true, value: 'Certificate Sign, CRL Sign' });
    assert.ok(!ext.has('X509v3 Extended Key Usage'));
    assert.ok(!ext.has('X509v3 Name Constraints'));
    const ski = keyIdHex(ext.get('X509v3 Subject Key Identifier')?.value);
    assert.equal(ski.length, 40);
    const aki = ext.get('X509v3 Authority Key Identifier');
    if (aki) assert.equal(keyIdHex(aki.value), ski);
    assert.match(text, /Issuer: O = Acme Test, CN = Acme Test Root CA\n/);
    assert.match(text, /Subject: O = Acme Test, CN = Acme Test Root CA\n/);
    assert.ok(text.includes(`Not Before: ${opensslDate(NOW)}\n`));
    assert.ok(text.includes(`Not After : ${opensslDate(plus(NOW, ROOT_DAYS * DAY))}\n`));
    assert.match(text, /NIST CURVE: P-384/);
  });
});
