/**
 * An ACME server under test, as the interop matrix (matrix.ts) sees it: pebble (pebble.ts) or
 * `mutual serve` (interop-mutual.test.ts). The matrix runs the same clients with the same options
 * against either, so a difference between the two is the server's or the client's, never the
 * harness's.
 */
import type { TestDns } from './test-dns.ts';

/** Where a target's validator must look for the clients' challenge responders. */
export interface TargetOptions {
  /** The port the http-01 validator connects to (the client's or the test's responder listens there). */
  httpPort: number;
  /** The port the tls-alpn-01 validator connects to. */
  tlsPort: number;
  /** The DNS the validator resolves names and reads TXT records from. */
  dns: TestDns;
  /** Whether new accounts must carry an external account binding (RFC 8555 section 7.3.4). */
  eab: boolean;
}

/** EAB credentials: the key id and the base64url HMAC key. */
export interface EabCredentials {
  kid: string;
  hmac: string;
}

/** A running ACME server. */
export interface AcmeTarget {
  name: 'pebble' | 'mutual';
  /** The ACME directory URL. */
  directoryUrl: string;
  /** PEM file of the CA a client trusts for the server's HTTPS. */
  tlsCaFile: string;
  /** PEM file of the root the issued certificates chain to. */
  rootFile: string;
  /** Fresh EAB credentials for one account, on a target started with `eab: true`. */
  eab(names: string[]): Promise<EabCredentials>;
  /**
   * What the server now says of the certificate (leaf PEM file, its issuer in `issuerFile`):
   * good, revoked, or anything else (unknown, no answer), with what it said.
   */
  status(certFile: string, issuerFile: string): Promise<{ status: 'good' | 'revoked' | 'other'; detail: string }>;
  /** The tail of the server's own output, for failure messages. */
  output(): string;
  close(): Promise<void>;
}

/** Starts a target for one matrix case. */
export type StartTarget = (o: TargetOptions) => Promise<AcmeTarget>;
