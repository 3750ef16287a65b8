/**
 * tls-alpn-01 validation (RFC 8737; RFC 8738 section 6 for IP identifiers): a TLS handshake to
 * `<name>:<tlsAlpnPort>` with SNI the name (for an IP, its reverse-DNS name) offering only the
 * `acme-tls/1` protocol. The server must choose that protocol and present a self-signed
 * certificate whose subjectAltName holds exactly the identifier and whose critical acmeIdentifier
 * extension holds the SHA-256 of the key authorization. No chain is verified: the certificate
 * proves control of the name by the digest, not by who signed it. Read with mutual's DER reader
 * (core/certificate.ts); the self-signature is checked by OpenSSL, as every signature is.
 */
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { parseCertificate, type CertificateInfo } from '../../core/certificate.ts';
import { MutualError } from '../../core/errors.ts';
import { OID } from '../../core/oids.ts';
import type { AcmeIdentifier } from './acme-api.ts';
import { createChallengeResolver } from './challenge-resolver.ts';
import { printable } from './printable.ts';
import type { ValidationOptions } from './validation-options.ts';

/** The ALPN protocol of tls-alpn-01 (RFC 8737 section 6.2). */
export const ACME_TLS_ALPN_PROTOCOL = 'acme-tls/1';

/** The reverse-DNS name of an IP address (RFC 8738 section 6: the SNI of an IP's tls-alpn-01). */
export function reverseDnsName(ip: string): string {
  if (net.isIPv4(ip)) return `${ip.split('.').reverse().join('.')}.in-addr.arpa`;
  const groups = expandIpv6(ip);
  return `${[...groups.join('')].reverse().join('.')}.ip6.arpa`;
}

function expandIpv6(ip: string): string[] {
  // A trailing dotted IPv4 part (::ffff:192.0.2.1) becomes two groups first.
  const v4 = ip.match(/^(.*:)(\d+\.\d+\.\d+\.\d+)$/);
  const text = v4 ? v4[1] + Buffer.from(v4[2].split('.').map(Number)).toString('hex').replace(/^(.{4})/, '$1:') : ip;
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.padStart(4, '0').toLowerCase());
}

/**
 * Validates a tls-alpn-01 challenge; resolves when the host presented the right certificate.
 * Throws ACME_MALFORMED for a wildcard (RFC 8737 section 3), ACME_DNS when the name does not
 * resolve, ACME_CONNECTION when nothing accepts the connection, ACME_TLS when the handshake fails
 * or does not choose acme-tls/1 in time, ACME_INCORRECT_RESPONSE for a certificate that is not the
 * expected one.
 */
export async function validateTlsAlpn01(identifier: AcmeIdentifier, keyAuthorization: string, o: ValidationOptions): Promise<void> {
  if (identifier.value.startsWith('*.')) throw new MutualError('ACME_MALFORMED', { detail: `tls-alpn-01 cannot validate the wildcard ${identifier.value} (RFC 8737 section 3); use dns-01` });
  if (identifier.type === 'ip' ? !net.isIP(identifier.value) : net.isIP(identifier.value) !== 0) throw new MutualError('ACME_MALFORMED', { detail: `${identifier.value} is not a ${identifier.type} identifier` });
  const signal = AbortSignal.timeout(o.timeoutMs);
  const resolver = createChallengeResolver(o, signal);
  const servername = identifier.type === 'ip' ? reverseDnsName(identifier.value) : identifier.value;
  const targets = await resolver.connectTargets(identifier.value);
  for (let i = 0; ; i++) {
    const where = `${targets.addresses[i]}:${o.tlsAlpnPort} with SNI ${servername} (${targets.how})`;
    try {
      const der = await handshake(targets.addresses[i], servername, o, signal, where);
      checkCertificate(der, identifier, keyAuthorization, where);
      return;
    } catch (e) {
      if (!(e instanceof MutualError && e.fields.connectFailed === true) || i + 1 >= targets.addresses.length) throw e;
    }
  }
}

