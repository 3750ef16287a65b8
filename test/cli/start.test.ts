/**
 * `npm start` (`node src/cli/main.ts --home .mutual start`) in a fresh folder without
 * MUTUAL_CA_PASSPHRASE: the first run shows the teaching demo, then serves the CA; /health
 * answers over HTTPS with the new root; SIGTERM stops it cleanly.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import https from 'node:https';
import { spawn } from 'node:child_process';
import { tempDir } from '../helpers/test-ca.ts';
import { freePort } from '../helpers/tools.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const cwd = tempDir('mutual-cli-start-');
after(() => fs.rmSync(cwd, { recursive: true, force: true }));

test('ok/first run: the demo, then the CA server answers and stops on SIGTERM', async () => {
  const port = await freePort();
  const env = { ...process.env };
  delete env.MUTUAL_CA_PASSPHRASE;
  const child = spawn(process.execPath, [path.join(REPO, 'src/cli/main.ts'), '--home', '.mutual', 'start', '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const until = Date.now() + 30_000;
  while (!err.includes('mutual CA server on') && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  assert.match(out, /^5\. .*200 hello spiffe:\/\/demo\.internal\/dev\/payments$/m, out + err);
  assert.match(out, /^8\. .*495 .*CERT_REVOKED/m);
  const root = fs.readFileSync(path.join(cwd, '.mutual', 'ca', 'root.pem'));
  const health = await new Promise<string>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path: '/health', ca: root, servername: 'localhost' }, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve(`${res.statusCode} ${b}`));
    }).on('error', reject);
  });
  assert.equal(health, '200 {"ok":true}');
  child.kill('SIGTERM');
  assert.equal(await exited, 0, err);
});
