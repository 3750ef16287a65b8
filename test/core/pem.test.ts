import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { parsePemBlocks, readPemOrDer, toPem, type PemBlock } from '../../src/core/pem.ts';
import { isMutualError } from '../../src/core/errors.ts';

/**
 * The reference the scanner replaced (a regular expression per RFC 7468's lax form): the scanner
 * must find the same blocks and refuse the same texts on every input below.
 */
function reference(text: string, maxBlocks = 16): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n\t ]*?)-----END \1-----/g)) {
    if (out.length >= maxBlocks) throw new Error('DER_TOO_COMPLEX');
    const body = m[2].replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) throw new Error('PEM_MALFORMED');
    out.push({ label: m[1], der: Buffer.from(body, 'base64') });
  }
  return out;
}

function outcome(f: () => PemBlock[]): string {
  try {
    return JSON.stringify(f().map((b) => [b.label, b.der.toString('hex')]));
  } catch (e) {
    return isMutualError(e) ? e.code : (e as Error).message;
  }
}

const cert = toPem(crypto.randomBytes(300), 'CERTIFICATE');
const crl = toPem(crypto.randomBytes(121), 'X509 CRL');

const cases: [string, string][] = [
  ['one block', cert],
  ['two blocks with text around', `subject=CN=x\n${cert}issuer=CN=y\n${crl}trailing`],
  ['CRLF lines', cert.replace(/\n/g, '\r\n')],
  ['tabs and spaces in the body', cert.replace(/\n(?=[A-Za-z0-9])/g, '\n \t')],
  ['one long line', `-----BEGIN CERTIFICATE-----\n${crypto.randomBytes(200).toString('base64')}\n-----END CERTIFICATE-----\n`],
  ['empty body', '-----BEGIN X-----\n-----END X-----\n'],
  ['mismatched END label', cert.replace('END CERTIFICATE', 'END X509 CRL')],
  ['lower-case label', cert.replace(/CERTIFICATE/g, 'certificate')],
  ['no newline after BEGIN', cert.replace('-----\n', '-----')],
  ['header lines (RFC 1421 style) are not a body', '-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END CERTIFICATE-----\n'],
  ['padding inside the body', '-----BEGIN X-----\nAA==AAAA\n-----END X-----\n'],
  ['three padding characters', '-----BEGIN X-----\nA===\n-----END X-----\n'],
  ['length not a multiple of 4', '-----BEGIN X-----\nAAAAA\n-----END X-----\n'],
  ['a bad block after a good one', `${cert}-----BEGIN X-----\nAAA\n-----END X-----\n`],
  ['BEGIN without END', '-----BEGIN CERTIFICATE-----\nAAAA\n'],
  ['a second BEGIN inside a body', `-----BEGIN CERTIFICATE-----\nAAAA\n${cert}`],
  ['non-ASCII in the body', '-----BEGIN X-----\nAA\u00e9A\n-----END X-----\n'],
  ['too many blocks', cert.repeat(17)],
  ['nothing', 'hello'],
];

for (const [name, text] of cases) {
  test(`pem/${name}: the scanner agrees with the reference`, () => {
    assert.equal(outcome(() => parsePemBlocks(text)), outcome(() => reference(text)));
  });
}

test('pem/random damage: the scanner agrees with the reference on 3,000 mutated texts', () => {
  const alphabet = '-=\r\n\t AZaz09+/BEGINEND\u00ff';
  const base = `${cert}middle\n${crl}`;
  for (let i = 0; i < 3000; i++) {
    const chars = [...base];
    for (let k = 0, n = 1 + (i % 4); k < n; k++) {
      const at = crypto.randomInt(chars.length);
      const op = crypto.randomInt(3);
      const c = alphabet[crypto.randomInt(alphabet.length)];
      if (op === 0) chars[at] = c;
      else if (op === 1) chars.splice(at, 1);
      else chars.splice(at, 0, c);
    }
    const text = chars.join('');
    assert.equal(outcome(() => parsePemBlocks(text)), outcome(() => reference(text)), JSON.stringify(text));
  }
});

test('pem/readPemOrDer: DER as is, PEM by label, coded errors otherwise', () => {
  const der = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x05]);
  assert.deepEqual(readPemOrDer(der, ['X']), der);
  assert.deepEqual(readPemOrDer(toPem(der, 'X'), ['X']), der);
  assert.deepEqual(readPemOrDer(Buffer.from(toPem(der, 'X')), ['X']), der);
  const code = (f: () => unknown) => {
    try {
      f();
      return 'none';
    } catch (e) {
      return isMutualError(e) ? e.code : String(e);
    }
  };
  assert.equal(code(() => readPemOrDer(toPem(der, 'Y'), ['X'])), 'PEM_WRONG_TYPE');
  assert.equal(code(() => readPemOrDer('garbage', ['X'])), 'PEM_MALFORMED');
  assert.equal(code(() => readPemOrDer('-----BEGIN X-----\nAAAA\n', ['X'])), 'PEM_MALFORMED');
  assert.equal(code(() => readPemOrDer(Buffer.alloc(200_000, 0x41), ['X'])), 'INPUT_TOO_LARGE');
  assert.equal(code(() => readPemOrDer('A'.repeat(200_000), ['X'])), 'INPUT_TOO_LARGE');
});
