/**
 * `mutual gateway --config gateway.yaml` as a process: it serves, reloads on SIGHUP, and drains
 * and exits on SIGTERM.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startHarness } from './harness.ts';
import { request, id } from '../sdk/fixtures.ts';

const entry = fileURLToPath(new URL('../../src/cli/gateway-command.ts', import.meta.url));

test('ok/the gateway command serves, reloads on SIGHUP and stops on SIGTERM', async () => {
  const h = await startHarness();
  // The harness's own gateway is closed; the command runs a second one from the same file.
  await h.gateway.close();
  const cfg = structuredClone(h.config) as { routes: { name: string; allow: { identities: string[] }[] }[]; accessLog: unknown; logLevel: string };
  cfg.accessLog = true;
  cfg.logLevel = 'info';
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
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
    await h.close();
  }
});
