import { test } from 'node:test';
import assert from 'node:assert/strict';
import { children, encodeLength, expect, integer, oid, oidToString, readElement, readTime, seq, time, Tag, unsignedInteger } from '../../src/core/der.ts';
import { isMutualError } from '../../src/core/errors.ts';

test('ok/oid round trips', () => {
  for (const o of ['1.2.840.10045.2.1', '2.5.29.17', '0.9.2342.19200300.100.1.1', '2.999.1', '1.3.6.1.4.1.99999999999999999999.5']) {
    assert.equal(oidToString(oid(o).subarray(2)), o);
  }
});

test('ok/lengths are minimal', () => {
  assert.deepEqual([...encodeLength(127)], [127]);
  assert.deepEqual([...encodeLength(128)], [0x81, 128]);
  assert.deepEqual([...encodeLength(256)], [0x82, 1, 0]);
  assert.equal(seq(Buffer.alloc(300)).length, 304);
});

test('ok/integers are positive and minimal', () => {
  assert.deepEqual([...unsignedInteger(Buffer.from([0x80]))], [2, 2, 0, 0x80]);
  assert.deepEqual([...unsignedInteger(Buffer.from([0, 0, 5]))], [2, 1, 5]);
  assert.deepEqual([...integer(0)], [2, 1, 0]);
});

test('ok/times: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5)', () => {
  const a = time(new Date('2049-12-31T23:59:59Z'));
  assert.equal(a[0], Tag.UTC_TIME);
  const b = time(new Date('2050-01-01T00:00:00Z'));
  assert.equal(b[0], Tag.GENERALIZED_TIME);
  assert.equal(readTime(b, readElement(b, 0)).toISOString(), '2050-01-01T00:00:00.000Z');
  assert.throws(() => time(new Date('2030-01-01T00:00:00.500Z')), TypeError);
});

const fails: [string, number[]][] = [
  ['fail/indefinite-length', [0x30, 0x80, 0, 0]],
  ['fail/non-minimal-length', [0x30, 0x81, 0x05, 1, 2, 3, 4, 5]],
  ['fail/truncated', [0x30, 0x05, 1, 2]],
  ['fail/length-too-large', [0x30, 0x85, 1, 1, 1, 1, 1]],
  ['fail/multi-byte-tag', [0x1f, 0x81, 0x01, 0x00]],
];
for (const [name, bytes] of fails) {
  test(name, () => {
    assert.throws(() => readElement(Buffer.from(bytes), 0), (e) => isMutualError(e, 'DER_MALFORMED'));
  });
}

test('fail/too-many-children', () => {
  const buf = seq(...Array.from({ length: 20 }, () => integer(1)));
  assert.throws(() => children(buf, expect(buf, 0, Tag.SEQUENCE, buf.length, 'x'), 10), (e) => isMutualError(e, 'DER_TOO_COMPLEX'));
});

test('ok/IP addresses are parsed and printed without node:net (RFC 4291, RFC 5952)', async () => {
  const { ipToBytes, bytesToIp, isIpAddress } = await import('../../src/core/names.ts');
  const cases: [string, string][] = [
    ['127.0.0.1', '127.0.0.1'], ['::1', '::1'], ['::', '::'], ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'], ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'], ['::ffff:192.168.0.1', '::ffff:192.168.0.1'],
  ];
  for (const [input, canonical] of cases) assert.equal(bytesToIp(ipToBytes(input)), canonical, input);
  for (const bad of ['256.1.1.1', '1.2.3', '01.2.3.4', '1:2:3:4:5:6:7:8:9', '1::2::3', 'fe80::1%eth0', 'g::1', '', '::1.2.3']) assert.equal(isIpAddress(bad), false, bad);
});
