/**
 * The test DNS for the ACME interop tests: answers A queries for the case's names with 127.0.0.1
 * (so a validator reaches the client's challenge responder on loopback, never an AAAA ::1 it does
 * not listen on) and serves the TXT records a client's dns-01 hook sets.
 *
 * The tests use the project's DNS server (test/helpers/dns-server.ts) for pebble and mutual alike;
 * the benchmark uses pebble-challtestsrv, which answers A for any name. The hooks (clients.ts) set
 * and clear records over HTTP with challtestsrv's management API (`POST /set-txt {"host","value"}`,
 * `POST /clear-txt {"host"}`), which {@link startTestDns} puts in front of the project's server,
 * so the same hook scripts work with either.
 */
import http from 'node:http';
import { spawn } from 'node:child_process';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.ts';
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

/** Largest record API request body read: a name and a TXT value. */
const MAX_CONTROL_BODY = 4096;

/** Reads a small JSON body. */
function readJson(req: http.IncomingMessage): Promise<{ host?: string; value?: string }> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => {
      body += d;
      if (body.length > MAX_CONTROL_BODY) req.destroy(new Error('record API body too large'));
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(body));
      } catch (e) {
        reject(e);
      }
    });
    req.on('error', reject);
  });
}

/**
 * Puts challtestsrv's record API in front of the project's DNS server, so the same hooks drive
 * it. Names are given to it without the final dot; TXT values of one name accumulate until cleared.
 */
async function bridge(server: DnsServer): Promise<TestDns> {
  const txt = new Map<string, string[]>();
  const bare = (n: string) => n.replace(/\.$/, '');
  const setTxt = async (host: string, value: string) => {
    const values = [...(txt.get(bare(host)) ?? []), value];
    txt.set(bare(host), values);
    server.set(bare(host), 'TXT', values);
  };
  const api = http.createServer((req, res) => {
    void readJson(req).then(async (b) => {
      if (typeof b.host !== 'string') throw new Error('host missing');
      if (req.url === '/set-txt' && typeof b.value === 'string') await setTxt(b.host, b.value);
      else if (req.url === '/clear-txt') {
        txt.delete(bare(b.host));
        server.delete(bare(b.host));
      } else throw new Error(`no such call: ${req.url}`);
      res.end();
    }).catch((e: Error) => res.writeHead(400).end(e.message));
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', () => r()));
  const controlUrl = `http://127.0.0.1:${(api.address() as { port: number }).port}`;
  return {
    port: server.port,
    controlUrl,
    addHost: async (name) => server.set(bare(name), 'A', ['127.0.0.1']),
    setTxt,
    async close() {
      await new Promise<void>((r) => {
        api.close(() => r());
        api.closeAllConnections();
      });
      await server.close();
    },
  };
}

/**
 * The project's test DNS server (test/helpers/dns-server.ts, UDP) behind the record API: names
 * resolve only once added ({@link TestDns.addHost}), as a validator meets them.
 */
export async function startTestDns(): Promise<TestDns> {
  return bridge(await startDnsServer());
}
