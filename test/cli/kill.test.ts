/**
 * SIGKILL while issuing in a loop: afterwards every certificate file on disk is in the inventory
 * (same bytes), serials are unique, the database passes `PRAGMA integrity_check`, every issued
 * certificate has its audit entry, `mutual audit verify` passes and the CA keeps working.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import { openSqliteStore } from '../../src/store/sqlite-store.ts';
import { makeTestCa, TEST_PASSPHRASE, type TestCa } from '../helpers/test-ca.ts';
import { BIN, REPO, explain, json, mutual } from './cli-helper.ts';

/** How long the loop runs before the kill. */
const RUN_MS = 1500;

let tc: TestCa;
before(async () => {
  tc = await makeTestCa();
  await tc.ca.close();
});
after(() => fs.rmSync(tc.dir, { recursive: true, force: true }));

/** A loop that issues server certificates and writes each one out as the CLI does, printing a count per batch. */
function writeLoopScript(file: string): void {
  const url = (rel: string) => JSON.stringify(pathToFileURL(path.join(REPO, rel)).href);
  fs.writeFileSync(file, `
import path from 'node:path';
import { openAuthority } from ${url('src/ca/open-authority.ts')};
import { writeIssued } from ${url('src/ca/write-issued.ts')};
const [home, out] = process.argv.slice(2);
const ca = await openAuthority({ home, passphrase: process.env.MUTUAL_CA_PASSPHRASE });
let n = 0;
for (;;) {
  // Several at once, so some share a group-commit transaction.
  const batch = Array.from({ length: 8 }, () => n++);
  const issued = await Promise.all(batch.map((i) => ca.issue({ role: 'server', names: { dns: ['h' + i + '.acme.internal'], ip: [], uri: [] }, actor: 'kill-test' })));
  issued.forEach((r, k) => writeIssued(path.join(out, String(batch[k])), r));
  process.stdout.write(n + '\\n');
}
`);
}

/** Runs `cmd args` until `RUN_MS` has passed and `ready()` holds, then SIGKILLs its process group. */
async function runAndKill(cmd: string, args: string[], ready: (stdout: string) => boolean): Promise<{ signal: string | null; stdout: string; stderr: string }> {
  const child = spawn(cmd, args, {
    cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MUTUAL_CA_PASSPHRASE: TEST_PASSPHRASE },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
  const started = Date.now();
  let done: { code: number | null; signal: string | null } | undefined;
  void exited.then((e) => (done = e));
  while (!done && (Date.now() - started < RUN_MS || !ready(stdout)) && Date.now() - started < 30_000) await new Promise((r) => setTimeout(r, 25));
  assert.equal(done, undefined, `the loop ended by itself\nstdout: ${stdout.slice(-500)}\nstderr: ${stderr}`);
  // The whole group: the shell and the CLI process it is waiting for.
  process.kill(-child.pid!, 'SIGKILL');
  const e = await exited;
  return { signal: e.signal, stdout, stderr };
}

/** Checks the database and every cert.pem under `out` against the inventory. */
async function checkState(out: string): Promise<{ files: number; rows: number }> {
  const db = new DatabaseSync(tc.layout.database);
  try {
    const integrity = db.prepare('PRAGMA integrity_check').all() as { integrity_check: string }[];
    assert.deepEqual(integrity.map((r) => r.integrity_check), ['ok']);
  } finally {
    db.close();
  }
  const store = openSqliteStore({ path: tc.layout.database });
  try {
    const rows = await store.listCertificates({ limit: 1_000_000 });
    const bySerial = new Map(rows.map((r) => [r.serial, r]));
    assert.equal(bySerial.size, rows.length, 'a serial appears twice in the inventory');
    const issueEntries: string[] = [];
    for await (const e of store.auditEntries()) if (e.action === 'issue') issueEntries.push(e.target);
    assert.deepEqual(issueEntries.sort(), [...bySerial.keys()].sort(), 'every certificate has exactly one issue entry in the audit log');

    const seen = new Set<string>();
    let files = 0;
    for (const name of fs.readdirSync(out)) {
      const certFile = path.join(out, name, 'cert.pem');
      if (!fs.existsSync(certFile)) continue; // killed before the certificate was written: fine
      files++;
      const x = new crypto.X509Certificate(fs.readFileSync(certFile));
      const serial = x.serialNumber.toLowerCase();
      assert.ok(!seen.has(serial), `serial ${serial} on disk twice`);
      seen.add(serial);
      const stored = bySerial.get(serial);
      assert.ok(stored, `${certFile} (serial ${serial}) is not in the inventory`);
      assert.ok(stored.der.equals(x.raw), `${certFile} differs from the inventory's copy`);
      // The key written before it belongs to it.
      const keyFile = path.join(out, name, 'key.pem');
      assert.ok(x.checkPrivateKey(crypto.createPrivateKey(fs.readFileSync(keyFile))), `${keyFile} does not match`);
    }
    return { files, rows: rows.length };
  } finally {
    await store.close();
  }
}

test('ok/SIGKILL during an in-process issuance loop', async (t) => {
  const out = path.join(tc.dir, 'loop');
  fs.mkdirSync(out);
  const script = path.join(tc.dir, 'issue-loop.mjs');
  writeLoopScript(script);
  const r = await runAndKill(process.execPath, [script, tc.home, out], (s) => s.trim().split('\n').length >= 3);
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  const { files, rows } = await checkState(out);
  assert.ok(files >= 16, `only ${files} certificates were written before the kill`);
  assert.ok(rows >= files);
  t.diagnostic(`${files} certificate files on disk, ${rows} certificates in the inventory`);
});

test('ok/SIGKILL during a loop of `mutual issue` processes', async (t) => {
  const out = path.join(tc.dir, 'cli');
  fs.mkdirSync(out);
  const loop = `i=0; while true; do i=$((i+1)); "$0" "$1" --home "$2" issue server "c$i.acme.internal" --out "$3/c$i" >/dev/null || exit 1; echo $i; done`;
  const r = await runAndKill('sh', ['-c', loop, process.execPath, BIN, tc.home, out], (s) => s.trim().length > 0);
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  const { files, rows } = await checkState(out);
  assert.ok(files >= 1);
  t.diagnostic(`${files} certificate files on disk, ${rows} certificates in the inventory`);
});

test('ok/after the kills: audit verify passes and the CA still issues', async () => {
  const [audit, issue] = await Promise.all([
    mutual(['--json', '--home', tc.home, 'audit', 'verify']),
    mutual(['--json', '--home', tc.home, 'issue', 'server', 'after.acme.internal', '--out', path.join(tc.dir, 'after')]),
  ]);
  assert.equal(audit.status, 0, explain(audit));
  assert.ok(json(audit).entries > 16);
  assert.equal(issue.status, 0, explain(issue));
  await checkState(path.join(tc.dir, 'loop'));
});
