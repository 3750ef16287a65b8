import { test, before, after } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { OCSPRequest, OCSPResponse, BasicOCSPResponse, id_pkix_ocsp_nonce } from '@peculiar/asn1-ocsp';
import {
  buildOcspRequest, createOcspResponder, encodeCertId, matchesIssuer, ocspIssuerHashes, parseOcspRequest, parseOcspResponse, verifyOcspResponse,
  MAX_OCSP_REQUEST_BYTES, MAX_OCSP_REQUESTS, OCSP_INTERNAL_ERROR, OCSP_MALFORMED, OCSP_OID, OCSP_TRY_LATER, OCSP_UNAUTHORIZED,
  type OcspCertStatus, type OcspIssuerHashes, type OcspResponder,
} from '../../src/core/ocsp.ts';
import { generateKeyPair, spkiDer } from '../../src/core/algorithms.ts';
import { createCertificateTemplate, newSerial, subjectFor } from '../../src/core/certificate-template.ts';
import { boolean, enumerated, explicit, floorSeconds, integer, octetString, oid, readElement, seq, tlv } from '../../src/core/der.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';
import { readPemOrDer, toPem } from '../../src/core/pem.ts';
import { keyObjectSigner } from '../../src/core/signer.ts';
import type { RevocationReason } from '../../src/core/crl.ts';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';
import { openssl, requireTool } from '../helpers/tools.ts';

let tc: TestCa;
let responder: OcspResponder;
let responderKey: crypto.KeyObject;
let leaf: { serial: string; der: Buffer };
let clientHashes: OcspIssuerHashes;
let serverHashes: OcspIssuerHashes;
const now = floorSeconds(new Date());
const HOUR = 3_600_000;

const file = (name: string) => path.join(tc.dir, name);
const certDer = (pem: string) => readPemOrDer(pem, ['CERTIFICATE']);

before(async () => {
  tc = await makeTestCa();
  const { ca } = tc;
  tc.file('client-ca.pem', ca.client.pem);
  tc.file('server-ca.pem', ca.server.pem);
  tc.file('cafile.pem', ca.rootPem + ca.client.pem);
  const issued = await ca.issue({ role: 'client', names: { dns: [], ip: [], uri: ['spiffe://acme.internal/prod/x'] } });
  tc.file('leaf.pem', issued.certificatePem);
  tc.file('leaf.key', issued.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string);
  leaf = { serial: issued.serial, der: issued.certificate };

  // The delegated responder: EKU OCSPSigning and id-pkix-ocsp-nocheck, issued by the client CA.
  const kp = generateKeyPair('p256');
  responderKey = kp.publicKey;
  const template = createCertificateTemplate(ca.client.template.issuer, { role: 'ocsp' });
  const responderCert = await template.sign({
    serial: newSerial(),
    notBefore: new Date(Math.max(now.getTime() - 60_000, ca.client.info.notBefore.getTime())),
    notAfter: new Date(Math.min(now.getTime() + 24 * HOUR, ca.client.info.notAfter.getTime())),
    subject: subjectFor('OCSP responder'),
    spki: spkiDer(kp.publicKey),
  });
  tc.file('responder.pem', toPem(responderCert, 'CERTIFICATE'));
  const issuerCertDer = certDer(ca.client.pem);
  responder = createOcspResponder({ issuerCertDer, responderCertDer: responderCert, signer: keyObjectSigner(kp.privateKey) });
  clientHashes = ocspIssuerHashes(issuerCertDer);
  serverHashes = ocspIssuerHashes(certDer(ca.server.pem));
});
after(async () => tc && (await tc.close()));

/** A request made by `openssl ocsp`; `args` go before -cert (where OpenSSL wants -sha256). */
function opensslRequest(name: string, args: string[] = [], issuer = 'client-ca.pem'): Buffer {
  const r = openssl(['ocsp', '-issuer', file(issuer), ...args, '-cert', file('leaf.pem'), '-reqout', file(name)]);
  assert.equal(r.status, 0, r.stderr);
  return fs.readFileSync(file(name));
}

