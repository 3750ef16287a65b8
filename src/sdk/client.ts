/**
 * mTLS clients: an `undici` dispatcher (and a `fetch` bound to it) and an `https.Agent`. Both
 * present the identity's client certificate and verify the server against the server CA: OpenSSL
 * checks the chain and host name, then the server certificate must carry EKU serverAuth (a
 * certificate with no EKU passes OpenSSL's purpose check) and, when `serverCas` is given, be
 * issued by one of them. Rotation never drops a request in flight: new requests use a new
 * pool; the old one is closed after its requests finish.
 */
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { Agent, Dispatcher, fetch as undiciFetch } from 'undici';
import { parseCertificate } from '../core/certificate.ts';
import { MutualError } from '../core/errors.ts';
import { OID } from '../core/oids.ts';
import type { IdentitySource } from './identity-source.ts';
import { readCertificates } from './verifier.ts';

/** Options shared by the clients. */
export interface MtlsClientOptions {
  /** The client's identity (a client certificate from the client CA). */
  identity: IdentitySource;
  /** Trust anchors for the server's chain (PEM): root (+ server CA). Default: the identity's `ca`. */
  ca?: string;
  /** Server CA certificate(s) (PEM): when given, the server's leaf must be issued by one of them. */
  serverCas?: string | string[];
  /** TLS server name to check, when it differs from the URL's host. */
  servername?: string;
}

/**
 * A `checkServerIdentity` that adds mutual's boundary to Node's host name check: EKU serverAuth
 * present, and the issuer one of `serverCas` (AKI + issuer name) when given.
 */
export function serverIdentityChecker(serverCas?: string | string[]): (host: string, cert: tls.PeerCertificate) => Error | undefined {
  const cas = serverCas ? readCertificates(serverCas).map((d) => parseCertificate(d)) : [];
  return (host, cert) => {
    const err = tls.checkServerIdentity(host, cert);
    if (err) return err;
    const info = parseCertificate(cert.raw);
    if (!info.eku.includes(OID.serverAuth)) {
      return new MutualError('CERT_WRONG_EKU', { serial: info.serial, detail: `the server certificate of ${host} ${info.eku.length ? 'lacks' : 'has no EKU, so lacks'} serverAuth (serial ${info.serial})` });
    }
    if (cas.length && !cas.some((ca) => ca.subjectName.equals(info.issuerName) && (!info.authorityKeyId || !ca.subjectKeyId || info.authorityKeyId.equals(ca.subjectKeyId)))) {
      return new MutualError('CERT_ISSUER_NOT_ALLOWED', { serial: info.serial, detail: `the server certificate of ${host} is issued by "${info.issuer}", not by a trusted server CA` });
    }
    return undefined;
  };
}

function tlsFor(o: MtlsClientOptions, check: ReturnType<typeof serverIdentityChecker>): tls.ConnectionOptions {
  const cur = o.identity.current;
  const ca = o.ca ?? cur.ca;
  if (!ca) throw new TypeError('an mTLS client needs `ca` (the root, PEM) or an identity with a trust bundle');
  return { cert: cur.cert, key: cur.key, ca, checkServerIdentity: check, minVersion: 'TLSv1.2', ...(o.servername ? { servername: o.servername } : {}) };
}

/** Options of {@link createDispatcher}. */
export interface DispatcherOptions extends MtlsClientOptions {
  /** Options for each undici Agent (connections per origin, timeouts...). */
  agentOptions?: Omit<Agent.Options, 'connect'>;
}

/**
 * An undici dispatcher presenting the identity: pass it as `dispatcher` to undici's `request`/
 * `fetch`, or use {@link createFetch}. On 'rotated' a new Agent takes new requests and the old
 * one is closed gracefully (its requests in flight complete).
 */
export class MtlsDispatcher extends Dispatcher {
  #agent: Agent;
  readonly #make: () => Agent;
  readonly #onRotated: () => void;
  readonly #identity: IdentitySource;
  readonly #retired = new Set<Promise<void>>();

