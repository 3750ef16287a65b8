/**
 * The ACME interop matrix (matrix.ts) against pebble, Let's Encrypt's test server: certbot
 * (standalone and webroot http-01, dns-01 by manual hooks, EAB), lego (http-01, dns-01 by `exec`,
 * tls-alpn-01, EAB with pebble's example keys) and dehydrated (http-01 by WELLKNOWN, dns-01 by its
 * hook) each obtain a
 * certificate that `openssl verify` accepts to pebble's root, renew it and revoke it. This is the
 * reference run: interop-mutual.test.ts runs the same cases against `mutual serve`. Two validations
 * must fail with the problem type the client reports (nobody listening; a wrong key authorization).
 *
 * Each case has its own pebble (its validator ports are the case's responder ports), so cases run
 * side by side. They share one test DNS: the project's own server (test/helpers/dns-server.ts), the
 * one the mutual run uses too, rather than pebble-challtestsrv, so the two runs differ only in the
 * server under test. A missing tool skips, or fails under MUTUAL_INTEROP=require.
 */
import { interopSuite } from './matrix.ts';
import { startPebble } from './pebble.ts';

/** Cases at once: each is a client process or two plus a pebble, on 2 cores. */
interopSuite('acme interop: pebble', startPebble, { pebble: true, concurrency: 4 });
