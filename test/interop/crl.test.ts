/**
 * CRL integrity, judged by OpenSSL: `openssl crl -verify` on every CRL of the hierarchy,
 * `openssl verify -crl_check_all` with the root and intermediate CRLs (revoked detected, valid
 * passes), reason codes, CRL numbers, expired entries dropping off, a 10,000-entry CRL that goes
 * through the store's chunk packing, and the offline root CRL revoking an intermediate.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CertificateList } from '@peculiar/asn1-x509';
import { makeTestCa, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';
import { requireTool } from '../helpers/tools.ts';
import { newSerial } from '../../src/core/certificate-template.ts';
import { encodeRevokedEntry, type RevocationReason } from '../../src/core/crl.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';
import { renewRootCrl } from '../../src/ca/offline.ts';
import { ROOT_CRL_DAYS } from '../../src/ca/init-ca.ts';
import { CRL_LIFETIME_MS, type IssueRequest, type IssueResult } from '../../src/ca/authority.ts';
import { SqliteStore, CRL_PACK_THRESHOLD } from '../../src/store/sqlite-store.ts';
import type { CertificateRecord } from '../../src/ca/store.ts';
import type { SubjectAltNames } from '../../src/core/names.ts';
import {
  DAY, HOUR, MINUTE, NOW, X509_ERR, crlPem, crlText, crlVerify, describeVerify, failedWith, keyIdHex, opensslDate, plus, textExtensions, verify, x509Text,
} from './support.ts';

const names = (n: Partial<SubjectAltNames>): SubjectAltNames => ({ dns: [], ip: [], uri: [], ...n });
const serverReq = (host = 'api.acme.internal'): IssueRequest => ({ role: 'server', names: names({ dns: [host] }) });
const clientReq = (service = 'payments'): IssueRequest => ({ role: 'client', names: names({ uri: [`spiffe://acme.internal/prod/${service}`] }) });

/** Asserts that `fn` rejects with a MutualError of `code`. */
async function rejectsWith(fn: () => Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(isMutualError(e), `not a MutualError: ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

/** Paths of a CA's current CRLs and certificates, written as PEM files OpenSSL reads. */
function files(ca: TestCa, o: { rootCrl?: Buffer } = {}) {
  const read = (p: string) => fs.readFileSync(p);
  const rootCrl = o.rootCrl ?? read(ca.layout.rootCrl);
  const serverCrl = read(`${ca.layout.caDir}/server.crl`);
  const clientCrl = read(`${ca.layout.caDir}/client.crl`);
  return {
    allCas: ca.file('all-cas.pem', ca.init.rootPem + fs.readFileSync(ca.layout.serverCaCert, 'utf8') + fs.readFileSync(ca.layout.clientCaCert, 'utf8')),
    crls: ca.file('crls.pem', crlPem(rootCrl) + crlPem(serverCrl) + crlPem(clientCrl)),
    rootCrl: ca.file('root.crl.der', rootCrl),
    serverCrl: ca.file('server.crl.der', serverCrl),
    clientCrl: ca.file('client.crl.der', clientCrl),
  };
}

/** `openssl verify -crl_check_all` of an issued certificate with the CA's current CRLs. */
function verifyWithCrls(ca: TestCa, issued: IssueResult, role: 'server' | 'client', o: { at?: Date; rootCrl?: Buffer; crls?: string } = {}) {
  const f = files(ca, o);
  return verify({
    cert: ca.file(`leaf-${issued.serial}.pem`, issued.certificatePem),
    purpose: role === 'server' ? 'sslserver' : 'sslclient',
    caFile: ca.layout.rootCert,
    untrusted: role === 'server' ? ca.layout.serverCaCert : ca.layout.clientCaCert,
    crlFile: o.crls ?? f.crls,
    at: o.at ?? plus(NOW, HOUR),
  });
}

const upper = (serial: string) => serial.toUpperCase();

describe('interop/crl: CRLs as OpenSSL reads them', () => {
  let ca: TestCa;
  before(async () => {
    ca = await makeTestCa({ now: NOW });
  });
  after(() => ca?.close());

  for (const which of ['root', 'server', 'client'] as const) {
    test(`ok/crl-verify/${which}`, (t) => {
      if (!requireTool(t, 'openssl')) return;
      const f = files(ca);
      const file = which === 'root' ? f.rootCrl : which === 'server' ? f.serverCrl : f.clientCrl;
      const r = crlVerify(file, f.allCas);
      assert.ok(r.ok, `${r.stdout}${r.stderr}`);
      const crl = crlText(file);
      assert.match(crl.text, /Version 2 \(0x1\)/);
      const issuerCert = which === 'root' ? ca.layout.rootCert : which === 'server' ? ca.layout.serverCaCert : ca.layout.clientCaCert;
      const ski = keyIdHex(textExtensions(x509Text(issuerCert)).get('X509v3 Subject Key Identifier')?.value);
      assert.equal(crl.authorityKeyId, ski, 'AKI = issuer SKI');
      assert.ok(crl.crlNumber !== undefined && crl.crlNumber >= 1n, 'CRL number present');
      assert.equal(crl.lastUpdate, opensslDate(NOW));
      assert.equal(crl.nextUpdate, opensslDate(plus(NOW, which === 'root' ? ROOT_CRL_DAYS * DAY : CRL_LIFETIME_MS)));
    });
  }

  test('fail/crl-verify/server-crl-against-client-ca', (t) => {
    if (!requireTool(t, 'openssl')) return;
    const f = files(ca);
    const wrong = ca.file('root-and-client.pem', ca.init.rootPem + ca.init.clientCaPem);
    const r = crlVerify(f.serverCrl, wrong);
    assert.ok(!r.ok, `${r.stdout}${r.stderr}`);
  });

  for (const role of ['server', 'client'] as const) {
    test(`ok+fail/crl-check-all/${role}: the valid certificate passes, the revoked one is refused`, async (t) => {
      if (!requireTool(t, 'openssl')) return;
      const valid = await ca.ca.issue(role === 'server' ? serverReq('valid.acme.internal') : clientReq('valid'));
      const revoked = await ca.ca.issue(role === 'server' ? serverReq('revoked.acme.internal') : clientReq('revoked'));
      await ca.ca.revoke({ serial: revoked.serial, reason: 'keyCompromise' });
      const ok = verifyWithCrls(ca, valid, role);
      assert.ok(ok.ok, describeVerify(ok));
      const bad = verifyWithCrls(ca, revoked, role);
      assert.ok(!bad.ok);
      assert.ok(failedWith(bad, X509_ERR.CERT_REVOKED, 0), describeVerify(bad));
    });
  }

  test('fail/crl-check-all/without-the-root-crl: every level needs its CRL', async (t) => {
    if (!requireTool(t, 'openssl')) return;
    const valid = await ca.ca.issue(serverReq());
    const f = files(ca);
    const onlyServer = ca.file('only-server.pem', crlPem(fs.readFileSync(f.serverCrl)));
    const r = verifyWithCrls(ca, valid, 'server', { crls: onlyServer });
    assert.ok(failedWith(r, X509_ERR.UNABLE_TO_GET_CRL, 1), describeVerify(r));
  });

  test('fail/crl-check-all/after-nextUpdate: a stale CRL is refused', async (t) => {
    if (!requireTool(t, 'openssl')) return;
    const valid = await ca.ca.issue(serverReq());
    const r = verifyWithCrls(ca, valid, 'server', { at: plus(NOW, CRL_LIFETIME_MS + HOUR) });
    assert.ok(failedWith(r, X509_ERR.CRL_HAS_EXPIRED, 0), describeVerify(r));
  });

  test('ok/revoke-by-certificate-pem', async (t) => {
    if (!requireTool(t, 'openssl')) return;
    const issued = await ca.ca.issue(clientReq('by-pem'));
    const stored = await ca.ca.revoke({ certificate: issued.certificatePem, reason: 'superseded' });
    assert.equal(stored.serial, issued.serial);
    assert.equal(stored.status, 'revoked');
    const crl = crlText(files(ca).clientCrl);
    assert.equal(crl.entries.find((e) => e.serial === upper(issued.serial))?.reason, 'Superseded');
  });

  const REASONS: { reason: RevocationReason; text: string | undefined }[] = [
    { reason: 'unspecified', text: undefined },
    { reason: 'keyCompromise', text: 'Key Compromise' },
    { reason: 'cACompromise', text: 'CA Compromise' },
    { reason: 'affiliationChanged', text: 'Affiliation Changed' },
    { reason: 'superseded', text: 'Superseded' },
    { reason: 'cessationOfOperation', text: 'Cessation Of Operation' },
    { reason: 'certificateHold', text: 'Certificate Hold' },
    { reason: 'privilegeWithdrawn', text: 'Privilege Withdrawn' },
    { reason: 'aACompromise', text: 'AA Compromise' },
  ];
  for (const { reason, text } of REASONS) {
    test(`ok/reason-code/${reason}`, async (t) => {
      if (!requireTool(t, 'openssl')) return;
      const issued = await ca.ca.issue(serverReq(`${reason.toLowerCase()}.acme.internal`));
      const revokedAt = plus(NOW, 5 * MINUTE);
      const stored = await ca.ca.revoke({ serial: issued.serial, reason, now: revokedAt });
      assert.equal(stored.reason, reason);
      assert.equal((await ca.ca.find({ serial: issued.serial })).reason, reason);
      const entry = crlText(files(ca).serverCrl).entries.find((e) => e.serial === upper(issued.serial));
      assert.ok(entry, 'entry on the CRL');
      assert.equal(entry.reason, text);
      assert.equal(entry.revocationDate, opensslDate(revokedAt));
    });
  }

  test('ok/crl-number-increases-on-every-regeneration', async (t) => {
    if (!requireTool(t, 'openssl')) return;
    const numbers: bigint[] = [];
    const read = (der: Buffer) => crlText(ca.file('n.crl', der)).crlNumber!;
    numbers.push(read(fs.readFileSync(`${ca.layout.caDir}/server.crl`)));
    numbers.push(read(await ca.ca.buildCrl('server')));
    numbers.push(read(await ca.ca.writeCrl('server')));
    const issued = await ca.ca.issue(serverReq());
    await ca.ca.revoke({ serial: issued.serial });
    numbers.push(read(fs.readFileSync(`${ca.layout.caDir}/server.crl`)));
    numbers.push(read(await ca.ca.buildCrl('server')));
    for (let i = 1; i < numbers.length; i++) assert.ok(numbers[i] > numbers[i - 1], `CRL numbers ${numbers.join(', ')}`);
  });

  test('fail/revoke-twice: CERT_ALREADY_REVOKED, and nothing changes', async () => {
    const issued = await ca.ca.issue(serverReq());
    const first = await ca.ca.revoke({ serial: issued.serial, reason: 'keyCompromise' });
    const auditBefore = await countAudit(ca);
    await rejectsWith(() => ca.ca.revoke({ serial: issued.serial, reason: 'superseded', now: plus(NOW, HOUR) }), 'CERT_ALREADY_REVOKED');
    await rejectsWith(() => ca.ca.revoke({ certificate: issued.certificatePem }), 'CERT_ALREADY_REVOKED');
    const after = await ca.ca.find({ serial: issued.serial });
    assert.equal(after.reason, 'keyCompromise');
    assert.equal(after.revokedAt?.getTime(), first.revokedAt?.getTime());
    assert.equal(await countAudit(ca), auditBefore);
  });

  test('fail/revoke-unknown: CERT_NOT_FOUND and CERT_WRONG_ISSUER', async () => {
    await rejectsWith(() => ca.ca.revoke({ serial: newSerial().toString('hex') }), 'CERT_NOT_FOUND');
    await rejectsWith(() => ca.ca.revoke({ serial: 'not-hex' }), 'SERIAL_INVALID');
    const other = await makeTestCa({ now: NOW });
    try {
      const foreign = await other.ca.issue(serverReq());
      await rejectsWith(() => ca.ca.revoke({ certificate: foreign.certificatePem }), 'CERT_WRONG_ISSUER');
    } finally {
      await other.close();
    }
  });
});

async function countAudit(ca: TestCa): Promise<number> {
  let n = 0;
  for await (const _ of ca.ca.store.auditEntries()) n++;
  return n;
}

describe('interop/crl: expired certificates drop off', () => {
  test('ok/expired-entry-dropped-unexpired-kept', async (t) => {
    if (!requireTool(t, 'openssl')) return;
    const ca = await makeTestCa({ now: NOW });
    try {
      const short = await ca.ca.issue({ ...serverReq('short.acme.internal'), lifetimeSeconds: 60 });
      const long = await ca.ca.issue(serverReq('long.acme.internal'));
      assert.equal(short.notAfter.getTime(), plus(NOW, MINUTE).getTime());
      await ca.ca.revoke({ serial: short.serial, reason: 'keyCompromise' });
      await ca.ca.revoke({ serial: long.serial, reason: 'keyCompromise' });
      const serials = (der: Buffer) => crlText(ca.file('x.crl', der)).entries.map((e) => e.serial).sort();
      assert.deepEqual(serials(await ca.ca.buildCrl('server', NOW)), [upper(short.serial), upper(long.serial)].sort());
      assert.deepEqual(serials(await ca.ca.buildCrl('server', plus(NOW, 2 * MINUTE))), [upper(long.serial)]);
      // Still expired-and-gone much later; the long one stays until its own notAfter.
      assert.deepEqual(serials(await ca.ca.buildCrl('server', plus(NOW, 89 * DAY))), [upper(long.serial)]);
      assert.deepEqual(serials(await ca.ca.buildCrl('server', plus(long.notAfter, 1000))), []);
    } finally {
      await ca.close();
    }
  });
});

describe('interop/crl: a CRL with 10,000 entries (chunk packing)', () => {
  const TOTAL = 10_000;
  const EXPIRING = 1_000; // every 10th synthetic certificate expires within the hour
  let ca: TestCa;
  let realRevoked: IssueResult;
  let realValid: IssueResult;
  let der: Buffer;
  const at = plus(NOW, 2 * HOUR);

  before(async () => {
    ca = await makeTestCa({ now: NOW });
    const store = ca.ca.store;
    assert.ok(store instanceof SqliteStore);
    // Test-only: the 10,000 revocations below need no fsync each.
    store.db.exec('PRAGMA synchronous=OFF');
    realRevoked = await ca.ca.issue(serverReq('revoked.acme.internal'));
    realValid = await ca.ca.issue(serverReq('valid.acme.internal'));
    const kid = ca.ca.server.keyId;
    const records: CertificateRecord[] = [];
    for (let i = 0; i < TOTAL - 1; i++) {
      records.push({
        issuerKeyId: kid, serial: newSerial().toString('hex'), role: 'server', subject: 'CN=bulk.acme.internal', names: names({ dns: ['bulk.acme.internal'] }),
        notBefore: NOW, notAfter: plus(NOW, i % 10 === 0 ? HOUR : 90 * DAY), fingerprint: 'bulk', der: Buffer.from([0x30, 0]), issuedAt: NOW, issuedBy: 'test',
      });
    }
    await store.recordIssued(records);
    const serials = [realRevoked.serial, ...records.map((r) => r.serial)];
    for (const serial of serials) {
      await store.recordRevocation({
        issuerKeyId: kid, serial, revokedAt: NOW, reason: 'superseded', crlEntry: encodeRevokedEntry(Buffer.from(serial, 'hex'), NOW, 'superseded'),
      }, 'test');
    }
    der = await ca.ca.writeCrl('server', at);
  });
  after(() => ca?.close());

  test('ok/entries-were-packed-into-chunks', () => {
    const store = ca.ca.store as SqliteStore;
    const chunks = store.db.prepare('SELECT count(*) AS n, sum(count) AS s FROM crl_chunks WHERE issuer_kid = ?').get(ca.ca.server.keyId) as { n: number; s: number };
    const loose = store.db.prepare('SELECT count(*) AS n FROM crl_entries WHERE issuer_kid = ?').get(ca.ca.server.keyId) as { n: number };
    assert.equal(chunks.n, Math.floor(TOTAL / CRL_PACK_THRESHOLD));
    assert.equal(chunks.s + loose.n, TOTAL);
  });

  test('ok/openssl-reads-and-verifies-the-big-crl', (t) => {
    if (!requireTool(t, 'openssl')) return;
    const file = ca.file('big.crl', der);
    const r = crlVerify(file, ca.file('cas.pem', ca.init.rootPem + ca.init.serverCaPem));
    assert.ok(r.ok, `${r.stdout}${r.stderr}`);
    const crl = crlText(file);
    assert.equal(crl.entries.length, TOTAL - EXPIRING);
    assert.equal([...crl.text.matchAll(/Serial Number: /g)].length, TOTAL - EXPIRING);
    assert.equal(new Set(crl.entries.map((e) => e.serial)).size, TOTAL - EXPIRING);
    assert.ok(crl.entries.every((e) => e.reason === 'Superseded'));
    assert.ok(crl.entries.some((e) => e.serial === upper(realRevoked.serial)));
  });

  test('ok/library-parser-agrees-on-the-count', () => {
    // asn1js refuses more than 10,000 nodes by default; a 9,000-entry CRL has ~60,000.
    const list = AsnConvert.parse(der, CertificateList, { berOptions: { maxNodes: 1_000_000 } });
    assert.equal(list.tbsCertList.revokedCertificates?.length, TOTAL - EXPIRING);
  });

  test('ok+fail/crl-check-all-with-the-big-crl', (t) => {
    if (!requireTool(t, 'openssl')) return;
    const bad = verifyWithCrls(ca, realRevoked, 'server', { at });
    assert.ok(failedWith(bad, X509_ERR.CERT_REVOKED, 0), describeVerify(bad));
    const ok = verifyWithCrls(ca, realValid, 'server', { at });
    assert.ok(ok.ok, describeVerify(ok));
  });
});

describe('interop/crl: offline root CRL (renewRootCrl)', () => {
  let ca: TestCa;
  let leaf: IssueResult;
  let client: IssueResult;
  let oldRootCrl: Buffer;
  let newRootCrl: Buffer;
  const at = plus(NOW, 2 * HOUR);

  before(async () => {
    ca = await makeTestCa({ now: NOW });
    leaf = await ca.ca.issue(serverReq());
    client = await ca.ca.issue(clientReq());
    oldRootCrl = fs.readFileSync(ca.init.offline.rootCrl);
    newRootCrl = await renewRootCrl({
      offlineDir: ca.offlineDir, rootPassphrase: TEST_PASSPHRASE, revoke: { certificate: ca.init.serverCaPem, reason: 'keyCompromise' }, now: plus(NOW, HOUR),
    });
  });
  after(() => ca?.close());

  test('ok/root-crl-lists-the-server-ca', (t) => {
    if (!requireTool(t, 'openssl')) return;
    const file = ca.file('new-root.crl', newRootCrl);
    assert.ok(crlVerify(file, ca.layout.rootCert).ok);
    const crl = crlText(file);
    assert.equal(crl.crlNumber, 2n);
    assert.deepEqual(crl.entries.map((e) => [e.serial, e.reason]), [[upper(ca.ca.server.info.serial), 'Key Compromise']]);
    assert.equal(crl.lastUpdate, opensslDate(plus(NOW, HOUR)));
    assert.deepEqual(fs.readFileSync(ca.init.offline.rootCrl), newRootCrl, 'written to the offline folder');
  });

  test('fail/server-leaf-under-a-revoked-server-ca', (t) => {
    if (!requireTool(t, 'openssl')) return;
    const before = verifyWithCrls(ca, leaf, 'server', { at, rootCrl: oldRootCrl });
    assert.ok(before.ok, describeVerify(before));
    const r = verifyWithCrls(ca, leaf, 'server', { at, rootCrl: newRootCrl });
    assert.ok(failedWith(r, X509_ERR.CERT_REVOKED, 1), describeVerify(r));
  });

  test('ok/client-ca-unaffected', (t) => {
    if (!requireTool(t, 'openssl')) return;
    const r = verifyWithCrls(ca, client, 'client', { at, rootCrl: newRootCrl });
    assert.ok(r.ok, describeVerify(r));
  });

  test('fail/revoke-the-server-ca-again: CERT_ALREADY_REVOKED', async () => {
    await rejectsWith(() => renewRootCrl({ offlineDir: ca.offlineDir, rootPassphrase: TEST_PASSPHRASE, revoke: { certificate: ca.init.serverCaPem }, now: at }), 'CERT_ALREADY_REVOKED');
  });

  test('fail/revoke-a-leaf-at-the-root: CERT_WRONG_ISSUER', async () => {
    await rejectsWith(() => renewRootCrl({ offlineDir: ca.offlineDir, rootPassphrase: TEST_PASSPHRASE, revoke: { certificate: leaf.certificatePem }, now: at }), 'CERT_WRONG_ISSUER');
  });

  test('ok/renew-keeps-the-entry-and-counts-up', async (t) => {
    if (!requireTool(t, 'openssl')) return;
    const der = await renewRootCrl({ offlineDir: ca.offlineDir, rootPassphrase: TEST_PASSPHRASE, now: plus(NOW, 3 * HOUR) });
    const crl = crlText(ca.file('renewed-root.crl', der));
    assert.ok(crl.crlNumber! > 2n);
    assert.deepEqual(crl.entries.map((e) => e.serial), [upper(ca.ca.server.info.serial)]);
  });
});
