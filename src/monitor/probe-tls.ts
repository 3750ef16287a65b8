/**
 * One TLS connection, recorded: how far it got (TCP, handshake), the chain exactly as the server
 * sent it, the alert that ended it, and how the server treated us after the handshake (in TLS 1.3
 * a server refuses a client certificate only after the client has finished its handshake, so the
 * verdict is a session ticket or data, or an alert). Bounded by a timeout at every stage; never
 * throws for anything the peer does.
 *
 * The chain is captured with a trust store holding one unrelated certificate: Node's
 * getPeerCertificate(true) completes the chain from the trust store (crypto_common.cc,
 * GetLastIssuedCert), which would hide a missing intermediate. Verification is then done by
 * analyzeChain, with the real trust anchors.
 */
import net from 'node:net';
import tls from 'node:tls';

/** A self-signed certificate whose key was thrown away: as a trust store, it trusts nothing. */
export const PROBE_ANCHOR_PEM = `-----BEGIN CERTIFICATE-----
MIIBpTCCAUugAwIBAgIUcJGgjKyr0R0Vz5gVGtw2mOJuHm0wCgYIKoZIzj0EAwIw
JzElMCMGA1UEAwwcbXV0dWFsIHByb2JlOiB0cnVzdHMgbm90aGluZzAgFw0yNjEx
MjUyMjQ3NTdaGA8yMTI2MTEwMTIyNDc1N1owJzElMCMGA1UEAwwcbXV0dWFsIHBy
b2JlOiB0cnVzdHMgbm90aGluZzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMsf
AwcZ+aK8IPT9vANu8sTbZE/d2/Mv/C9IDJ2WTnPzSOZLFVFTYs8jcPjdr2c4vjys
jE6wYfF95CC10OhtvLijUzBRMB0GA1UdDgQWBBSsYlrhaKFybnvkKm6F6NqzJm5/
fzAfBgNVHSMEGDAWgBSsYlrhaKFybnvkKm6F6NqzJm5/fzAPBgNVHRMBAf8EBTAD
AQH/MAoGCCqGSM49BAMCA0gAMEUCIQC4nu8NSuHkKDXrqMs0JZztOIxO990vb5Ft
mZv655zv7gIgYXvYK48dAyKzYN8gD0M5yx7m57lJ/m4Gil3dbp7q7TI=
-----END CERTIFICATE-----
`;

/** Most certificates taken from a peer's chain (RFC 8446 4.4.2 sets no bound; real chains have 2-4). */
export const MAX_PEER_CHAIN = 10;
/** Most bytes of an HTTP answer kept. */
export const MAX_HTTP_BYTES = 16 * 1024;
/** Default wait, after the handshake, for the server's verdict on our client certificate. */
export const DEFAULT_SETTLE_MS = 750;

/** Options of {@link probeTls}. */
export interface TlsProbeOptions {
  host: string;
  port: number;
  /** SNI (not sent for IP addresses, RFC 6066 3). */
  servername?: string;
  /** Client certificate chain and key (PEM). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Bound on connect + handshake, and on the HTTP answer. */
  timeoutMs: number;
  /** Wait after the handshake for a session ticket, data or an alert (default {@link DEFAULT_SETTLE_MS}). */
  settleMs?: number;
  /** Send `GET / HTTP/1.1` and read the answer: nginx answers a refused client certificate with 400, not an alert. */
  http?: boolean;
}

/** How far a connection got. */
export type ProbeStage = 'tcp' | 'handshake' | 'after-handshake';

/** What {@link probeTls} saw. */
export interface TlsProbeResult {
  host: string;
  port: number;
  servername?: string;
  /** True once TCP connected; true once the handshake finished. */
  connected: boolean;
  handshake: boolean;
  tcpMs?: number;
  handshakeMs?: number;
  totalMs: number;
  protocol?: string;
  cipher?: string;
  /** DER, leaf first, as the server sent them (linked by issuer). */
  sentChain: Buffer[];
  /** What ended the connection, if not us. */
  error?: { code: string; message: string; stage: ProbeStage; /** TLS alert name, e.g. certificate_expired. */ alert?: string; timeout?: boolean };
  /** After the handshake: `accepted` (ticket or data came), `refused` (an alert or a reset), or `unknown`. */
  verdict: 'accepted' | 'refused' | 'unknown';
  /** The HTTP answer, when asked for. */
  http?: { status: number; reason: string; body: string };
}

/** The TLS alert name in an OpenSSL error code (ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED -> certificate_expired). */
export function alertName(code: string | undefined): string | undefined {
  const m = /_ALERT_([A-Z_]+)$/.exec(code ?? '');
  return m ? m[1].toLowerCase() : undefined;
}

