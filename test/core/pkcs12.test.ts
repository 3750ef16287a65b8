import { test, before, after } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { PFX, AuthenticatedSafe, SafeContents, SafeBag } from '@peculiar/asn1-pfx';
import { buildPkcs12 } from '../../src/core/pkcs12.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { parsePemBlocks } from '../../src/core/pem.ts';

const HAVE_OPENSSL = spawnSync('openssl', ['version']).status === 0;
let dir = '';

/** True when the OpenSSL CLI can be used; otherwise skips, or fails under MUTUAL_INTEROP=require. */
function needOpenssl(t: TestContext): boolean {
  if (HAVE_OPENSSL) return true;
  if (process.env.MUTUAL_INTEROP === 'require') assert.fail('openssl CLI not found and MUTUAL_INTEROP=require');
  t.skip('openssl CLI not found on PATH; install OpenSSL 3, or set MUTUAL_INTEROP=require to make this a failure');
  return false;
}

const openssl = (...args: string[]) => spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });

/** A key and self-signed certificate made by the OpenSSL CLI. */
function makeCert(name: string, genpkey: readonly string[]): { key: crypto.KeyObject; cert: Buffer } {
  execFileSync('openssl', ['genpkey', ...genpkey, '-out', `${name}.key`], { cwd: dir, stdio: 'pipe' });
  execFileSync('openssl', ['req', '-x509', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-days', '1', '-outform', 'DER', '-out', `${name}.der`], { cwd: dir, stdio: 'pipe' });
  return { key: crypto.createPrivateKey(fs.readFileSync(path.join(dir, `${name}.key`))), cert: fs.readFileSync(path.join(dir, `${name}.der`)) };
}

/** The ContentInfo types and the key SafeBag, parsed with @peculiar/asn1-pfx as a second reader. */
function parseP12(p12: Buffer): { pfx: PFX; contentTypes: string[]; keyBag: SafeBag } {
  const pfx = AsnConvert.parse(p12, PFX);
  const safe = [...AsnConvert.parse(AsnConvert.parse(pfx.authSafe.content, OctetString), AuthenticatedSafe)];
  const bags = [...AsnConvert.parse(AsnConvert.parse(safe[1].content, OctetString), SafeContents)];
  assert.equal(bags.length, 1);
  return { pfx, contentTypes: safe.map((ci) => ci.contentType), keyBag: bags[0] };
}

/** Value of a bag attribute, without its tag and length (short values only). */
const attr = (bag: SafeBag, id: string) => Buffer.from(bag.bagAttributes!.find((a) => a.attrId === id)!.attrValues[0]).subarray(2);

function writeP12(name: string, der: Buffer): string {
  fs.writeFileSync(path.join(dir, name), der);
  return name;
}

const GENPKEY = {
  p256: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  p384: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
  ed25519: ['-algorithm', 'ED25519'],
  rsa2048: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
};

let chain: Buffer[] = [];
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-pkcs12-'));
  if (HAVE_OPENSSL) chain = [makeCert('intermediate', GENPKEY.p384).cert, makeCert('root', GENPKEY.p256).cert];
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

for (const [type, genpkey] of Object.entries(GENPKEY)) {
  test(`ok/${type}: OpenSSL and Node read key, certificate and chain`, (t) => {
    if (!needOpenssl(t)) return;
    const name = `leaf-${type}`;
    const { key, cert } = makeCert(name, genpkey);
    const password = 'correct horse battery staple';
    const p12 = buildPkcs12({ key, certificate: cert, chain, password });
    const file = writeP12(`${type}.p12`, p12);
    const pass = `pass:${password}`;

    const info = openssl('pkcs12', '-info', '-in', file, '-passin', pass, '-nodes');
    assert.equal(info.status, 0, info.stderr);
    const text = info.stdout + info.stderr;
    // OpenSSL falls back to a pre-1.1 password encoding with this warning; it must not need to.
    assert.doesNotMatch(text, /broken algorithm/);
    assert.match(text, /MAC: sha256, Iteration 2048/);
    assert.match(text, /PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256/);
    assert.match(text, /Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256/);
    assert.match(text, new RegExp(`friendlyName: ${name}`));
    const keyId = crypto.createHash('sha1').update(cert).digest('hex').toUpperCase().match(/../g)!.join(' ');
    assert.equal(text.split(`localKeyID: ${keyId}`).length - 1, 2, 'localKeyID on the key and the leaf');

    const certsOut = openssl('pkcs12', '-in', file, '-passin', pass, '-nokeys');
    assert.equal(certsOut.status, 0, certsOut.stderr);
    assert.deepEqual(parsePemBlocks(certsOut.stdout).map((b) => b.der), [cert, ...chain]);

    const keyOut = openssl('pkcs12', '-in', file, '-passin', pass, '-nocerts', '-nodes');
    assert.equal(keyOut.status, 0, keyOut.stderr);
    const spki = (k: crypto.KeyObject) => k.export({ type: 'spki', format: 'der' });
    assert.deepEqual(spki(crypto.createPublicKey(crypto.createPrivateKey(keyOut.stdout))), spki(new crypto.X509Certificate(cert).publicKey));

    // Node: the bundled OpenSSL loads it as a TLS identity, and crypto decrypts the key bag on its own.
    tls.createSecureContext({ pfx: p12, passphrase: password });
    const { pfx, contentTypes, keyBag } = parseP12(p12);
    assert.deepEqual(contentTypes, ['1.2.840.113549.1.7.6', '1.2.840.113549.1.7.1']);
    assert.equal(keyBag.bagId, '1.2.840.113549.1.12.10.1.2');
    assert.deepEqual(attr(keyBag, '1.2.840.113549.1.9.21'), crypto.createHash('sha1').update(cert).digest());
    const decrypted = crypto.createPrivateKey({ key: Buffer.from(keyBag.bagValue), format: 'der', type: 'pkcs8', passphrase: password });
    assert.deepEqual(decrypted.export({ type: 'pkcs8', format: 'der' }), key.export({ type: 'pkcs8', format: 'der' }));
    assert.equal(pfx.macData.iterations, 2048);
    assert.equal(pfx.macData.mac.digestAlgorithm.algorithm, '2.16.840.1.101.3.4.2.1');
  });
}

test('fail/wrong-password: OpenSSL and Node refuse the file', (t) => {
  if (!needOpenssl(t)) return;
  const { key, cert } = makeCert('wrong', GENPKEY.p256);
  const p12 = buildPkcs12({ key, certificate: cert, password: 'right' });
  const file = writeP12('wrong.p12', p12);
  assert.notEqual(openssl('pkcs12', '-info', '-in', file, '-passin', 'pass:wrong', '-nodes').status, 0);
  assert.notEqual(openssl('pkcs12', '-in', file, '-passin', 'pass:righ', '-nokeys').status, 0);
  assert.throws(() => tls.createSecureContext({ pfx: p12, passphrase: 'wrong' }));
});

test('ok/unicode-password: BMPString for the MAC and UTF-8 for PBES2 agree with OpenSSL', (t) => {
  if (!needOpenssl(t)) return;
  const { key, cert } = makeCert('unicode', GENPKEY.ed25519);
  // The emoji lies outside the BMP, so it also checks the surrogate-pair encoding.
  for (const password of ['pässwörd', 'pässwörd 🔑']) {
    const p12 = buildPkcs12({ key, certificate: cert, password, friendlyName: 'ünïcødé' });
    const file = writeP12('unicode.p12', p12);
    const info = openssl('pkcs12', '-info', '-in', file, '-passin', `pass:${password}`, '-nodes');
    assert.equal(info.status, 0, `${password}: ${info.stderr}`);
    assert.doesNotMatch(info.stderr, /broken algorithm/);
    // OpenSSL 3.0 prints BMPString attributes byte-truncated, so read the name back with asn1-pfx.
    assert.equal(attr(parseP12(p12).keyBag, '1.2.840.113549.1.9.20').swap16().toString('utf16le'), 'ünïcødé');
    tls.createSecureContext({ pfx: p12, passphrase: password });
    assert.notEqual(openssl('pkcs12', '-info', '-in', file, '-passin', 'pass:passwoerd', '-nodes').status, 0);
  }
});

test('ok/iterations-and-random: iterations are honoured and injected randomness makes output repeatable', (t) => {
  if (!needOpenssl(t)) return;
  const { key, cert } = makeCert('det', GENPKEY.p256);
  let counter = 0;
  const random = (n: number) => Buffer.alloc(n, ++counter);
  const opts = { key, certificate: cert, password: 'pw', iterations: 5000, random };
  const a = buildPkcs12(opts);
  counter = 0;
  assert.deepEqual(buildPkcs12(opts), a);
  const info = openssl('pkcs12', '-info', '-in', writeP12('det.p12', a), '-passin', 'pass:pw', '-nodes');
  assert.equal(info.status, 0, info.stderr);
  assert.match(info.stderr + info.stdout, /MAC: sha256, Iteration 5000/);
  assert.match(info.stderr + info.stdout, /Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 5000/);
  // Without a chain the file holds just the leaf.
  const certsOut = openssl('pkcs12', '-in', 'det.p12', '-passin', 'pass:pw', '-nokeys');
  assert.deepEqual(parsePemBlocks(certsOut.stdout).map((b) => b.der), [cert]);
});

test('fail/key-mismatch: a key that is not the certificate\'s is refused with KEY_MISMATCH', (t) => {
  if (!needOpenssl(t)) return;
  const { cert } = makeCert('mismatch', GENPKEY.p256);
  const other = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  assert.throws(() => buildPkcs12({ key: other, certificate: cert, password: 'pw' }), (e) => isMutualError(e, 'KEY_MISMATCH'));
});

test('fail/misuse: bad options throw TypeError, a garbage certificate CERT_MALFORMED', () => {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const certificate = Buffer.from('not a certificate');
  assert.throws(() => buildPkcs12({ key: publicKey, certificate, password: 'pw' }), TypeError);
  assert.throws(() => buildPkcs12({ key: privateKey, certificate, password: '' }), TypeError);
  assert.throws(() => buildPkcs12({ key: privateKey, certificate, password: 'pw', iterations: 10 }), TypeError);
  assert.throws(() => buildPkcs12({ key: privateKey, certificate, password: 'pw', iterations: 2048.5 }), TypeError);
  assert.throws(() => buildPkcs12({ key: privateKey, certificate, password: 'pw' }), (e) => isMutualError(e, 'CERT_MALFORMED'));
  const weak = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
  assert.throws(() => buildPkcs12({ key: weak, certificate, password: 'pw' }), (e) => isMutualError(e, 'KEY_WEAK'));
});
