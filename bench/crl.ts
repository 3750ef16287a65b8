/**
 * CRL generation: mutual vs `openssl ca -gencrl`, same counts, same run.
 *
 *   npm run bench:crl -- [counts=100000,1000000]
 *
 * mutual's revocations are stored as they are after `revoke` (pre-encoded entries in chunks);
 * the timed part is building and signing the CRL in a fresh process (its peak RSS is reported).
 * openssl reads an index.txt with the same number of revoked entries. Every CRL is checked by
 * `openssl crl -verify`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { prepareOpensslCa, measureOpensslCrl } from './peers/openssl-ca.ts';
import { formatTable } from './lib/measure.ts';

const counts = (process.argv[2] ?? '100000,1000000').split(',').map(Number);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-bench-crl-'));
const peer = await prepareOpensslCa(path.join(work, 'openssl-ca'));
const rows: Record<string, string | number>[] = [];
for (const count of counts) {
  const dir = path.join(work, `mutual-${count}`);
  fs.mkdirSync(dir);
  const node = (args: string[]) => JSON.parse(execFileSync(process.execPath, ['bench/engine/crl-engine.ts', ...args], { encoding: 'utf8', maxBuffer: 1 << 20 }).trim());
  node(['setup', dir, String(count), 'random']);
  const ours = node(['build', dir, path.join(dir, 'crl.der')]);
  const ca = `${dir}/home/ca`;
  execFileSync('sh', ['-c', `cat ${ca}/root.pem ${ca}/client-ca.pem > ${dir}/bundle.pem && openssl crl -inform DER -in ${dir}/crl.der -CAfile ${dir}/bundle.pem -noout 2>&1 | grep -q 'verify OK'`]);
  const theirs = await measureOpensslCrl(peer, count, 'random');
  rows.push({ entries: count, tool: 'mutual', seconds: ours.seconds.toFixed(2), 'peak RSS MB': Math.round(ours.peakRssMB), 'DER MB': (ours.derBytes / 1e6).toFixed(1) });
  rows.push({ entries: count, tool: 'openssl ca -gencrl', seconds: theirs.seconds.toFixed(2), 'peak RSS MB': Math.round(theirs.peakRssMB), 'DER MB': (theirs.derBytes / 1e6).toFixed(1) });
  rows.push({ entries: count, tool: 'mutual vs openssl', seconds: `${(theirs.seconds / ours.seconds).toFixed(1)}x faster`, 'peak RSS MB': `openssl uses ${(theirs.peakRssMB / ours.peakRssMB).toFixed(1)}x`, 'DER MB': '' });
  fs.rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(`\nCRL generation, random serials, reason keyCompromise on every entry\n\n${formatTable(rows)}\n`);
fs.rmSync(work, { recursive: true, force: true });
