/**
 * The test DNS for the ACME interop tests: answers A queries for every name with 127.0.0.1 (so a
 * validator reaches the client's challenge responder on loopback, never an AAAA ::1 it does not
 * listen on) and serves the TXT records a client's dns-01 hook sets.
 *
 * The hooks (clients.ts) set and clear records over HTTP, with pebble-challtestsrv's management API
 * (`POST /set-txt {"host","value"}`, `POST /clear-txt {"host"}`), so the same hook scripts work
 * whichever server answers the queries.
 */
import { spawn } from 'node:child_process';
import { freePort, waitForPort } from '../helpers/tools.ts';

/** A running test DNS server. */
export interface TestDns {
  /** The UDP/TCP port on 127.0.0.1 the DNS server answers on. */
  port: number;
  /** Base URL of the record API the hooks call (`/set-txt`, `/clear-txt`). */
  controlUrl: string;
  /** Makes `name` resolve to 127.0.0.1 (A only). */
  addHost(name: string): Promise<void>;
  /** Sets the TXT record of `host` (a name with or without the final dot). */
  setTxt(host: string, value: string): Promise<void>;
  close(): Promise<void>;
}

/** Posts one JSON body to the record API; throws on a non-2xx answer. */
async function post(url: string, body: object): Promise<void> {
  const r = await fetch(url, { method: 'POST', body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${url}: ${r.status} ${await r.text()}`);
}

/** A fully qualified name (final dot), as challtestsrv keys its records. */
export const fqdn = (name: string): string => (name.endsWith('.') ? name : `${name}.`);

/**
 * Starts pebble-challtestsrv with only its DNS server and management API (no challenge
 * responders: the clients bring their own), on free loopback ports. Every caller checks
 * `requireTool(t, 'pebble-challtestsrv', 'pebble')` first.
 */
export async function startChallTestSrv(): Promise<TestDns> {
  const port = await freePort();
  const mgmt = await freePort();
  const args = ['-dns01', `127.0.0.1:${port}`, '-management', `127.0.0.1:${mgmt}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-defaultIPv4', '127.0.0.1', '-defaultIPv6', ''];
  const child = spawn('pebble-challtestsrv', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out = (out + d).slice(-8000)));
  child.stderr.on('data', (d) => (out = (out + d).slice(-8000)));
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  try {
    await Promise.race([waitForPort(mgmt), exited.then(() => Promise.reject(new Error(`pebble-challtestsrv exited:\n${out}`)))]);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  const controlUrl = `http://127.0.0.1:${mgmt}`;
  return {
    port,
    controlUrl,
    // challtestsrv answers every A query with its -defaultIPv4.
    addHost: async () => {},
    setTxt: (host, value) => post(`${controlUrl}/set-txt`, { host: fqdn(host), value }),
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
