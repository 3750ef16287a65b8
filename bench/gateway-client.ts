/**
 * A tiny mTLS load generator for bench/gateway.ts (wrk, ab and h2load cannot present a client
 * certificate). Runs as its own process and measures its own CPU, so the report can say how much of
 * the two shared cores the load itself took.
 *
 *   node bench/gateway-client.ts '{"mode":"handshake","port":8443,"concurrency":8,"seconds":15,...}'
 *
 * Modes: `handshake` opens a new TLS 1.3 connection for every request (`Connection: close`, no
 * session resumption: a full mTLS handshake each time); `keepalive` keeps `concurrency`
 * connections and sends requests one after another on each. Prints one JSON line of results.
 */
import tls from 'node:tls';

/** What the parent asks for. */
export interface LoadOptions {
  mode: 'handshake' | 'keepalive';
  host?: string;
  port: number;
  path?: string;
  concurrency: number;
  seconds: number;
  /** PEM: trust anchors, client certificate chain, client key. */
  ca: string;
  cert: string;
  key: string;
  servername?: string;
}

/** What the client reports. */
export interface LoadResult {
  requests: number;
  errors: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU seconds this client used (user + system). */
  clientCpuSeconds: number;
  firstError?: string;
}

const REQUEST_CLOSE = (path: string) => Buffer.from(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
const REQUEST_KEEP = (path: string) => Buffer.from(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);

/** Reads one HTTP/1.1 response with Content-Length from a socket's chunks; returns the leftover. */
class ResponseReader {
  #buf: Buffer = Buffer.alloc(0);
  #need = -1;
  status = 0;

  /** Feeds bytes; returns true once a whole response is in. */
  push(chunk: Buffer): boolean {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
    if (this.#need < 0) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end < 0) return false;
      const head = this.#buf.toString('latin1', 0, end);
      this.status = Number(head.slice(9, 12));
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      this.#need = end + 4 + (m ? Number(m[1]) : 0);
    }
    if (this.#buf.length < this.#need) return false;
    this.#buf = this.#buf.subarray(this.#need);
    this.#need = -1;
    return true;
  }
}

/** Runs the load and resolves with the figures. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const fail = (e: unknown) => {
    errors++;
    firstError ??= e instanceof Error ? e.message : String(e);
  };
  const path = o.path ?? '/';
  const connectOptions: tls.ConnectionOptions = {
    host: o.host ?? '127.0.0.1', port: o.port, ca: o.ca, cert: o.cert, key: o.key, servername: o.servername ?? 'localhost',
    minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'],
    // The same key exchange with every server: Node's OpenSSL 3.5 would otherwise pick the hybrid
    // X25519MLKEM768 with a Node server and X25519 with Debian's nginx (OpenSSL 3.0).
    ecdhCurve: 'X25519',
  };
  // One SecureContext for all connections: the client's per-connection cost is then the handshake.
  const secureContext = tls.createSecureContext(connectOptions);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + o.seconds * 1000;

  const handshakeLoop = async () => {
    const req = REQUEST_CLOSE(path);
    while (performance.now() < deadline) {
      const start = performance.now();
      await new Promise<void>((resolve) => {
        const reader = new ResponseReader();
        let done = false;
        const s = tls.connect({ ...connectOptions, secureContext }, () => s.write(req));
        s.on('data', (c: Buffer) => {
          if (!done && reader.push(c)) {
            done = true;
            if (reader.status === 200) latencies.push(performance.now() - start);
            else fail(new Error(`HTTP ${reader.status}`));
            s.destroy();
            resolve();
          }
        });
        s.on('error', (e) => {
          if (!done) {
            done = true;
            fail(e);
            resolve();
          }
        });
        s.on('close', () => {
          if (!done) {
            done = true;
            fail(new Error('closed before a response'));
            resolve();
          }
        });
      });
    }
  };

  const keepAliveLoop = async () => {
    const req = REQUEST_KEEP(path);
    while (performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        const reader = new ResponseReader();
        let start = 0;
        let finished = false;
        const end = (e?: unknown) => {
          if (finished) return;
          finished = true;
          if (e) fail(e);
          s.destroy();
          resolve();
        };
        const s = tls.connect({ ...connectOptions, secureContext }, () => {
          start = performance.now();
          s.write(req);
        });
        s.on('data', (c: Buffer) => {
          let chunk: Buffer = c;
          while (reader.push(chunk)) {
            chunk = Buffer.alloc(0);
            const now = performance.now();
            if (reader.status !== 200) return end(new Error(`HTTP ${reader.status}`));
            latencies.push(now - start);
            if (now >= deadline) return end();
            start = now;
            s.write(req);
          }
        });
        s.on('error', (e) => end(e));
        s.on('close', () => end(performance.now() < deadline ? new Error('connection closed') : undefined));
      });
    }
  };

  await Promise.all(Array.from({ length: o.concurrency }, () => (o.mode === 'handshake' ? handshakeLoop() : keepAliveLoop())));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] : NaN);
  return {
    requests: latencies.length, errors, seconds, perSecond: latencies.length / seconds, p50Ms: pct(0.5), p99Ms: pct(0.99),
    clientCpuSeconds: (cpu.user + cpu.system) / 1e6, ...(firstError ? { firstError } : {}),
  };
}

if (import.meta.main) {
  const o = JSON.parse(process.argv[2] ?? '{}') as LoadOptions;
  runLoad(o).then((r) => process.stdout.write(JSON.stringify(r) + '\n'), (e) => {
    process.stderr.write(String(e) + '\n');
    process.exit(1);
  });
}