/** What the server would do: parse, find the issuer, encode and sign. */
async function answer(req: Buffer, status: OcspCertStatus, nonce?: Buffer | null): Promise<Buffer> {
  const parsed = parseOcspRequest(req);
  if (!parsed.requests.every((id) => matchesIssuer(id, responder.issuerHashes))) return OCSP_UNAUTHORIZED;
  const singles = parsed.requests.map((id) => responder.encodeSingle({ ...status, certId: id.raw }, now, new Date(now.getTime() + HOUR)));
  return responder.sign(singles, now, nonce === null ? undefined : (nonce ?? parsed.nonce));
}

/**
 * `openssl ocsp` reading a response twice: with -issuer/-cert for the status of leaf.pem (OpenSSL
 * then builds its own request, so -no_nonce), and with -reqin alone to compare the nonce with the
 * request's. Both verify the signature and the delegated responder against the CA file.
 */
function opensslCheck(resp: Buffer, reqName: string, args: string[] = []) {
  fs.writeFileSync(file('resp.der'), resp);
  const status = openssl(['ocsp', '-respin', file('resp.der'), '-issuer', file('client-ca.pem'), ...args, '-cert', file('leaf.pem'), '-no_nonce',
    '-CAfile', file('cafile.pem'), '-resp_text']);
  const nonce = openssl(['ocsp', '-respin', file('resp.der'), '-reqin', file(reqName), '-CAfile', file('cafile.pem')]);
  return { status: status.status, out: status.stdout + status.stderr, nonceStatus: nonce.status, nonceOut: nonce.stdout + nonce.stderr };
}

