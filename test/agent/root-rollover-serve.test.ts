/**
 * The agent through a real root rollover of a running `mutual serve` (issue 17): `mutual root
 * rotate`, `root install`, new intermediates under the new root, SIGHUP, `root retire`. The trust
 * bundle moves from {old} to {old,new} to {new}; the server certificate, under the old root, is
 * renewed at once when the old root is marked retiring, and its fullchain (the CA's answer, with
 * new-by-old) verifies with `openssl verify -x509_strict` against the old root alone and the new.
 * Where nginx is installed, each bundle passes `nginx -t` (the agent's check) before it is written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Agent } from '../../src/agent/agent.ts';
import { enroll } from '../../src/sdk/index.ts';
import { readCertificateDers } from '../../src/core/pem.ts';
import { hasTool } from '../helpers/tools.ts';
import { tempDir } from '../helpers/test-ca.ts';
import { send, waitFor } from '../helpers/server.ts';
import { verifyStrict } from '../helpers/rollover.ts';
import { explain, json, mutual, startServe, stopProcess, type CliResult } from '../cli/cli-helper.ts';
import { manifestFor } from './harness.ts';

const skip = { skip: !hasTool('openssl') && process.env.MUTUAL_INTEROP !== 'require' ? 'openssl is not installed' : false };
const fp = (pem: string | Buffer) => crypto.createHash('sha256').update(new crypto.X509Certificate(pem).raw).digest('hex');
const fingerprintsIn = (file: string): string[] => readCertificateDers(fs.readFileSync(file, 'utf8')).map((d) => crypto.createHash('sha256').update(d).digest('hex')).sort();
const expectOk = (r: CliResult) => assert.equal(r.status, 0, explain(r));

test('ok/agent follows mutual serve through rotate, install and retire: bundle {old} -> {old,new} -> {new}, certificate renewed onto the new root', skip, async () => {
  const dir = tempDir('mutual-agent-rollover-');
  const home = path.join(dir, 'home');
  const offline = path.join(dir, 'offline');
  const cli = (args: string[]) => mutual(['--home', home, '--json', ...args]);
  let serve: Awaited<ReturnType<typeof startServe>> | undefined;
  try {
    expectOk(await cli(['init', '--trust-domain', 'acme.internal', '--name', 'Acme', '--offline-dir', offline]));
    const oldRoot = fs.readFileSync(path.join(home, 'ca', 'root.pem'), 'utf8');
    serve = await startServe(home);
    const token = await cli(['token', 'localhost', '127.0.0.1', '--ttl', '10m']);
    expectOk(token);
    fs.writeFileSync(path.join(dir, 'web.token'), json(token).token);
    const bundle = path.join(dir, 'trust', 'ca-bundle.pem');
    // Where nginx is installed, every bundle the agent writes must pass `nginx -t` as nginx's client CA file.
    const nginxCheck: Record<string, unknown> = {};
    if (hasTool('nginx')) {
      const { execFileSync } = await import('node:child_process');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-days', '2',
        '-keyout', path.join(dir, 'nginx.key'), '-out', path.join(dir, 'nginx.crt')], { stdio: 'ignore' });
      const conf = path.join(dir, 'nginx.conf');
      fs.writeFileSync(conf, `worker_processes 1;\nevents { worker_connections 16; }\nhttp { server { listen 127.0.0.1:1 ssl; ssl_certificate ${dir}/nginx.crt; ssl_certificate_key ${dir}/nginx.key; ssl_client_certificate ${bundle}; ssl_verify_client on; } }\n`);
      nginxCheck.check = ['nginx', '-t', '-q', '-p', dir, '-c', conf, '-g', `pid ${dir}/nginx.pid; error_log stderr;`];
    }
    const files = { cert: path.join(dir, 'certs/web.crt'), key: path.join(dir, 'certs/web.key'), fullchain: path.join(dir, 'certs/web.fullchain.pem') };
    const m = manifestFor(dir, {
      ca: { url: serve.url, rootFingerprint: fp(oldRoot) }, stateDir: path.join(dir, 'state'),
      trust: { refresh: '1m', bundles: [{ path: bundle, include: ['root'], ...nginxCheck }] },
      certificates: [{ name: 'web', profile: 'server', names: ['localhost', '127.0.0.1'], tokenFile: path.join(dir, 'web.token'), files }],
    });
    // The agent's clock runs ahead of the server's by whole minutes, so each cycle's trust refresh is due.
    let ahead = 0;
    const agent = new Agent({ manifest: m, now: () => new Date(Date.now() + ahead) });
    const cycle = async () => {
      ahead += 120_000;
      return agent.cycle({ ignoreBackoff: true });
    };

    const first = await cycle();
    assert.equal(first.exitCode, 0, JSON.stringify(first));
    assert.equal(first.certificates[0].action, 'enrolled');
    assert.deepEqual(fingerprintsIn(bundle), [fp(oldRoot)]);

    // The rollover: a new root, intermediates under it, the server reloaded.
    expectOk(await cli(['root', 'rotate', '--offline-dir', offline]));
    expectOk(await cli(['root', 'install', '--from', offline]));
    const newRoot = fs.readFileSync(path.join(offline, 'root.pem'), 'utf8');
    for (const role of ['server', 'client']) {
      const p = (f: string) => path.join(dir, f);
      expectOk(await cli(['intermediate', 'csr', '--role', role, '--new-key', '--out', p(`${role}.csr`)]));
      expectOk(await cli(['offline', 'sign-intermediate', p(`${role}.csr`), '--role', role, '--offline-dir', offline, '--out', p(`${role}-ca.pem`)]));
      expectOk(await cli(['intermediate', 'install', p(`${role}-ca.pem`), '--role', role]));
    }
    serve.child.kill('SIGHUP');
    const serverCa = fs.readFileSync(path.join(home, 'ca', 'server-ca.pem'), 'utf8');
    await waitFor('the reload', 30_000, async () => ((await send(`${serve!.url}/ca/server.pem`, { tls: { ca: oldRoot + newRoot } })).body.toString() === serverCa ? true : undefined));

    const overlap = await cycle();
    assert.equal(overlap.exitCode, 0, JSON.stringify(overlap));
    assert.deepEqual(fingerprintsIn(bundle), [fp(oldRoot), fp(newRoot)].sort());
    assert.equal(overlap.certificates[0].action, 'renewed', JSON.stringify(overlap.certificates[0]));
    const cert = fs.readFileSync(files.cert, 'utf8');
    const chain = fs.readFileSync(files.fullchain, 'utf8').slice(cert.length);
    assert.ok(chain.includes(fs.readFileSync(path.join(home, 'ca', 'cross', 'new-by-old.pem'), 'utf8')), 'the fullchain carries new-by-old');
    assert.equal(verifyStrict(dir, cert, chain, oldRoot), true, 'old root alone');
    assert.equal(verifyStrict(dir, cert, chain, newRoot), true, 'new root alone');
    assert.equal((await cycle()).certificates[0].action, 'none', 'renewed once');
    // A new host enrolling now: its token names the current (new) root, which /roots.pem lists second.
    const fresh = await cli(['token', 'spiffe://acme.internal/prod/late', '--ttl', '10m']);
    expectOk(fresh);
    const late = await enroll({ caUrl: serve.url, token: json(fresh).token });
    assert.equal(fp(late.root), fp(newRoot));
    assert.equal(verifyStrict(dir, late.certificate, late.chain, oldRoot), true, 'the late host is trusted by the old root too');

    expectOk(await cli(['root', 'retire', '--force']));
    serve.child.kill('SIGHUP');
    await waitFor('the retirement', 30_000, async () => {
      const r = await send(`${serve!.url}/roots.json`, { tls: { ca: oldRoot + newRoot } });
      return r.json?.roots?.length === 1 ? true : undefined;
    });
    const retired = await cycle();
    assert.equal(retired.exitCode, 0, JSON.stringify(retired));
    assert.deepEqual(fingerprintsIn(bundle), [fp(newRoot)]);
    // And on: the pinned (old) root is gone from the CA, the agent still starts from it and trusts the new one.
    const later = await cycle();
    assert.equal(later.exitCode, 0, JSON.stringify(later));
    assert.deepEqual(fingerprintsIn(bundle), [fp(newRoot)]);
  } finally {
    if (serve) await stopProcess(serve.child);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
