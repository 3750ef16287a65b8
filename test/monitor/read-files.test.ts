/**
 * The monitor's file readers throw MutualErrors (no `mutualCode` side channel, no bare errno-like
 * codes): the finding's code is the error's code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readCertificateFile, MAX_CERT_FILE_BYTES } from '../../src/monitor/scan-files.ts';
import { readCrlFile } from '../../src/monitor/scan-crls.ts';
import { MAX_CRL_BYTES } from '../../src/core/crl-reader.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-read-files-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
const file = (name: string, data: string): string => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, data);
  return p;
};
/** A sparse file of `size` bytes (nothing is written: the readers must refuse it by its size). */
const sparse = (name: string, size: number): string => {
  const p = file(name, '');
  fs.truncateSync(p, size);
  return p;
};
const folder = path.join(dir, 'folder.pem');
fs.mkdirSync(folder);

const cases: [string, () => unknown, ErrorCode][] = [
  ['fail/neither PEM nor DER', () => readCertificateFile(file('garbage.pem', 'hello\n')), 'PEM_MALFORMED'],
  ['fail/a folder named as a certificate', () => readCertificateFile(folder), 'MONITOR_SOURCE_UNREADABLE'],
  ['fail/a certificate file over the limit', () => readCertificateFile(sparse('huge.pem', MAX_CERT_FILE_BYTES + 1)), 'MONITOR_SOURCE_UNREADABLE'],
  ['fail/a CRL file over the limit', () => readCrlFile(sparse('huge.crl', MAX_CRL_BYTES * 2 + 1)), 'MONITOR_SOURCE_UNREADABLE'],
];

for (const [name, run, code] of cases) {
  test(name, () => {
    assert.throws(run, (e: unknown) => isMutualError(e, code));
  });
}