  constructor(o: DispatcherOptions) {
    super();
    const check = serverIdentityChecker(o.serverCas);
    this.#identity = o.identity;
    this.#make = () => new Agent({ ...o.agentOptions, connect: tlsFor(o, check) });
    this.#agent = this.#make();
    this.#onRotated = () => this.rotate();
    o.identity.on('rotated', this.#onRotated);
  }

  /** Switches new requests to a pool with the current identity; the old pool drains and closes. */
  rotate(): void {
    const old = this.#agent;
    this.#agent = this.#make();
    const p = old.close().catch(() => {}).finally(() => this.#retired.delete(p));
    this.#retired.add(p);
  }

  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.#agent.dispatch(options, handler);
  }

  close(): Promise<void>;
  close(callback: () => void): void;
  close(callback?: () => void): Promise<void> | void {
    this.#identity.off('rotated', this.#onRotated);
    const p = Promise.all([this.#agent.close(), ...this.#retired]).then(() => undefined);
    if (callback) void p.then(callback);
    else return p;
  }

  destroy(): Promise<void>;
  destroy(err: Error | null): Promise<void>;
  destroy(callback: () => void): void;
  destroy(err: Error | null, callback: () => void): void;
  destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    this.#identity.off('rotated', this.#onRotated);
    const err = typeof a === 'function' ? null : a ?? null;
    const cb = typeof a === 'function' ? a : b;
    const p = this.#agent.destroy(err);
    if (cb) void p.then(cb);
    else return p;
  }
}

/** Makes an {@link MtlsDispatcher}. */
export function createDispatcher(o: DispatcherOptions): MtlsDispatcher {
  return new MtlsDispatcher(o);
}

/** A `fetch` (undici's) that goes through an {@link MtlsDispatcher}. */
export type MtlsFetch = ((input: Parameters<typeof undiciFetch>[0], init?: Parameters<typeof undiciFetch>[1]) => ReturnType<typeof undiciFetch>) & { dispatcher: MtlsDispatcher };

/** A `fetch` presenting the identity; `fetch.dispatcher.close()` releases its connections. */
export function createFetch(o: DispatcherOptions): MtlsFetch {
  const dispatcher = createDispatcher(o);
  const f = ((input, init) => undiciFetch(input, { ...init, dispatcher })) as MtlsFetch;
  Object.defineProperty(f, 'dispatcher', { value: dispatcher });
  return f;
}

const kGeneration = Symbol('mutual.generation');

/**
 * An `https.Agent` presenting the identity, for `https.request` and libraries built on it. After
 * a rotation, new connections use the new certificate; sockets of the old one finish their
 * request and are then closed instead of going back to the pool.
 */
export class MtlsHttpsAgent extends https.Agent {
  readonly #o: MtlsClientOptions;
  readonly #check: ReturnType<typeof serverIdentityChecker>;
  #generation = 0;
  readonly #onRotated: () => void;

  constructor(o: MtlsClientOptions & { agentOptions?: https.AgentOptions }) {
    super({ keepAlive: true, ...o.agentOptions });
    this.#o = o;
    this.#check = serverIdentityChecker(o.serverCas);
    this.#onRotated = () => {
      this.#generation++;
      for (const list of Object.values(this.freeSockets)) for (const s of list ?? []) s.destroy();
    };
    o.identity.on('rotated', this.#onRotated);
  }

  // The returned socket is used by http.Agent as is (it calls its callback itself when we return one).
  createConnection(options: tls.ConnectionOptions): Duplex {
    const host = options.servername ?? options.host;
    const servername = this.#o.servername ?? (host && !net.isIP(host) ? host : undefined);
    const socket = tls.connect({ ...options, ...tlsFor(this.#o, this.#check), ...(servername ? { servername } : {}) });
    (socket as unknown as Record<symbol, number>)[kGeneration] = this.#generation;
    return socket;
  }

  keepSocketAlive(socket: Duplex): boolean {
    if ((socket as unknown as Record<symbol, number>)[kGeneration] !== this.#generation) return false;
    // @types/node declares void; Node's implementation returns whether the socket was kept.
    return (super.keepSocketAlive as unknown as (s: Duplex) => boolean)(socket);
  }

  destroy(): void {
    this.#o.identity.off('rotated', this.#onRotated);
    super.destroy();
  }
}
