/**
 * The CRL reader (src/core/crl-reader.ts): the CA's own CRLs read back and cross-checked with
 * OpenSSL, a 100,000-entry CRL read fast, and malformed or unusable CRLs refused with codes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { makePki, names, id, type Pki } from './fixtures.ts';
import { parseCrl, verifyCrlSignature, crlRevocation } from '../../src/core/crl-reader.ts';
import { buildCrl, encodeRevokedEntry } from '../../src/core/crl.ts';
import { octetString, oid, seq, boolean as derBoolean } from '../../src/core/der.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { PeerVerifier } from '../../src/sdk/index.ts';
import { requireTool, openssl } from '../helpers/tools.ts';

let pki: Pki;
const revoked: string[] = [];

before(async () => {
  pki = await makePki();
  for (const [i, reason] of (['keyCompromise', 'superseded', 'unspecified'] as const).entries()) {
    const c = await pki.issue('client', names({ uri: [id(`prod/r${i}`)] }), `r${i}`);
    await pki.tc.ca.revoke({ serial: c.serial, reason });
    revoked.push(c.serial);
  }
});
after(() => pki.close());

const signer = () => pki.tc.ca.client.signer;
const bigCrl = async (n: number) => {
  const t = new Date('2026-01-01T00:00:00Z');
  const parts: Buffer[] = [];
  const serials: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = crypto.randomBytes(16);
    s[0] = (s[0] & 0x3f) | 0x40;
    serials.push(s.toString('hex'));
    parts.push(encodeRevokedEntry(s, new Date(t.getTime() + i * 1000), i % 2 ? 'keyCompromise' : 'unspecified'));
  }
  const der = await buildCrl({ issuerName: pki.tc.ca.client.info.subjectName, authorityKeyId: Buffer.from(pki.tc.ca.client.keyId, 'hex'), crlNumber: 7n, thisUpdate: t, nextUpdate: new Date(t.getTime() + 86_400_000), entries: [Buffer.concat(parts)], signer: signer() });
  return { der, serials };
};

test('ok/reads the CA\'s CRL: issuer, AKI, number, times, serials with time and reason', async () => {
  const der = await pki.crl();
  const crl = parseCrl(der);
  assert.equal(crl.issuer, pki.tc.ca.client.info.subject);
  assert.deepEqual(crl.issuerName, pki.tc.ca.client.info.subjectName);
  assert.equal(crl.authorityKeyId?.toString('hex'), pki.tc.ca.client.keyId);
  assert.equal(typeof crl.crlNumber, 'bigint');
  assert.ok(crl.nextUpdate! > crl.thisUpdate);
  assert.equal(crl.revoked.size, 3);
  assert.equal(crlRevocation(crl, revoked[0])?.reason, 'keyCompromise');
  assert.equal(crlRevocation(crl, revoked[1])?.reason, 'superseded');
  assert.equal(crlRevocation(crl, revoked[2])?.reason, undefined, 'unspecified is left out (RFC 5280 5.3.1)');
  assert.ok(crlRevocation(crl, revoked[0])!.revokedAt instanceof Date);
  assert.equal(crlRevocation(crl, 'deadbeef'), undefined);
  assert.equal(verifyCrlSignature(crl, signer().publicKey, Buffer.from(pki.tc.ca.client.keyId, 'hex')), true);
  assert.equal(verifyCrlSignature(crl, pki.tc.ca.server.signer.publicKey), false, 'another CA\'s key');
});

test('ok/the serials agree with OpenSSL', async (t) => {
  if (!requireTool(t, 'openssl')) return;
  const der = await pki.crl();
  const file = pki.tc.file('client.crl', der);
  const r = openssl(['crl', '-inform', 'DER', '-in', file, '-noout', '-text']);
  assert.equal(r.status, 0, r.stderr);
  const fromOpenssl = [...r.stdout.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1].toLowerCase()).sort();
  const crl = parseCrl(der);
  assert.deepEqual(fromOpenssl, [...Array(crl.revoked.size).keys()].map((i) => crl.revoked.serialAt(i)).sort());
});

test('ok/a 100,000-entry CRL is read in well under a second, lookups exact', async () => {
  const { der, serials } = await bigCrl(100_000);
  parseCrl(der); // warm-up (JIT)
  const t0 = performance.now();
  const crl = parseCrl(der);
  const ms = performance.now() - t0;
  assert.equal(crl.revoked.size, 100_000);
  assert.ok(ms < 500, `took ${ms.toFixed(0)} ms`);
  for (const s of serials.slice(0, 1000)) assert.ok(crl.revoked.has(s));
  assert.equal(crl.revoked.has(crypto.randomBytes(16).toString('hex')), false);
  assert.equal(crlRevocation(crl, serials[1])?.reason, 'keyCompromise');
  assert.equal(crlRevocation(crl, serials[99_999])?.revokedAt.toISOString(), new Date(Date.parse('2026-01-01T00:00:00Z') + 99_999_000).toISOString());
  assert.equal(verifyCrlSignature(crl, signer().publicKey), true);
});

const malformed: { name: string; make: () => Promise<Buffer> | Buffer; code: string; o?: { maxEntries?: number } }[] = [
  { name: 'fail/truncated', make: async () => (await pki.crl()).subarray(0, 100), code: 'CRL_MALFORMED' },
  { name: 'fail/trailing bytes', make: async () => Buffer.concat([await pki.crl(), Buffer.from([0])]), code: 'CRL_MALFORMED' },
  { name: 'fail/not a CRL', make: () => Buffer.from('hello'), code: 'CRL_MALFORMED' },
  { name: 'fail/more entries than allowed', make: async () => (await bigCrl(20)).der, code: 'CRL_TOO_LARGE', o: { maxEntries: 10 } },
  {
    name: 'fail/critical entry extension mutual does not process (certificateIssuer: an indirect CRL)',
    make: async () => buildCrl({
      issuerName: pki.tc.ca.client.info.subjectName, authorityKeyId: Buffer.from(pki.tc.ca.client.keyId, 'hex'), crlNumber: 1n, thisUpdate: new Date('2026-01-01T00:00:00Z'), nextUpdate: new Date('2026-01-02T00:00:00Z'),
      entries: [seq(Buffer.from([0x02, 1, 5]), Buffer.from('170d3236303130313030303030305a', 'hex'), seq(seq(oid('2.5.29.29'), derBoolean(true), octetString(seq()))))], signer: signer(),
    }),
    code: 'CRL_MALFORMED',
  },
];
for (const c of malformed) {
  test(c.name, async () => {
    const der = await c.make();
    assert.throws(() => parseCrl(der, c.o), (e) => isMutualError(e) && e.code === c.code);
  });
}

test('fail/the verifier refuses a CRL of another CA, and ignores an older CRL number', async () => {
  const v = new PeerVerifier({ clientCas: pki.clientCa });
  const serverCrl = await pki.tc.ca.buildCrl('server');
  assert.throws(() => v.loadCrl(serverCrl), (e) => isMutualError(e, 'CRL_BAD_SIGNATURE'));
  const newer = await pki.crl();
  const st = v.loadCrl(newer);
  assert.equal(st.entries, 3);
  const older = parseCrl(newer).crlNumber!;
  const again = await pki.crl();
  assert.ok(parseCrl(again).crlNumber! > older);
  v.loadCrl(again);
  assert.equal(v.loadCrl(newer).crlNumber, parseCrl(again).crlNumber!.toString(), 'the older CRL did not replace the newer');
  // A forged CRL with the right issuer name but a bad signature.
  const bad = Buffer.from(newer);
  bad[bad.length - 5] ^= 0xff;
  assert.throws(() => v.loadCrl(bad), (e) => isMutualError(e, 'CRL_BAD_SIGNATURE') || isMutualError(e, 'CRL_MALFORMED'));
});
