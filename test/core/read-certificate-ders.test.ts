/**
 * The one "PEM or DER certificates" reader (core/pem.ts readCertificateDers), table-driven: every
 * reader of certificate files, bundles and answers in mutual goes through it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { MAX_BUNDLE_BYTES, MAX_BUNDLE_CERTS, readCertificateDers, toPem, type ReadCertificateDersOptions } from '../../src/core/pem.ts';
import { isMutualError } from '../../src/core/errors.ts';

const CORPUS = path.join(import.meta.dirname, '..', 'fuzz-corpus', 'der');
const leaf = fs.readFileSync(path.join(CORPUS, 'cert-server-leaf.der'));
const root = fs.readFileSync(path.join(CORPUS, 'cert-root.der'));
const csr = fs.readFileSync(path.join(CORPUS, 'csr-p256-server.der'));
const pem = (der: Buffer, label = 'CERTIFICATE') => toPem(der, label);

interface Case {
  name: string;
  input: string | Uint8Array;
  options?: ReadCertificateDersOptions;
  /** The DERs expected, or the error code. */
  want: Buffer[] | string;
}

const cases: Case[] = [
  { name: 'ok/der', input: leaf, want: [leaf] },
  { name: 'ok/der-in-a-subarray', input: Uint8Array.prototype.subarray.call(Buffer.concat([Buffer.from('xx'), leaf]), 2), want: [leaf] },
  { name: 'ok/pem-one', input: pem(leaf), want: [leaf] },
  { name: 'ok/pem-bytes', input: Buffer.from(pem(leaf)), want: [leaf] },
  { name: 'ok/bundle-in-order', input: pem(leaf) + pem(root), want: [leaf, root] },
  { name: 'ok/crlf', input: (pem(leaf) + pem(root)).replace(/\n/g, '\r\n'), want: [leaf, root] },
  { name: 'ok/comments-between-blocks', input: `subject=CN=leaf\n${pem(leaf)}\n# the root\n${pem(root)}`, want: [leaf, root] },
  { name: 'ok/mixed-labels-keep-certificates', input: pem(csr, 'CERTIFICATE REQUEST') + pem(leaf) + pem(Buffer.from('key'), 'PRIVATE KEY'), want: [leaf] },
  { name: 'ok/mixed-labels-no-certificate', input: pem(csr, 'CERTIFICATE REQUEST'), want: [] },
  { name: 'ok/other-labels-on-request', input: pem(leaf, 'TRUSTED CERTIFICATE') + pem(root), options: { labels: ['CERTIFICATE', 'TRUSTED CERTIFICATE'] }, want: [leaf, root] },
  { name: 'ok/trusted-certificate-not-by-default', input: pem(leaf, 'TRUSTED CERTIFICATE') + pem(root), want: [root] },
  { name: 'ok/string-starting-with-0-is-not-der', input: `0 ${pem(leaf)}`, want: [leaf] },
  { name: 'fail/empty-bytes', input: Buffer.alloc(0), want: 'PEM_MALFORMED' },
  { name: 'fail/empty-string', input: '', want: 'PEM_MALFORMED' },
  { name: 'fail/whitespace', input: ' \r\n\t\n', want: 'PEM_MALFORMED' },
  { name: 'fail/garbage', input: 'this is not a certificate\n', want: 'PEM_MALFORMED' },
  { name: 'fail/garbage-bytes', input: Buffer.from([0xff, 0x00, 0x30, 0x01]), want: 'PEM_MALFORMED' },
  { name: 'fail/truncated-pem', input: pem(leaf).slice(0, 300), want: 'PEM_MALFORMED' },
  { name: 'fail/bad-base64', input: '-----BEGIN CERTIFICATE-----\nAA=A\n-----END CERTIFICATE-----\n', want: 'PEM_MALFORMED' },
  { name: 'fail/oversized-bytes', input: Buffer.alloc(MAX_BUNDLE_BYTES + 1, 0x30), want: 'INPUT_TOO_LARGE' },
  { name: 'fail/oversized-string', input: 'A'.repeat(MAX_BUNDLE_BYTES + 1), want: 'INPUT_TOO_LARGE' },
  { name: 'fail/oversized-for-the-caller', input: leaf, options: { maxBytes: 100 }, want: 'INPUT_TOO_LARGE' },
  { name: 'fail/too-many-blocks', input: pem(root).repeat(MAX_BUNDLE_CERTS + 1), want: 'DER_TOO_COMPLEX' },
  { name: 'fail/too-many-blocks-of-any-label', input: pem(csr, 'CERTIFICATE REQUEST').repeat(3) + pem(leaf), options: { maxBlocks: 3 }, want: 'DER_TOO_COMPLEX' },
];

for (const c of cases) {
  test(`pem/readCertificateDers ${c.name}`, () => {
    let got: Buffer[] | string;
    try {
      got = readCertificateDers(c.input, c.options);
    } catch (e) {
      assert.ok(isMutualError(e), `not a MutualError: ${String(e)}`);
      got = e.code;
    }
    if (typeof c.want === 'string') assert.equal(got, c.want);
    else {
      assert.ok(Array.isArray(got), `threw ${String(got)}`);
      assert.deepEqual(got.map((d) => d.toString('hex')), c.want.map((d) => d.toString('hex')));
    }
  });
}

test('pem/readCertificateDers: exactly the block limit is accepted', () => {
  assert.equal(readCertificateDers(pem(root).repeat(MAX_BUNDLE_CERTS)).length, MAX_BUNDLE_CERTS);
});

/**
 * The readers built on it answer alike: the SDK's trust bundles, the monitor's certificate files
 * and anchor bundles. Before, garbage was [] for two of them ("trust nothing", silently) and
 * PEM_MALFORMED for the third.
 */
test('pem/readCertificateDers: every certificate reader answers alike', async () => {
  const { readCertificates } = await import('../../src/sdk/verifier.ts');
  const { readBundle } = await import('../../src/monitor/run-scan.ts');
  const { readCertificateFile } = await import('../../src/monitor/scan-files.ts');
  const dir = fs.mkdtempSync(path.join((await import('node:os')).tmpdir(), 'mutual-readers-'));
  const inputs: [string, Buffer, string[] | string][] = [
    ['ok/der', leaf, [leaf.toString('hex')]],
    ['ok/bundle-with-a-key', Buffer.from(pem(leaf) + pem(Buffer.from('key'), 'PRIVATE KEY') + pem(root)), [leaf.toString('hex'), root.toString('hex')]],
    ['fail/garbage', Buffer.from('this is not a certificate\n'), 'PEM_MALFORMED'],
    ['fail/empty', Buffer.alloc(0), 'PEM_MALFORMED'],
  ];
  const readers: [string, (file: string, bytes: Buffer) => Buffer[]][] = [
    ['sdk readCertificates', (_f, bytes) => readCertificates(bytes)],
    ['monitor readBundle', (f) => readBundle(f)],
    ['monitor readCertificateFile', (f) => readCertificateFile(f).map((i) => i.der)],
  ];
  for (const [name, bytes, want] of inputs) {
    const file = path.join(dir, `${name.replace('/', '-')}.pem`);
    fs.writeFileSync(file, bytes);
    for (const [reader, read] of readers) {
      let got: string[] | string;
      try {
        got = read(file, bytes).map((d) => d.toString('hex'));
      } catch (e) {
        got = isMutualError(e) ? e.code : String(e);
      }
      assert.deepEqual(got, want, `${reader}: ${name}`);
    }
  }
});