/** OpenSSL's ASN1_TIME_print format: `Mar  5 12:00:00 2025 GMT`. */
function opensslTime(d: Date): string {
  const m = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getUTCMonth()];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${m} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()} GMT`;
}

const revokedAt = new Date(now.getTime() - 2 * HOUR);
const CASES: { name: string; args: string[]; status: OcspCertStatus; want: (string | RegExp)[]; reason?: number }[] = [
  { name: 'ok/good, SHA-1 CertID, nonce', args: [], status: { status: 'good' }, want: ['leaf.pem: good'] },
  { name: 'ok/good, SHA-256 CertID, nonce', args: ['-sha256'], status: { status: 'good' }, want: ['leaf.pem: good'] },
  { name: 'ok/good, no nonce', args: ['-no_nonce'], status: { status: 'good' }, want: ['leaf.pem: good'] },
  {
    name: 'ok/revoked keyCompromise with time', args: [], status: { status: 'revoked', revokedAt, reason: 'keyCompromise' }, reason: 1,
    want: ['leaf.pem: revoked', 'Reason: keyCompromise', `Revocation Time: ${opensslTime(revokedAt)}`],
  },
  { name: 'ok/revoked, reason code 4, SHA-256', args: ['-sha256', '-no_nonce'], status: { status: 'revoked', revokedAt, reason: 4 }, reason: 4, want: ['leaf.pem: revoked', 'Reason: superseded'] },
  { name: 'ok/revoked unspecified: reason left out', args: [], status: { status: 'revoked', revokedAt, reason: 'unspecified' }, want: ['leaf.pem: revoked', /^(?![\s\S]*Reason:)/] },
  { name: 'ok/unknown', args: [], status: { status: 'unknown' }, want: ['leaf.pem: unknown'] },
];

for (const c of CASES) {
  test(c.name, async (t) => {
    if (!requireTool(t, 'openssl')) return;
    const req = opensslRequest('req.der', c.args);
    const parsed = parseOcspRequest(req);
    const withNonce = !c.args.includes('-no_nonce');
    const hash = c.args.includes('-sha256') ? 'sha256' : 'sha1';
    assert.equal(parsed.requests.length, 1);
    const [id] = parsed.requests;
    assert.equal(id.serial, leaf.serial);
    assert.equal(id.hashAlgorithm, hash);
    assert.ok(matchesIssuer(id, clientHashes));
    assert.ok(!matchesIssuer(id, serverHashes));
    assert.deepEqual(encodeCertId(hash, clientHashes, leaf.serial), id.raw, 'our CertID is byte-identical to OpenSSL\'s');
    assert.equal(parsed.nonce?.length, withNonce ? 16 : undefined);

    const resp = await answer(req, c.status);
    const r = opensslCheck(resp, 'req.der', c.args.filter((a) => a === '-sha256'));
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /Response verify OK/);
    assert.equal(r.nonceStatus, 0, r.nonceOut);
    assert.match(r.nonceOut, /Response verify OK/);
    assert.doesNotMatch(r.nonceOut, /WARNING|error/i, 'the nonce is echoed, or absent from both');
    for (const w of c.want) typeof w === 'string' ? assert.ok(r.out.includes(w), `${w} not in\n${r.out}`) : assert.match(r.out, w);

    const back = parseOcspResponse(resp);
    assert.ok(back.status === 'successful');
    assert.ok(verifyOcspResponse(back, responderKey));
    assert.ok(!verifyOcspResponse(back, tc.ca.client.signer.publicKey), 'another key does not verify');
    assert.deepEqual(back.nonce, parsed.nonce);
    assert.deepEqual(back.certs, [certDer(fs.readFileSync(file('responder.pem'), 'utf8'))]);
    assert.equal(back.producedAt.getTime(), now.getTime());
    const [single] = back.responses;
    assert.equal(single.status, c.status.status);
    assert.deepEqual(single.certId.raw, id.raw);
    assert.equal(single.thisUpdate.getTime(), now.getTime());
    assert.equal(single.nextUpdate?.getTime(), now.getTime() + HOUR);
    assert.equal(single.revokedAt?.getTime(), c.status.status === 'revoked' ? revokedAt.getTime() : undefined);
    assert.equal(single.reason, c.reason);

    // Second reader: @peculiar/asn1-ocsp.
    const pReq = AsnConvert.parse(req, OCSPRequest);
    const pId = pReq.tbsRequest.requestList[0].reqCert;
    assert.equal(Buffer.from(pId.serialNumber).toString('hex').replace(/^(00)+/, ''), id.serial);
    assert.deepEqual(Buffer.from(pId.issuerNameHash.buffer), id.issuerNameHash);
    assert.deepEqual(Buffer.from(pId.issuerKeyHash.buffer), id.issuerKeyHash);
    assert.equal(pId.hashAlgorithm.algorithm, OCSP_OID[hash]);
    const pNonce = pReq.tbsRequest.requestExtensions?.find((e) => e.extnID === id_pkix_ocsp_nonce);
    assert.deepEqual(pNonce && Buffer.from(AsnConvert.parse(pNonce.extnValue.buffer, OctetString).buffer), parsed.nonce);
    const pResp = AsnConvert.parse(resp, OCSPResponse);
    const pBasic = AsnConvert.parse(pResp.responseBytes!.response.buffer, BasicOCSPResponse);
    const pSingle = pBasic.tbsResponseData.responses[0];
    assert.equal(pSingle.certStatus.revoked ? 'revoked' : pSingle.certStatus.unknown === null ? 'unknown' : 'good', c.status.status);
    // byKey: SHA-1 of the P-256 point, the last 65 bytes of the SPKI.
    assert.deepEqual(Buffer.from(pBasic.tbsResponseData.responderID.byKey!.buffer), crypto.createHash('sha1').update(spkiDer(responderKey).subarray(-65)).digest());
  });
}

test('ok/buildOcspRequest: byte-identical to OpenSSL\'s request without a nonce, read by openssl ocsp -reqin', async (t) => {
  if (!requireTool(t, 'openssl')) return;
  for (const hash of ['sha1', 'sha256'] as const) {
    const ours = buildOcspRequest([encodeCertId(hash, clientHashes, leaf.serial)]);
    assert.deepEqual(ours, opensslRequest(`req-openssl-${hash}.der`, hash === 'sha256' ? ['-sha256', '-no_nonce'] : ['-no_nonce']));
    fs.writeFileSync(file(`req-ours-${hash}.der`), ours);
    const text = openssl(['ocsp', '-reqin', file(`req-ours-${hash}.der`), '-req_text', '-noverify']);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`Hash Algorithm: ${hash}`, 'i'));
    assert.match(text.stdout, new RegExp(`Serial Number: ${leaf.serial}`, 'i'));
    const parsed = parseOcspRequest(ours);
    assert.equal(parsed.nonce, undefined);
    assert.equal(parsed.requests[0].serial, leaf.serial);
    assert.ok(matchesIssuer(parsed.requests[0], clientHashes));
    // The responder's answer to it verifies in OpenSSL against the same request.
    const r = opensslCheck(await answer(ours, { status: 'good' }), `req-ours-${hash}.der`, hash === 'sha256' ? ['-sha256'] : []);
    assert.equal(r.nonceStatus, 0, r.nonceOut);
    assert.match(r.nonceOut, /Response verify OK/);
    assert.match(r.out, /leaf\.pem: good/);
  }
  const two = parseOcspRequest(buildOcspRequest([encodeCertId('sha1', clientHashes, leaf.serial), encodeCertId('sha256', serverHashes, '01')]));
  assert.deepEqual(two.requests.map((id) => [id.hashAlgorithm, id.serial]), [['sha1', leaf.serial], ['sha256', '01']]);
});

test('fail/buildOcspRequest: no CertID, or more than a responder reads, is a TypeError', () => {
  assert.throws(() => buildOcspRequest([]), TypeError);
  const id = encodeCertId('sha1', clientHashes, leaf.serial);
  assert.throws(() => buildOcspRequest(Array.from({ length: MAX_OCSP_REQUESTS + 1 }, () => id)), TypeError);
  assert.equal(parseOcspRequest(buildOcspRequest(Array.from({ length: MAX_OCSP_REQUESTS }, () => id))).requests.length, MAX_OCSP_REQUESTS);
});

test('ok/nonce: a mismatched nonce fails, a missing one warns', async (t) => {
  if (!requireTool(t, 'openssl')) return;
  const req = opensslRequest('req-nonce.der');
  const wrong = opensslCheck(await answer(req, { status: 'good' }, crypto.randomBytes(16)), 'req-nonce.der');
  assert.equal(wrong.status, 0, 'the signature and status are fine');
  assert.notEqual(wrong.nonceStatus, 0);
  assert.match(wrong.nonceOut, /Nonce Verify error/);
  const missing = opensslCheck(await answer(req, { status: 'good' }, null), 'req-nonce.der');
  assert.equal(missing.nonceStatus, 0);
  assert.match(missing.nonceOut, /WARNING: no nonce in response/);
  assert.match(missing.out, /leaf\.pem: good/);
});

test('ok/signed request: optionalSignature accepted and ignored', async (t) => {
  if (!requireTool(t, 'openssl')) return;
  const req = opensslRequest('req-signed.der', ['-signer', file('leaf.pem'), '-signkey', file('leaf.key')]);
  assert.ok(AsnConvert.parse(req, OCSPRequest).optionalSignature, 'OpenSSL signed it');
  const parsed = parseOcspRequest(req);
  assert.equal(parsed.requests[0].serial, leaf.serial);
  assert.equal(parsed.nonce?.length, 16);
});

test('ok/unauthorized: a CertID naming an issuer the responder does not serve', async (t) => {
  if (!requireTool(t, 'openssl')) return;
  const server = await tc.ca.issue({ role: 'server', names: { dns: ['api.acme.internal'], ip: [], uri: [] } });
  tc.file('server-leaf.pem', server.certificatePem);
  const r = openssl(['ocsp', '-issuer', file('server-ca.pem'), '-cert', file('server-leaf.pem'), '-reqout', file('req-server.der')]);
  assert.equal(r.status, 0, r.stderr);
  const req = fs.readFileSync(file('req-server.der'));
  const [id] = parseOcspRequest(req).requests;
  assert.ok(matchesIssuer(id, serverHashes) && !matchesIssuer(id, clientHashes));
  assert.equal(await answer(req, { status: 'good' }), OCSP_UNAUTHORIZED);
  // OpenSSL hashes the name from the leaf's issuer field and the key from -issuer: a wrong -issuer matches nobody.
  const [mixed] = parseOcspRequest(opensslRequest('req-mixed.der', [], 'server-ca.pem')).requests;
  assert.ok(!matchesIssuer(mixed, serverHashes) && !matchesIssuer(mixed, clientHashes));
});

const ERROR_RESPONSES: [string, Buffer, RegExp][] = [
  ['unauthorized', OCSP_UNAUTHORIZED, /Responder Error: unauthorized \(6\)/],
  ['malformedRequest', OCSP_MALFORMED, /Responder Error: malformedrequest \(1\)/],
  ['internalError', OCSP_INTERNAL_ERROR, /Responder Error: internalerror \(2\)/],
  ['tryLater', OCSP_TRY_LATER, /Responder Error: trylater \(3\)/],
];
for (const [name, der, want] of ERROR_RESPONSES) {
  test(`ok/error response ${name}: OpenSSL reads it`, (t) => {
    assert.deepEqual(parseOcspResponse(der), { status: name });
    assert.equal(AsnConvert.parse(der, OCSPResponse).responseBytes, undefined);
    if (!requireTool(t, 'openssl')) return;
    fs.writeFileSync(file('err.der'), der);
    const r = openssl(['ocsp', '-respin', file('err.der'), '-resp_text']);
    assert.match(r.stdout + r.stderr, want);
  });
}

// Hand-made requests around one well-formed CertID.
const certId = () => encodeCertId('sha1', clientHashes, leaf.serial);
const ext = (id: string, value: Buffer, critical = false) => seq(oid(id), ...(critical ? [boolean(true)] : []), octetString(value));
const request = (tbsParts: Buffer[], ...after: Buffer[]) => seq(seq(...tbsParts), ...after);
const list = (n = 1) => seq(...Array.from({ length: n }, () => seq(certId())));
const nonceExt = (n: Buffer) => explicit(2, seq(ext(OCSP_OID.nonce, octetString(n))));

test('ok/hand-made edge cases within the limits', () => {
  const cases: [string, Buffer, number | undefined][] = [
    ['32-byte nonce', request([list(), nonceExt(Buffer.alloc(32, 7))]), 32],
    ['1-byte nonce', request([list(), nonceExt(Buffer.alloc(1, 7))]), 1],
    [`${MAX_OCSP_REQUESTS} CertIDs`, request([list(MAX_OCSP_REQUESTS)]), undefined],
    ['explicit version v1', request([explicit(0, integer(0)), list()]), undefined],
    ['unknown non-critical extension', request([list(), explicit(2, seq(ext('1.2.3.4', Buffer.from([5, 0]))))]), undefined],
  ];
  for (const [name, der, nonceLength] of cases) {
    const parsed = parseOcspRequest(der);
    assert.equal(parsed.nonce?.length, nonceLength, name);
    assert.equal(parsed.requests[0].serial, leaf.serial, name);
    assert.equal(AsnConvert.parse(der, OCSPRequest).tbsRequest.requestList.length, parsed.requests.length, name);
  }
});

test('fail/malformed requests are coded errors', () => {
  const good = request([list(), nonceExt(Buffer.alloc(16, 1))]);
  const cases: [string, Uint8Array, ErrorCode, string?][] = [
    ['empty', Buffer.alloc(0), 'DER_MALFORMED'],
    ['garbage', Buffer.from('GET / HTTP/1.1\r\n\r\n'), 'DER_MALFORMED'],
    ['random bytes', Buffer.concat([Buffer.from([0x30, 0x40]), crypto.randomBytes(64)]), 'DER_MALFORMED'],
    ['truncated', good.subarray(0, good.length - 1), 'DER_MALFORMED'],
    ['trailing bytes', Buffer.concat([good, Buffer.from([0])]), 'DER_MALFORMED'],
    ['oversized', Buffer.alloc(MAX_OCSP_REQUEST_BYTES + 1, 0x30), 'INPUT_TOO_LARGE'],
    ['too many CertIDs', request([list(MAX_OCSP_REQUESTS + 1)]), 'DER_TOO_COMPLEX'],
    ['empty requestList', request([seq()]), 'DER_MALFORMED'],
    ['nonce of 33 bytes', request([list(), nonceExt(Buffer.alloc(33, 1))]), 'DER_MALFORMED', 'nonce'],
    ['nonce of 0 bytes', request([list(), nonceExt(Buffer.alloc(0))]), 'DER_MALFORMED', 'nonce'],
    ['nonce not an OCTET STRING', request([list(), explicit(2, seq(ext(OCSP_OID.nonce, integer(5))))]), 'DER_MALFORMED', 'nonce'],
    ['nonce twice', request([list(), explicit(2, seq(ext(OCSP_OID.nonce, octetString(Buffer.alloc(8))), ext(OCSP_OID.nonce, octetString(Buffer.alloc(8)))))]), 'DER_MALFORMED'],
    ['unknown critical extension', request([list(), explicit(2, seq(ext('1.2.3.4', Buffer.from([5, 0]), true)))]), 'DER_MALFORMED'],
    ['version 2', request([explicit(0, integer(1)), list()]), 'DER_MALFORMED'],
    ['MD5 CertID', request([seq(seq(seq(seq(oid('1.2.840.113549.2.5')), octetString(Buffer.alloc(16)), octetString(Buffer.alloc(16)), integer(1))))]), 'DER_MALFORMED'],
    ['short issuer hash', request([seq(seq(seq(seq(oid(OCSP_OID.sha1)), octetString(Buffer.alloc(19)), octetString(Buffer.alloc(20)), integer(1))))]), 'DER_MALFORMED'],
    ['non-minimal serial', request([seq(seq(seq(seq(oid(OCSP_OID.sha1)), octetString(Buffer.alloc(20)), octetString(Buffer.alloc(20)), tlv(2, Buffer.from([0, 1])))))]), 'DER_MALFORMED'],
    ['21-octet serial', request([seq(seq(seq(seq(oid(OCSP_OID.sha1)), octetString(Buffer.alloc(20)), octetString(Buffer.alloc(20)), tlv(2, Buffer.alloc(21, 0x11)))))]), 'DER_MALFORMED'],
    ['indefinite length', Buffer.from([0x30, 0x80, 0, 0]), 'DER_MALFORMED'],
  ];
  for (const [name, der, code, part] of cases) {
    assert.throws(() => parseOcspRequest(der), (e) => isMutualError(e, code) && (part === undefined || e.fields.part === part), name);
  }
});

test('fail/responder misuse is a TypeError', async () => {
  const issuerCertDer = certDer(tc.ca.client.pem);
  const responderCertDer = certDer(fs.readFileSync(file('responder.pem'), 'utf8'));
  const other = keyObjectSigner(generateKeyPair('p256').privateKey);
  assert.throws(() => createOcspResponder({ issuerCertDer, responderCertDer, signer: other }), TypeError);
  // A leaf without EKU OCSPSigning may not answer; the issuer itself may.
  assert.throws(() => createOcspResponder({ issuerCertDer, responderCertDer: leaf.der, signer: other }), TypeError);
  assert.ok(createOcspResponder({ issuerCertDer, responderCertDer: issuerCertDer, signer: tc.ca.client.signer }));
  const id = certId();
  assert.throws(() => responder.encodeSingle({ status: 'good', certId: id }, new Date(now.getTime() + 1), now), TypeError);
  assert.throws(() => responder.encodeSingle({ status: 'revoked', revokedAt, reason: 7, certId: id }, now, now), TypeError);
  assert.throws(() => responder.encodeSingle({ status: 'revoked', revokedAt, reason: 'bogus' as RevocationReason, certId: id }, now, now), TypeError);
  assert.throws(() => responder.encodeSingle({ status: 'good', certId: id }, now, new Date(now.getTime() + 1500)), TypeError, 'whole seconds');
  assert.throws(() => responder.encodeSingle({ status: 'good', certId: Buffer.from([4, 0]) }, now, now), TypeError);
  assert.throws(() => responder.encodeSingle({ status: 'good', certId: id.subarray(0, -1) }, now, now), TypeError);
  await assert.rejects(responder.sign([], now), TypeError);
  await assert.rejects(responder.sign([responder.encodeSingle({ status: 'good', certId: id }, now, now)], now, Buffer.alloc(33)), TypeError);
});

test('fail/malformed responses are coded errors', async () => {
  const good = await responder.sign([responder.encodeSingle({ status: 'good', certId: certId() }, now, now)], now);
  assert.equal(parseOcspResponse(good).status, 'successful');
  const cases: [string, Buffer][] = [
    ['truncated', good.subarray(0, -1)],
    ['trailing bytes', Buffer.concat([good, Buffer.from([0])])],
    ['status 4 (unused)', seq(enumerated(4))],
    ['successful without responseBytes', seq(enumerated(0))],
    ['error status with responseBytes', seq(enumerated(3), good.subarray(readElement(good, 0).contentStart + 3))],
  ];
  for (const [name, der] of cases) assert.throws(() => parseOcspResponse(der), (e) => isMutualError(e, 'DER_MALFORMED'), name);
});