/** Connects, offers only acme-tls/1, and returns the DER of the certificate the server chose. */
function handshake(address: string, servername: string, o: ValidationOptions, signal: AbortSignal, where: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let connected = false;
    let settled = false;
    const finish = (e: Error | undefined, der?: Buffer) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      if (e) reject(e);
      else resolve(der!);
    };
    const onAbort = () => finish(new MutualError(connected ? 'ACME_TLS' : 'ACME_CONNECTION', { detail: `TLS to ${where}: no ${connected ? 'completed handshake' : 'connection'} within the validation's ${o.timeoutMs} ms` }));
    const socket = tls.connect({
      host: address,
      port: o.tlsAlpnPort,
      // SNI is never an IP literal (RFC 6066 section 3); an IP's is its reverse-DNS name (RFC 8738 section 6).
      servername,
      ALPNProtocols: [ACME_TLS_ALPN_PROTOCOL],
      // The certificate is self-signed by design: its digest is the proof, not its issuer (RFC 8737 section 3).
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    });
    socket.once('connect', () => (connected = true));
    socket.once('secureConnect', () => {
      if (socket.alpnProtocol !== ACME_TLS_ALPN_PROTOCOL) {
        finish(new MutualError('ACME_TLS', { detail: `TLS to ${where}: the server did not choose ALPN ${ACME_TLS_ALPN_PROTOCOL} (it chose ${socket.alpnProtocol ? printable(socket.alpnProtocol) : 'none'})` }));
        return;
      }
      const cert = socket.getPeerCertificate(false);
      if (!cert?.raw) finish(new MutualError('ACME_TLS', { detail: `TLS to ${where}: the server presented no certificate` }));
      else finish(undefined, cert.raw);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      const detail = connected ? `TLS to ${where}: the handshake failed (${e.code ?? e.message})` : `TLS to ${where}: could not connect (${e.code ?? e.message})`;
      finish(new MutualError(connected ? 'ACME_TLS' : 'ACME_CONNECTION', { detail, connectFailed: !connected }, { cause: e }));
    });
    socket.once('close', () => finish(new MutualError('ACME_TLS', { detail: `TLS to ${where}: the server closed the connection during the handshake` })));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Checks the challenge certificate (RFC 8737 section 3); ACME_INCORRECT_RESPONSE naming what differs. */
function checkCertificate(der: Buffer, identifier: AcmeIdentifier, keyAuthorization: string, where: string): void {
  const refuse = (why: string): never => {
    throw new MutualError('ACME_INCORRECT_RESPONSE', { detail: `TLS to ${where}: the certificate ${why}` });
  };
  let info: CertificateInfo;
  try {
    info = parseCertificate(der);
  } catch (e) {
    return refuse(`cannot be read (${e instanceof MutualError ? e.fields.detail ?? e.code : String(e)})`);
  }
  const names = [...info.names.dns.map((n) => `DNS:${n}`), ...info.names.ip.map((n) => `IP:${n}`), ...info.names.uri.map((n) => `URI:${n}`)];
  const expected = identifier.type === 'ip' ? `IP:${canonicalIp(identifier.value)}` : `DNS:${identifier.value.toLowerCase()}`;
  const seen = names.map((n) => (n.startsWith('DNS:') ? `DNS:${n.slice(4).toLowerCase()}` : n.startsWith('IP:') ? `IP:${canonicalIp(n.slice(3))}` : n));
  if (info.sanEntries !== 1 || seen.length !== 1 || seen[0] !== expected) {
    refuse(`must name exactly ${expected} in its subjectAltName, it names ${info.sanEntries ? `${info.sanEntries} entr${info.sanEntries === 1 ? 'y' : 'ies'}${names.length ? `: ${printable(names.join(', '))}` : ''}` : 'none'}`);
  }
  const digest = crypto.hash('sha256', keyAuthorization, 'buffer');
  if (!info.acmeIdentifier) refuse(`has no acmeIdentifier extension (${OID.acmeIdentifier})`);
  if (!info.criticalExtensions.includes(OID.acmeIdentifier)) refuse('has an acmeIdentifier extension not marked critical (RFC 8737 section 3)');
  if (!info.acmeIdentifier!.equals(digest)) refuse(`acmeIdentifier is ${info.acmeIdentifier!.toString('hex') || 'empty'}, expected the SHA-256 of the key authorization ${digest.toString('hex')}`);
  // Self-signed: issued by itself and signed with its own key (node:crypto, OpenSSL).
  let selfSigned = false;
  try {
    const x509 = new crypto.X509Certificate(der);
    selfSigned = info.issuerName.equals(info.subjectName) && x509.verify(x509.publicKey);
  } catch {
    // OpenSSL could not read it or its key: not a self-signature it can check.
  }
  if (!selfSigned) refuse(`is not self-signed (issuer ${printable(info.issuer)})`);
}

/** An IP address in one text form, so that ::1 and 0:0::1 compare equal. */
function canonicalIp(ip: string): string {
  return net.isIPv6(ip) ? expandIpv6(ip).join(':') : ip;
}
