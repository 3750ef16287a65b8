/**
 * Fault: a process finalizing ACME orders on SQLite is killed with SIGKILL. After it, every order
 * a client got back valid is valid in the database with its certificate in the inventory, every
 * ACME certificate in the inventory belongs to a valid order (the two are one transaction), and
 * the database is intact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { makeTestCa } from '../helpers/test-ca.ts';

const CHILD = path.join(import.meta.dirname, 'finalize-child.ts');
/** Orders the child must have finalized before the kill. */
const BEFORE_KILL = 12;

test('ok/kill-9-during-finalize-loses-no-certificate-and-leaves-no-orphan', async () => {
  const tc = await makeTestCa();
  await tc.ca.close();
  try {
    const child = spawn(process.execPath, [CHILD, tc.home], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        if (out.split('\n').length - 2 >= BEFORE_KILL) resolve();
      });
      child.on('exit', () => reject(new Error(`the child exited early: ${err}`)));
    });
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    const received = out.split('\n').slice(1).filter((l) => /^\S+ [0-9a-f]+$/.test(l)).map((l) => l.split(' '));
    assert.ok(received.length >= BEFORE_KILL);

    const db = new DatabaseSync(path.join(tc.home, 'mutual.db'));
    try {
      assert.equal((db.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check, 'ok');
      for (const [orderId, certId] of received) {
        const o = db.prepare('SELECT status, certificate_id FROM acme_orders WHERE id = ?').get(orderId) as { status: string; certificate_id: string };
        assert.deepEqual({ ...o }, { status: 'valid', certificate_id: certId }, orderId);
      }
      const orphans = db.prepare(`SELECT lower(hex(serial)) AS s FROM certificates WHERE issued_by LIKE 'acme:%'
                                  AND lower(hex(serial)) NOT IN (SELECT certificate_id FROM acme_orders WHERE status = 'valid')`).all();
      assert.deepEqual(orphans, [], 'no certificate without its valid order');
      const missing = db.prepare(`SELECT id FROM acme_orders WHERE status = 'valid'
                                  AND certificate_id NOT IN (SELECT lower(hex(serial)) FROM certificates)`).all();
      assert.deepEqual(missing, [], 'no valid order without its certificate');
    } finally {
      db.close();
    }
  } finally {
    await tc.close();
  }
});
