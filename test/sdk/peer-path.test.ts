/**
 * The path checks on their own (sdk/peer-path.ts), as pure functions over the test CA's
 * certificates: the trusted CA record and its validity window, what a checked leaf carries (the
 * identity, the verified chain, its revocation URLs), and the time checks. The refusals, case by
 * case, are test/sdk/verifier-path.test.ts's, through PeerVerifier.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { makePki, names, id, type Pki } from './fixtures.ts';
import { checkLeaf, checkPathTime, trustedCa, type TrustedCa } from '../../src/sdk/peer-path.ts';
import { parseCertificate } from '../../src/core/certificate.ts';
import { isMutualError } from '../../src/core/errors.ts';

const URL = 'https://ca.acme.internal:8443';
let pki: Pki;
let ca: TrustedCa;
const der = (pem: string): Buffer => new X509Certificate(pem).raw;

before(async () => {
  pki = await makePki({ url: URL });
  ca = trustedCa(parseCertificate(der(pki.clientCa)), [parseCertificate(der(pki.root))]);
});
after(() => pki.close());

test('ok/a trusted CA holds its path to the root and the window where both are valid', () => {
  const client = parseCertificate(der(pki.clientCa));
  const root = parseCertificate(der(pki.root));
  assert.deepEqual(ca.path.map((c) => c.subject), [client.subject, root.subject]);
  assert.equal(ca.validFrom, Math.max(client.notBefore.getTime(), root.notBefore.getTime()));
  assert.equal(ca.validUntil, Math.min(client.notAfter.getTime(), root.notAfter.getTime()));
  assert.equal(ca.broken, undefined);
  const alone = trustedCa(client, []);
  assert.equal(alone.path.length, 1, 'without the roots, the path is the client CA');
});

test('ok/a client leaf of the CA: identity, the client CA as its chain, its revocation URLs', async () => {
  const c = await pki.issue('client', names({ uri: [id('prod/billing')] }), 'billing');
  const st = checkLeaf(der(c.cert), [ca]);
  assert.ok(st.ok);
  assert.equal(st.identity.spiffeId, id('prod/billing'));
  assert.equal(st.identity.serial, c.serial);
  assert.deepEqual(st.identity.chain, [der(pki.clientCa)]);
  assert.equal(st.ca, ca);
  assert.ok(st.crlUrls.length > 0 && st.crlUrls.every((u) => u.startsWith(URL)), `CRL URLs ${st.crlUrls}`);
  assert.ok(st.ocspUrls.length > 0 && st.ocspUrls.every((u) => u.startsWith(URL)), `OCSP URLs ${st.ocspUrls}`);
});

test('fail/a server leaf is not issued by a client CA -> CERT_ISSUER_NOT_ALLOWED; junk -> CERT_UNTRUSTED', async () => {
  const s = await pki.issue('server', names({ dns: ['api.acme.internal'] }), 'api');
  const st = checkLeaf(der(s.cert), [ca]);
  assert.equal(st.ok ? 'ok' : st.code, 'CERT_ISSUER_NOT_ALLOWED');
  const junk = checkLeaf(Buffer.from([0x30, 0x00]), [ca]);
  assert.equal(junk.ok ? 'ok' : junk.code, 'CERT_UNTRUSTED');
});

test('fail/outside the leaf validity -> CERT_NOT_YET_VALID, CERT_EXPIRED; inside it passes', async () => {
  const c = await pki.issue('client', names({ uri: [id('prod/clock')] }), 'clock');
  const st = checkLeaf(der(c.cert), [ca]);
  assert.ok(st.ok);
  const codeAt = (ms: number): string => {
    try {
      checkPathTime(st, ms);
      return 'ok';
    } catch (e) {
      return isMutualError(e) ? e.code : String(e);
    }
  };
  assert.equal(codeAt(st.info.notBefore.getTime() + 1000), 'ok');
  assert.equal(codeAt(st.info.notBefore.getTime() - 1000), 'CERT_NOT_YET_VALID');
  assert.equal(codeAt(st.info.notAfter.getTime()), 'CERT_EXPIRED');
});
