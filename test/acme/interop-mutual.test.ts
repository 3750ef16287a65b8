/**
 * The ACME interop matrix (matrix.ts) against `mutual serve` with ACME enabled (mutual.ts): the
 * same clients, challenges and checks as interop-pebble.test.ts, with the same code, so a case that
 * passes there and fails here is ours (or the client's reading of a choice RFC 8555 leaves open).
 * After each revoke, the server's OCSP responder must say revoked (`openssl ocsp`, the response
 * verified to the root) and still say good for the certificate before the renewal.
 *
 * The DNS is the project's test DNS server (test/helpers/dns-server.ts) behind the same
 * record API the hooks use with pebble-challtestsrv (test-dns.ts).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import { interopSuite, type CaseOutcome } from './matrix.ts';
import { startMutual } from './mutual.ts';

/** What an ACME certificate from mutual must also carry: the server's OCSP URL, and only serverAuth. */
async function checkMutualCertificate(o: CaseOutcome): Promise<void> {
  const leaf = new X509Certificate(fs.readFileSync(o.renewed.cert));
  const url = new URL(o.target.directoryUrl);
  assert.match(leaf.infoAccess ?? '', new RegExp(`OCSP - URI:${url.origin.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/ocsp`), `AIA: ${leaf.infoAccess}`);
  assert.deepEqual(leaf.keyUsage?.filter((u) => u.startsWith('1.3.6.1.5.5.7.3.')), ['1.3.6.1.5.5.7.3.1'], `EKU: ${leaf.keyUsage}`);
}

/** Cases at once: each is a client and a `mutual serve` process, on 2 cores. */
interopSuite('acme interop: mutual serve', startMutual, { pebble: false, concurrency: 4, check: checkMutualCertificate });
