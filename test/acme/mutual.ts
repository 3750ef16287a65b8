/**
 * `mutual serve` with ACME enabled, as an interop target (target.ts): a fresh test CA whose
 * configured URL is the address the real CLI then listens on, with in its config.yaml
 *
 *   acme: { enabled: true, httpPort, tlsAlpnPort, dns: { servers: ['127.0.0.1:<test DNS>'] },
 *           externalAccountRequired }
 *
 * so its validator reaches the case's responders and resolves names with the test DNS. The
 * directory is `<url>/acme/directory`; EAB keys come from `mutual acme eab create --names ...
 * --json` (`{ keyId, hmacKey }`); a certificate's status is what the server's OCSP responder
 * answers to `openssl ocsp`, the response verified to the root. Every caller checks `requireTool(t, 'openssl')` first.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { makeTestCa, TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { freePort, runAsync } from '../helpers/tools.ts';
import { caFiles, spawnServe } from '../helpers/server.ts';
import type { AcmeTarget, TargetOptions } from './target.ts';

/** The `mutual` command, run with the same Node as the tests. */
const MUTUAL_BIN = path.resolve(import.meta.dirname, '../../bin/mutual.mjs');

/** True once the ACME transport is in the tree (the mutual interop tests turn on by themselves). */
export const ACME_SERVER_PRESENT = fs.existsSync(path.resolve(import.meta.dirname, '../../src/server/acme'));

/** Escapes a string for a RegExp. */
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Starts `mutual serve` with ACME for one matrix case (see the file's top). */
export const startMutual = (o: TargetOptions): Promise<AcmeTarget> => startMutualWith(o, {});

/** {@link startMutual} with more `acme:` settings (the benchmark lifts `ordersPerHour`). */
export async function startMutualWith(o: TargetOptions, more: Record<string, unknown>): Promise<AcmeTarget> {
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const tc = await makeTestCa({ url });
  const config = parseYaml(fs.readFileSync(tc.layout.config, 'utf8')) as Record<string, unknown>;
  config.acme = { enabled: true, httpPort: o.httpPort, tlsAlpnPort: o.tlsPort, dns: { servers: [`127.0.0.1:${o.dns.port}`] }, externalAccountRequired: o.eab, ...more };
  fs.writeFileSync(tc.layout.config, stringifyYaml(config), { mode: 0o600 });
  // The CLI's server opens the CA itself; the test's copy only made it.
  const files = caFiles(tc);
  let running: Awaited<ReturnType<typeof spawnServe>> | undefined;
  const close = async () => {
    if (running && running.child.exitCode === null && running.child.signalCode === null) running.child.kill('SIGTERM');
    await running?.exited;
    await tc.close();
  };
  try {
    running = await spawnServe(tc, undefined, [], port);
  } catch (e) {
    await close();
    throw e;
  }
  const srv = running;
  return {
    name: 'mutual',
    directoryUrl: `${url}/acme/directory`,
    tlsCaFile: files.root,
    rootFile: files.root,
    async eab(names) {
      const r = await runAsync(process.execPath, [MUTUAL_BIN, '--home', tc.home, 'acme', 'eab', 'create', '--names', names.join(','), '--json'], { env: { ...process.env, MUTUAL_CA_PASSPHRASE: TEST_PASSPHRASE } });
      if (r.status !== 0) throw new Error(`mutual acme eab create failed (${r.status}): ${r.stdout}${r.stderr}`);
      const { keyId, hmacKey } = JSON.parse(r.stdout) as { keyId: string; hmacKey: string };
      return { kid: keyId, hmac: hmacKey };
    },
    async status(certFile, issuerFile) {
      const r = await runAsync('openssl', ['ocsp', '-url', `${url}/ocsp`, '-issuer', issuerFile, '-cert', certFile, '-CAfile', files.root]);
      const detail = `${r.stdout}${r.stderr}`;
      if (!/Response verify OK/.test(r.stderr)) throw new Error(`the OCSP response did not verify: ${detail}`);
      const said = new RegExp(`${escape(certFile)}: (\\w+)`).exec(r.stdout)?.[1];
      return { status: said === 'good' || said === 'revoked' ? said : 'other', detail };
    },
    output: () => srv.output(),
    close,
  };
}