/** The chain in getPeerCertificate(true), leaf first, as DER. */
export function peerChain(cert: tls.DetailedPeerCertificate | undefined): Buffer[] {
  const out: Buffer[] = [];
  const seen = new Set<string>();
  for (let c = cert; c && c.raw && out.length < MAX_PEER_CHAIN; c = c.issuerCertificate) {
    if (seen.has(c.fingerprint256)) break;
    seen.add(c.fingerprint256);
    out.push(Buffer.from(c.raw));
  }
  return out;
}

/** Connects once and records what happened. */
export function probeTls(o: TlsProbeOptions): Promise<TlsProbeResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const ms = () => Math.round((performance.now() - t0) * 10) / 10;
    const res: TlsProbeResult = { host: o.host, port: o.port, servername: o.servername, connected: false, handshake: false, totalMs: 0, sentChain: [], verdict: 'unknown' };
    let finished = false;
    const chunks: Buffer[] = [];
    let httpBytes = 0;
    const stage = (): ProbeStage => (res.handshake ? 'after-handshake' : res.connected ? 'handshake' : 'tcp');
    const sni = o.servername && net.isIP(o.servername) === 0 ? o.servername : undefined;
    const socket = tls.connect({
      host: o.host, port: o.port, servername: sni, ca: [PROBE_ANCHOR_PEM], rejectUnauthorized: false, cert: o.cert, key: o.key,
      // A session must not be resumed: resumption skips the certificates.
      session: undefined,
    });
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (settle) clearTimeout(settle);
      if (o.http && chunks.length) res.http = parseHttp(Buffer.concat(chunks));
      res.totalMs = ms();
      socket.destroy();
      resolve(res);
    };
    let settle: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      const s = stage();
      res.error ??= { code: 'ETIMEDOUT', stage: s, timeout: true, message: s === 'tcp' ? `no TCP connection within ${o.timeoutMs} ms` : `the TLS handshake did not finish within ${o.timeoutMs} ms` };
      finish();
    }, o.timeoutMs);
    socket.once('connect', () => {
      res.connected = true;
      res.tcpMs = ms();
    });
    socket.once('secureConnect', () => {
      res.connected = true;
      res.handshake = true;
      res.handshakeMs = ms();
      res.protocol = socket.getProtocol() ?? undefined;
      res.cipher = socket.getCipher()?.standardName;
      res.sentChain = peerChain(socket.getPeerCertificate(true));
      clearTimeout(timer);
      if (o.http) {
        const host = o.servername ?? o.host;
        socket.write(`GET / HTTP/1.1\r\nHost: ${net.isIPv6(host) ? `[${host}]` : host}\r\nUser-Agent: mutual-doctor\r\nAccept: */*\r\nConnection: close\r\n\r\n`);
      }
      settle = setTimeout(finish, o.http ? o.timeoutMs : (o.settleMs ?? DEFAULT_SETTLE_MS));
    });
    socket.on('session', () => {
      res.verdict = 'accepted';
      if (!o.http) finish();
    });
    socket.on('data', (d: Buffer) => {
      res.verdict = 'accepted';
      if (!o.http) return finish();
      if (httpBytes < MAX_HTTP_BYTES) chunks.push(d.subarray(0, MAX_HTTP_BYTES - httpBytes));
      httpBytes += d.length;
      if (httpBytes >= MAX_HTTP_BYTES) finish();
    });
    // A server that closes right after the handshake, without a ticket or a byte, refused us:
    // Node's TLS server checks the client's chain after the handshake and just closes.
    const onClose = (): void => {
      if (res.handshake && res.verdict === 'unknown' && !finished) {
        res.verdict = 'refused';
        res.error ??= { code: 'ECONNCLOSED', stage: 'after-handshake', message: 'the server closed the connection right after the handshake, without a word' };
      }
      finish();
    };
    socket.on('end', onClose);
    socket.on('close', onClose);
    socket.on('error', (e: NodeJS.ErrnoException) => {
      const s = stage();
      if (s === 'after-handshake' && res.verdict !== 'accepted') res.verdict = 'refused';
      // An error after an HTTP answer (a reset on close) changes nothing.
      if (!(o.http && chunks.length)) res.error = { code: e.code ?? 'ERR', message: e.message.split('\n')[0], stage: s, alert: alertName(e.code) };
      finish();
    });
  });
}

function parseHttp(buf: Buffer): { status: number; reason: string; body: string } | undefined {
  const text = buf.toString('latin1');
  const m = /^HTTP\/\d(?:\.\d)? (\d{3}) ?([^\r\n]*)\r?\n/.exec(text);
  if (!m) return undefined;
  const split = text.indexOf('\r\n\r\n');
  const body = split >= 0 ? text.slice(split + 4) : '';
  return { status: Number(m[1]), reason: m[2], body: body.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 300) };
}
