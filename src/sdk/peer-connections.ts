/**
 * The connections {@link PeerVerifier} (sdk/verifier.ts) has verified: the outcome remembered on
 * each TLS socket, the sockets of each serial (to close them once the certificate shows up
 * revoked), and what Node tells of a refused chain.
 */
import diagnostics from 'node:diagnostics_channel';
import type { TLSSocket } from 'node:tls';
import { MutualError } from '../core/errors.ts';
import { MAX_EXPLAINED_CHAIN, type PeerIdentity } from './peer-path.ts';

const kState = Symbol('mutual.peer');
const closedChannel = diagnostics.channel('mutual:verifier:connection-closed');

/** A socket's verification outcome, and the trust generation it was reached under. */
export interface SocketState {
  /** The verifier that verified the socket. */
  owner: object;
  generation: number;
  result: PeerIdentity | MutualError | Promise<PeerIdentity>;
}

/** The outcome remembered on `socket`, if any. */
export function socketState(socket: TLSSocket): SocketState | undefined {
  return (socket as unknown as Record<symbol, SocketState | undefined>)[kState];
}

/** Remembers `state` on `socket`. */
export function setSocketState(socket: TLSSocket, state: SocketState): void {
  (socket as unknown as Record<symbol, SocketState>)[kState] = state;
}

/** The live connections of each verified serial, closed when that serial is revoked. */
export class ConnectionTracker {
  readonly #sockets = new Map<string, Set<TLSSocket>>();
  /** The identity of each tracked serial (its chain names the client CA, which its root may revoke). */
  readonly #ids = new Map<string, PeerIdentity>();

  /** Tracks `socket` as a connection of `id` until it closes. */
  track(socket: TLSSocket, id: PeerIdentity): void {
    let set = this.#sockets.get(id.serial);
    if (!set) this.#sockets.set(id.serial, (set = new Set()));
    this.#ids.set(id.serial, id);
    set.add(socket);
    socket.once('close', () => {
      set.delete(socket);
      if (set.size === 0 && this.#sockets.get(id.serial) === set) {
        this.#sockets.delete(id.serial);
        this.#ids.delete(id.serial);
      }
    });
  }

  /** Destroys the connections of every tracked serial `isRevoked` says is revoked (the leaf or its client CA). */
  closeRevoked(isRevoked: (serial: string, id: PeerIdentity | undefined) => boolean): void {
    if (this.#sockets.size === 0) return;
    for (const [serial, sockets] of this.#sockets) {
      if (!isRevoked(serial, this.#ids.get(serial))) continue;
      for (const s of sockets) {
        if (closedChannel.hasSubscribers) closedChannel.publish({ serial, remoteAddress: s.remoteAddress });
        try {
          s.destroy();
        } catch {
          // An HTTP/2 socket proxy refuses destroy(); its session ends with the real socket.
        }
      }
      this.#sockets.delete(serial);
      this.#ids.delete(serial);
    }
  }
}

/**
 * The issuers in the chain of a connection OpenSSL refused, leaf's issuer first: for a refused chain
 * Node reports the certificates the client sent, then what the trust store adds above them (for an
 * accepted one it shows only the latter). Read only on this rare path, to name the reason.
 */
export function refusedChainIssuers(socket: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  try {
    let c = socket.getPeerCertificate(true);
    while (c?.issuerCertificate && c.issuerCertificate !== c && c.issuerCertificate.fingerprint256 !== c.fingerprint256 && out.length < MAX_EXPLAINED_CHAIN) {
      c = c.issuerCertificate;
      out.push(c.raw);
    }
  } catch {
    // No chain to explain with: OpenSSL's reason is given.
  }
  return out;
}

/**
 * The intermediates of a verified connection's path for RFC 9440 `Client-Cert-Chain` (leaf's issuer
 * first): the client CA that signed the leaf, as {@link PeerIdentity.chain}. Empty when the
 * connection's peer is not (yet) verified. Node cannot tell which intermediates a client sent once
 * OpenSSL accepted the chain (`getPeerCertificate(true)` then shows only what the trust store holds),
 * so the verified path is what is forwarded: for an accepted chain it is what the client presented.
 */
export function verifiedChain(socket: TLSSocket): readonly Buffer[] {
  const r = socketState(socket)?.result;
  return r && !(r instanceof MutualError) && !(r instanceof Promise) ? r.chain : [];
}
