/**
 * Shutdown is bounded (issue 13, item 10): connections that hold the gateway without a request
 * (an HTTP/2 session that is idle, a TLS connection that never sends the HTTP/2 preface, a TCP
 * connection that never starts its handshake) and a request still in flight are all closed by
 * `limits.shutdownTimeoutMs`, so the gateway stops even when its clients do not leave.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { startHarness } from './harness.ts';

/** The shutdown deadline under test (short: the test waits for it, and for nothing else). */
const SHUTDOWN_MS = 200;
/** A guard for the test itself: the gateway before the fix never stopped while a client stayed. */
const GUARD_MS = 15_000;

const closedOf = (s: { once(e: 'close', f: () => void): unknown }) => new Promise<void>((r) => s.once('close', () => r()));

test('ok/close() ends idle HTTP/2, silent TLS, bare TCP connections and streams in flight by the deadline', async () => {
  const h = await startHarness((c) => Object.assign(c.limits as object, { shutdownTimeoutMs: SHUTDOWN_MS }));
  const creds = { ca: h.pki.root, cert: h.creds.payments.fullchain, key: h.creds.payments.key };
  const clients: { destroy(): void }[] = [];
  try {
    // A real HTTP/2 session, connected and idle.
    const idle = http2.connect(h.gateway.url, creds);
    idle.on('error', () => {});
    await new Promise<void>((r) => idle.once('remoteSettings', () => r()));
    const goaway = new Promise<void>((r) => idle.once('goaway', () => r()));
    // A real HTTP/2 session with a stream the backend answers only after 1.5 s (past the deadline).
    const busy = http2.connect(h.gateway.url, creds);
    busy.on('error', () => {});
    const stream = busy.request({ ':path': '/api/slow' });
    stream.on('error', () => {});
    await new Promise<void>((r) => stream.once('ready', () => r()));
    // TLS with ALPN h2 that never sends the connection preface.
    const silent = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ port: h.gateway.port, host: '127.0.0.1', servername: 'localhost', ...creds, ALPNProtocols: ['h2'] }, () => resolve(s));
      s.once('error', reject);
    });
    silent.on('error', () => {});
    silent.resume();
    assert.equal(silent.alpnProtocol, 'h2');
    // TCP that never starts the TLS handshake.
    const bare = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(h.gateway.port, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    });
    bare.on('error', () => {});
    bare.resume();
    clients.push(idle, busy, silent, bare);
    const clientsClosed = Promise.all([closedOf(idle), closedOf(busy), closedOf(silent), closedOf(bare)]);

    let guard: NodeJS.Timeout | undefined;
    const t0 = performance.now();
    const outcome = await Promise.race<string>([
      h.gateway.close().then(() => 'closed'),
      new Promise<string>((r) => (guard = setTimeout(() => r('still open'), GUARD_MS))),
    ]);
    const took = performance.now() - t0;
    clearTimeout(guard);
    assert.equal(outcome, 'closed', `close() did not finish within ${GUARD_MS} ms while clients held connections`);
    assert.ok(took >= SHUTDOWN_MS - 20, `the stream in flight was given the deadline (${took} ms)`);
    // Every client sees its connection closed by the gateway.
    const seen = await Promise.race([clientsClosed.then(() => 'all closed'), new Promise<string>((r) => (guard = setTimeout(() => r('some open'), GUARD_MS)))]);
    clearTimeout(guard);
    assert.equal(seen, 'all closed');
    await goaway; // the idle session was told first (GOAWAY), then closed
  } finally {
    for (const c of clients) c.destroy();
    await h.close();
  }
});
