/**
 * pebble, Let's Encrypt's ACME test server, as an interop target: started on free loopback ports
 * with a config in a temp folder, its validator pointed at the clients' responders (`httpPort`,
 * `tlsPort`) and at the test DNS (`-dnsserver`). Every caller checks
 * `requireTool(t, 'pebble')` first.
 *
 * Determinism: PEBBLE_VA_NOSLEEP=1 (no random 0-15 s sleep before validating),
 * PEBBLE_WFE_NONCEREJECT=0 (no 5% of good nonces refused), PEBBLE_AUTHZREUSE=0 (a renewal
 * validates again instead of reusing the authorization half of the time). pebble keeps nothing on
 * disk: its root and intermediate are new on every start, served at its management port.
 */
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { freePort, runAsync, waitForPort } from '../helpers/tools.ts';
import type { AcmeTarget, TargetOptions } from './target.ts';

/** pebble's own example config with external account binding (the Debian package ships it). */
export const PEBBLE_EAB_EXAMPLE = '/usr/share/doc/pebble/examples/pebble-config-external-account-bindings.json';

/** GET over HTTPS trusting `ca` (pebble's management API); throws on a non-200 answer. */
export function getText(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${res.statusCode} ${body}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: timeout`)));
    req.on('error', reject);
  });
}

/**
 * Makes a throwaway CA and a certificate for 127.0.0.1 and localhost with openssl, for pebble's
 * HTTPS (the package ships no test certificate). Returns the file paths.
 */
export async function makeLoopbackTls(dir: string): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const f = (n: string) => path.join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const steps = [
    ['req', '-x509', ...ec, '-keyout', f('tls-ca.key'), '-out', f('tls-ca.pem'), '-days', '2', '-subj', '/CN=interop test TLS CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'],
    ['req', '-new', ...ec, '-keyout', f('tls.key'), '-out', f('tls.csr'), '-subj', '/CN=localhost'],
    ['x509', '-req', '-in', f('tls.csr'), '-CA', f('tls-ca.pem'), '-CAkey', f('tls-ca.key'), '-days', '2', '-out', f('tls.pem'), '-extfile', f('tls.ext')],
  ];
  fs.writeFileSync(f('tls.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n');
  for (const args of steps) {
    const r = await runAsync('openssl', args);
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  }
  return { caFile: f('tls-ca.pem'), certFile: f('tls.pem'), keyFile: f('tls.key') };
}

/** The serial as pebble's management API spells it: lowercase hex, no leading zeros. */
export const pebbleSerial = (certPem: string): string => BigInt(`0x${new X509Certificate(certPem).serialNumber}`).toString(16);

/** Starts pebble for one matrix case (see the file's top). */
export async function startPebble(o: TargetOptions): Promise<AcmeTarget> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-pebble-'));
  const tls = await makeLoopbackTls(dir);
  const [acmePort, mgmtPort] = [await freePort(), await freePort()];
  const macKeys: Record<string, string> = o.eab ? JSON.parse(fs.readFileSync(PEBBLE_EAB_EXAMPLE, 'utf8')).pebble.externalAccountMACKeys : {};
  const config = {
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`,
      managementListenAddress: `127.0.0.1:${mgmtPort}`,
      certificate: tls.certFile,
      privateKey: tls.keyFile,
      httpPort: o.httpPort,
      tlsPort: o.tlsPort,
      ocspResponderURL: '',
      externalAccountBindingRequired: o.eab,
      ...(o.eab ? { externalAccountMACKeys: macKeys } : {}),
    },
  };
  fs.writeFileSync(path.join(dir, 'pebble.json'), JSON.stringify(config, null, 2));
  const env = { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' };
  const child = spawn('pebble', ['-config', path.join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${o.dns.port}`, '-strict=false'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out = (out + d).slice(-20_000)));
  child.stderr.on('data', (d) => (out = (out + d).slice(-20_000)));
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const died = exited.then(() => Promise.reject(new Error(`pebble exited:\n${out}`)));
    await Promise.race([Promise.all([waitForPort(acmePort), waitForPort(mgmtPort)]), died]);
    const tlsCa = fs.readFileSync(tls.caFile, 'utf8');
    const rootFile = path.join(dir, 'pebble-root.pem');
    fs.writeFileSync(rootFile, await getText(`https://127.0.0.1:${mgmtPort}/roots/0`, tlsCa));
    const kids = Object.keys(macKeys);
    return {
      name: 'pebble',
      directoryUrl: `https://127.0.0.1:${acmePort}/dir`,
      tlsCaFile: tls.caFile,
      rootFile,
      async eab() {
        if (!kids.length) throw new Error('this pebble was started without EAB keys');
        return { kid: kids[0], hmac: macKeys[kids[0]] };
      },
      async status(certFile) {
        const serial = pebbleSerial(fs.readFileSync(certFile, 'utf8'));
        const detail = await getText(`https://127.0.0.1:${mgmtPort}/cert-status-by-serial/${serial}`, tlsCa);
        const said = JSON.parse(detail).Status;
        return { status: said === 'Valid' ? 'good' : said === 'Revoked' ? 'revoked' : 'other', detail };
      },
      output: () => out,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
