/**
 * http-01 validation (RFC 8555 section 8.3, RFC 8738 section 3 for IP identifiers): GET
 * `http://<name>:<httpPort>/.well-known/acme-challenge/<token>` must answer 200 with the key
 * authorization (trailing whitespace ignored). The CA connects to the address it resolved itself
 * (the configured resolvers, IPv6 first then IPv4, as Boulder does), or to `hostOverride`, with the
 * identifier in the Host header; redirects are followed as Boulder follows them: at most
 * {@link MAX_HTTP01_REDIRECTS}, http or https only, ports 80, 443 or the configured one, HTTPS
 * certificates not checked (the name is what is being proven, not the certificate). One deadline
 * covers lookups, connections, redirects and the body, and at most {@link MAX_HTTP01_BODY_BYTES} are read.
 *
 * Not sdk/fetch-bytes.ts: that fetcher resolves through the system, follows no redirects and
 * checks certificates, while validation must choose the address, the Host header and SNI itself;
 * and `ca` does not import `sdk` (docs/ARCHITECTURE.md).
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { MutualError } from '../../core/errors.ts';
import type { AcmeIdentifier } from './acme-api.ts';
import { createChallengeResolver, type ChallengeResolver } from './challenge-resolver.ts';
import { printable } from './printable.ts';
import { MAX_HTTP01_BODY_BYTES, MAX_HTTP01_REDIRECTS, type ValidationOptions } from './validation-options.ts';

/** Statuses followed as redirects (RFC 9110 section 15.4). */
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** A token is base64url (RFC 8555 section 8.1); anything else would change the URL's path. */
const TOKEN = /^[A-Za-z0-9_-]+$/;
/** Trailing whitespace a server may add to the body (RFC 8555 section 8.3 "SHOULD ignore"; Boulder's cutset). */
const TRAILING_WHITESPACE = /[ \t\r\n]+$/;
/** Identifies the CA's validation requests in the challenged server's logs. */
const USER_AGENT = 'mutual-acme-validator';

/** One answer to one GET. */
interface Answer {
  status: number;
  location?: string;
  /** The body, at most MAX_HTTP01_BODY_BYTES (not read for redirects). */
  body: Buffer;
  tooLarge: boolean;
  /** The address connected to, and how it was found. */
  from: string;
}

/**
 * Validates an http-01 challenge; resolves when the host served the key authorization. Throws
 * ACME_MALFORMED for a wildcard (RFC 8555 section 7.1.3), ACME_DNS when the name does not
 * resolve, ACME_CONNECTION when no connection or no complete answer came in time or a redirect is
 * refused, ACME_INCORRECT_RESPONSE for another status or body.
 */
export async function validateHttp01(identifier: AcmeIdentifier, token: string, keyAuthorization: string, o: ValidationOptions): Promise<void> {
  if (identifier.value.startsWith('*.')) throw new MutualError('ACME_MALFORMED', { detail: `http-01 cannot validate the wildcard ${identifier.value} (RFC 8555 section 7.1.3); use dns-01` });
  if (identifier.type === 'ip' ? !net.isIP(identifier.value) : net.isIP(identifier.value) !== 0) throw new MutualError('ACME_MALFORMED', { detail: `${identifier.value} is not a ${identifier.type} identifier` });
  if (!TOKEN.test(token)) throw new TypeError('an http-01 token is base64url');
  const signal = AbortSignal.timeout(o.timeoutMs);
  const resolver = createChallengeResolver(o, signal);
  const host = net.isIPv6(identifier.value) ? `[${identifier.value}]` : identifier.value;
  let url = new URL(`http://${host}:${o.httpPort}/.well-known/acme-challenge/${token}`);
  const visited = new Set<string>();
  for (let redirects = 0; ; redirects++) {
    visited.add(url.href);
    const answer = await get(url, resolver, o, signal);
    const fetched = `GET ${url.href} (${answer.from})`;
    if (REDIRECT_STATUSES.has(answer.status)) {
      const next = redirectTarget(url, answer, o, fetched);
      if (visited.has(next.href)) throw new MutualError('ACME_CONNECTION', { detail: `${fetched}: redirect loop back to ${next.href}` });
      if (redirects >= MAX_HTTP01_REDIRECTS) throw new MutualError('ACME_CONNECTION', { detail: `${fetched}: more than ${MAX_HTTP01_REDIRECTS} redirects` });
      url = next;
      continue;
    }
    if (answer.tooLarge) throw new MutualError('ACME_INCORRECT_RESPONSE', { detail: `${fetched}: answered ${answer.status} with a body over ${MAX_HTTP01_BODY_BYTES} bytes, starting ${printable(answer.body)}; expected the key authorization ${JSON.stringify(keyAuthorization)}` });
    const body = answer.body.toString('utf8').replace(TRAILING_WHITESPACE, '');
    if (answer.status === 200 && body === keyAuthorization) return;
    const seen = answer.status === 200 ? `the body ${printable(body)}` : `status ${answer.status}${body ? ` and the body ${printable(body)}` : ''}`;
    throw new MutualError('ACME_INCORRECT_RESPONSE', { detail: `${fetched}: expected status 200 and the key authorization ${JSON.stringify(keyAuthorization)}, got ${seen}` });
  }
}

