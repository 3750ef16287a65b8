/**
 * `mutual gateway --config gateway.yaml` as a process: it serves, reloads on SIGHUP, and drains
 * and exits on SIGTERM, also while clients hold connections without requests; it exits non-zero
 * with LISTEN_FAILED when its port is taken.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startHarness } from './harness.ts';
import { request, id } from '../sdk/fixtures.ts';
import { EXIT } from '../../src/cli/output.ts';

const entry = fileURLToPath(new URL('../../src/cli/gateway-command.ts', import.meta.url));
const bin = fileURLToPath(new URL('../../bin/mutual.mjs', import.meta.url));
/** A bound for the test, not a wait: before the fixes these processes never exited. */
const GUARD_MS = 20_000;

/** Resolves with the exit code, or 'running' if the process has not exited within GUARD_MS. */
const exitOf = (child: ReturnType<typeof spawn>, exited: Promise<number | null>): Promise<number | null | 'running'> => {
  let guard: NodeJS.Timeout | undefined;
  return Promise.race([exited, new Promise<'running'>((r) => (guard = setTimeout(() => r('running'), GUARD_MS)))]).finally(() => clearTimeout(guard));
};

test('ok/the gateway command serves, reloads on SIGHUP and stops on SIGTERM', async () => {
  const h = await startHarness();
  // The harness's own gateway is closed; the command runs a second one from the same file.
  await h.gateway.close();
  const cfg = structuredClone(h.config) as { routes: { name: string; allow: { identities: string[] }[] }[]; accessLog: unknown; logLevel: string; limits: Record<string, number> };
  cfg.accessLog = true;
  cfg.logLevel = 'info';
  cfg.limits.shutdownTimeoutMs = 300;
  h.writeConfig(cfg);
  const script = `import { Command } from 'commander'; import { registerGatewayCommand } from ${JSON.stringify(entry)};
const p = new Command('mutual'); registerGatewayCommand(p); await p.parseAsync(['node', 'mutual', 'gateway', '--config', ${JSON.stringify(h.configFile)}, '--no-watch']);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no banner: ${out} ${err}`)), 15_000);
      const look = () => {
        const m = /listening on (https:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1]);
        } else setTimeout(look, 50);
      };
      look();
    });
    const call = () => request(`${url}/api/x`, { ca: h.pki.root, cert: h.creds.billing.fullchain, key: h.creds.billing.key });
    assert.equal((await call()).status, 403);
    cfg.routes.find((r) => r.name === 'api')!.allow[0].identities.push(id('staging/*'));
    h.writeConfig(cfg);
    child.kill('SIGHUP');
    const t0 = Date.now();
    let status = 0;
    while (Date.now() - t0 < 5000 && (status = (await call()).status) !== 200) await new Promise((r) => setTimeout(r, 50));
    assert.equal(status, 200, 'the new policy is in force after SIGHUP');
    assert.match(out, /"identity":"spiffe:\/\/acme\.internal\/staging\/billing"/, 'JSON access log with the identity');
    assert.match(out, /"decision":"deny"/);
    // Clients that hold connections without a request: TLS with ALPN h2 that never sends the
    // HTTP/2 preface, and TCP that never starts the handshake. They must not keep the process.
    const port = Number(new URL(url).port);
    const silent = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: h.pki.root, cert: h.creds.payments.fullchain, key: h.creds.payments.key, ALPNProtocols: ['h2'] }, () => resolve(s));
      s.once('error', reject);
    });
    silent.on('error', () => {});
    const bare = net.connect(port, '127.0.0.1');
    bare.on('error', () => {});
    await new Promise<void>((r) => bare.once('connect', () => r()));
    child.kill('SIGTERM');
    const code = await exitOf(child, exited);
    silent.destroy();
    bare.destroy();
    assert.equal(code, 0, 'exits 0 by shutdownTimeoutMs, with clients still connected');
  } finally {
    child.kill('SIGKILL');
    await h.close();
  }
});

for (const which of ['listen', 'admin'] as const) {
  test(`fail/the ${which} port is taken: the command exits ${EXIT.CA_ERROR} with LISTEN_FAILED`, async () => {
    const h = await startHarness();
    await h.gateway.close();
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const cfg = structuredClone(h.config) as { listen: { port: number }; admin: { port: number } };
    cfg[which].port = (taken.address() as net.AddressInfo).port;
    h.writeConfig(cfg);
    const child = spawn(process.execPath, [bin, 'gateway', '--config', h.configFile, '--no-watch'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout!.resume();
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const code = await exitOf(child, exited);
      assert.equal(code, EXIT.CA_ERROR, `exit code (stderr: ${err})`);
      assert.match(err, /error\[LISTEN_FAILED\]/);
      assert.match(err, /EADDRINUSE/);
    } finally {
      child.kill('SIGKILL');
      await new Promise<void>((r) => taken.close(() => r()));
      await h.close();
    }
  });
}
