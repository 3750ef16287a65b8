/**
 * The pure parts of the lifecycle, table-driven: identifier normalization and EAB name patterns,
 * ARI certificate ids and renewal windows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeIdentifier, patternAllows } from '../../src/ca/acme/acme-identifiers.ts';
import { certIdOf, parseCertId, renewalWindow } from '../../src/ca/acme/renewal-window.ts';
import { isMutualError } from '../../src/core/errors.ts';

test('ok/identifiers-are-normalized', () => {
  const cases: [string, 'dns' | 'ip', string][] = [
    ['API.Example.Acme.Internal.', 'dns', 'api.example.acme.internal'],
    ['::0001', 'ip', '::1'],
    ['2001:DB8:0:0:0:0:0:1', 'ip', '2001:db8::1'],
    ['127.0.0.1', 'ip', '127.0.0.1'],
  ];
  for (const [value, type, want] of cases) assert.equal(normalizeIdentifier({ type, value }).value, want, value);
  assert.throws(() => normalizeIdentifier({ type: 'uri' as 'dns', value: 'x' }), (e) => isMutualError(e, 'ACME_UNSUPPORTED_IDENTIFIER'));
  assert.throws(() => normalizeIdentifier({ type: 'dns', value: 5 as unknown as string }), (e) => isMutualError(e, 'ACME_MALFORMED'));
});

test('ok/eab-patterns-match-one-label-per-star', () => {
  const cases: [string, string, boolean][] = [
    ['api.*.acme.internal', 'api.eu.acme.internal', true],
    ['api.*.acme.internal', 'api.acme.internal', false],
    ['api.*.acme.internal', 'api.a.b.acme.internal', false],
    ['*.acme.internal', 'web.acme.internal', true],
    ['*.acme.internal', 'acme.internal', false],
    ['web.acme.internal', 'web.acme.internal', true],
    ['10.1.2.3', '10.1.2.3', true],
    ['*.*.*.*', '10.1.2.3', false],
  ];
  for (const [p, v, want] of cases) assert.equal(patternAllows(p, v), want, `${p} ${v}`);
});

test('ok/ari-cert-ids-round-trip', () => {
  const kid = 'a1'.repeat(20);
  for (const serial of ['7f01', '80ff', '1', '4a5b6c']) {
    const id = certIdOf(kid, serial);
    assert.deepEqual(parseCertId(id), { issuerKeyId: kid, serial: serial.length % 2 ? '0' + serial : serial }, serial);
  }
  // RFC 9773 section 4.1: the serial's DER content bytes keep the leading zero of a high-bit serial.
  assert.equal(certIdOf(kid, '80ff').split('.')[1], Buffer.from([0, 0x80, 0xff]).toString('base64url'));
  for (const bad of ['', 'abc', 'a.b.c', 'aGk.', `.${'A'.repeat(10)}`, `aGk.${'A'.repeat(40)}`]) assert.throws(() => parseCertId(bad), (e) => isMutualError(e, 'ACME_MALFORMED'), bad);
});

test('ok/renewal-window', () => {
  const notBefore = new Date('2027-01-01T00:00:00Z');
  const notAfter = new Date('2027-01-10T00:00:00Z');
  const now = new Date('2027-01-02T00:00:00Z');
  const w = renewalWindow({ notBefore, notAfter }, false, now);
  assert.equal(w.suggestedWindow.start.toISOString(), '2027-01-07T00:00:00.000Z', 'two thirds in');
  assert.equal(w.suggestedWindow.end.toISOString(), '2027-01-09T00:00:00.000Z', 'a ninth before expiry');
  const urgent = renewalWindow({ notBefore, notAfter }, true, now);
  assert.ok(urgent.suggestedWindow.end <= now && urgent.suggestedWindow.start < urgent.suggestedWindow.end, 'renew now');
  assert.ok(urgent.retryAfterSeconds < w.retryAfterSeconds);
});