/** The URL a redirect leads to, if Boulder's rules allow it (else ACME_CONNECTION). */
function redirectTarget(from: URL, answer: Answer, o: ValidationOptions, fetched: string): URL {
  const refuse = (why: string): never => {
    throw new MutualError('ACME_CONNECTION', { detail: `${fetched}: redirect (${answer.status}) ${why}` });
  };
  if (answer.location === undefined) refuse('without a Location header');
  let next: URL;
  try {
    next = new URL(answer.location!, from);
  } catch {
    return refuse(`to an invalid URL ${printable(answer.location!)}`);
  }
  next.hash = '';
  if (next.protocol !== 'http:' && next.protocol !== 'https:') refuse(`to ${printable(next.href)}: only http and https are followed`);
  if (next.username || next.password) refuse(`to ${printable(next.href)}: URLs with credentials are not followed`);
  const port = next.port ? Number(next.port) : next.protocol === 'https:' ? 443 : 80;
  if (port !== 80 && port !== 443 && port !== o.httpPort) refuse(`to ${printable(next.href)}: only ports 80, 443${o.httpPort !== 80 ? ` and ${o.httpPort}` : ''} are followed`);
  return next;
}

/** One GET, to the first address that accepts a connection (IPv6, then IPv4). */
async function get(url: URL, resolver: ChallengeResolver, o: ValidationOptions, signal: AbortSignal): Promise<Answer> {
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const targets = await resolver.connectTargets(hostname);
  for (let i = 0; ; i++) {
    const from = `address ${targets.addresses[i]}: ${targets.how}`;
    try {
      return await request(url, targets.addresses[i], hostname, o, signal, from);
    } catch (e) {
      if (!(e instanceof MutualError && e.fields.connectFailed === true) || i + 1 >= targets.addresses.length) throw e;
    }
  }
}

/** Sends one GET to `address` and reads the answer: a redirect's head, or at most MAX_HTTP01_BODY_BYTES of body. */
function request(url: URL, address: string, hostname: string, o: ValidationOptions, signal: AbortSignal, from: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const what = `GET ${url.href} (${from})`;
    let connected = false;
    let settled = false;
    const finish = (e: Error | undefined, answer?: Answer) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      req.destroy();
      if (e) reject(e);
      else resolve(answer!);
    };
    const onAbort = () => finish(new MutualError('ACME_CONNECTION', { detail: `${what}: no complete answer within the validation's ${o.timeoutMs} ms` }));
    const options: https.RequestOptions = {
      host: address,
      port: url.port || (url.protocol === 'https:' ? 443 : 80),
      path: url.pathname + url.search,
      method: 'GET',
      headers: { host: url.host, 'user-agent': USER_AGENT, accept: '*/*', connection: 'close' },
      agent: false,
    };
    const req = url.protocol === 'https:'
      ? https.request({ ...options, servername: net.isIP(hostname) ? '' : hostname, rejectUnauthorized: false, minVersion: 'TLSv1.2' })
      : http.request(options);
    req.on('socket', (s) => s.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => (connected = true)));
    req.on('error', (e: NodeJS.ErrnoException) => {
      const why = connected ? `the connection failed (${e.code ?? e.message})` : `could not connect (${e.code ?? e.message})`;
      finish(new MutualError('ACME_CONNECTION', { detail: `${what}: ${why}`, connectFailed: !connected }, { cause: e }));
    });
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (REDIRECT_STATUSES.has(status)) {
        finish(undefined, { status, location, body: Buffer.alloc(0), tooLarge: false, from });
        return;
      }
      const parts: Buffer[] = [];
      let n = 0;
      res.on('data', (chunk: Buffer) => {
        const room = MAX_HTTP01_BODY_BYTES - n;
        parts.push(chunk.subarray(0, Math.max(0, room)));
        n += chunk.length;
        if (n > MAX_HTTP01_BODY_BYTES) finish(undefined, { status, body: Buffer.concat(parts), tooLarge: true, from });
      });
      res.on('end', () => finish(undefined, { status, body: Buffer.concat(parts), tooLarge: false, from }));
      res.on('error', (e) => finish(new MutualError('ACME_CONNECTION', { detail: `${what}: the answer broke off (${e.message})` }, { cause: e })));
    });
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    req.end();
  });
}
