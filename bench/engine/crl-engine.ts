/**
 * mutual's side of the CRL benchmark. `setup` records `count` revocations as the store keeps
 * them (pre-encoded DER entries, packed in chunks of CRL_PACK_THRESHOLD) in a new CA; `build`, in
 * a fresh process so its peak RSS is the CRL's alone, builds and signs one CRL from the store
 * (timed) and writes it to <out> for OpenSSL to check. Each prints one JSON line.
 *
 *   node bench/engine/crl-engine.ts setup <dir> <count> <sorted|random>
 *   node bench/engine/crl-engine.ts build <dir> <out.der>
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { initCa } from '../../src/ca/init-ca.ts';
import { encodeRevokedEntry } from '../../src/core/crl.ts';
import { CRL_PACK_THRESHOLD, SqliteStore } from '../../src/store/sqlite-store.ts';
import { openAuthority } from '../../src/ca/open-authority.ts';

const [mode, dir] = process.argv.slice(2);
const passphrase = 'bench-passphrase-not-secret';
const home = path.join(dir, 'home');

if (mode === 'setup') {
  const count = Number(process.argv[4]);
  const order = process.argv[5];
  await initCa({ home, trustDomain: 'bench.internal', name: 'Bench', passphrase });
  const ca = await openAuthority({ home, passphrase });
  const store = ca.store as SqliteStore;
  // The rows revocations leave behind, written in bulk instead of one transaction each.
  const kid = ca.client.keyId;
  const revokedAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 3_600_000);
  const notAfter = Math.floor(Date.now() / 1000) + 90 * 86_400;
  const insert = store.db.prepare('INSERT INTO crl_entries (issuer_kid, serial, not_after, entry) VALUES (?,?,?,?)');
  store.db.exec('BEGIN');
  for (let i = 0; i < count; i++) {
    const serial = order === 'sorted' ? Buffer.from((0x40n << 120n | BigInt(i)).toString(16), 'hex') : crypto.randomBytes(16);
    if (order !== 'sorted') serial[0] = (serial[0] & 0x3f) | 0x40;
    insert.run(kid, serial.toString('hex'), notAfter, encodeRevokedEntry(serial, revokedAt, 'keyCompromise'));
    if ((i + 1) % CRL_PACK_THRESHOLD === 0) store.packCrlEntries(kid);
  }
  store.db.exec('COMMIT');
  await ca.close();
  process.stdout.write(JSON.stringify({ count, order }) + '\n');
} else {
  const out = process.argv[4];
  const ca = await openAuthority({ home, passphrase });
  const t0 = process.hrtime.bigint();
  const der = await ca.buildCrl('client');
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  fs.writeFileSync(out, der);
  await ca.close();
  process.stdout.write(JSON.stringify({ seconds, derBytes: der.length, peakRssMB: process.resourceUsage().maxRSS / 1024 }) + '\n');
}
