/**
 * File watching for reload (src/gateway/reload-watcher.ts), on mocked timers: a change is acted
 * on once files settle, only when a file differs from what was last applied. fs.watch events only
 * schedule the same check the poll does, so the poll drives these tests. End to end in reload.test.ts.
 */
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RELOAD_SETTLE_MS, ReloadWatcher } from '../../src/gateway/reload-watcher.ts';
import { WATCH_POLL_MS } from '../../src/gateway/tls-material.ts';

function setup(t: import('node:test').TestContext, enabled = true) {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-watch-'));
  const file = path.join(dir, 'gateway.yaml');
  fs.writeFileSync(file, 'a');
  let changes = 0;
  const w = new ReloadWatcher(enabled, () => changes++);
  t.after(() => {
    w.close();
    mock.timers.reset();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  // The poll, then the settle delay it starts.
  const poll = () => {
    mock.timers.tick(WATCH_POLL_MS);
    mock.timers.tick(RELOAD_SETTLE_MS);
  };
  return { w, file, poll, changes: () => changes };
}

test('ok/a changed file asks for a reload once it settles', (t) => {
  const { w, file, poll, changes } = setup(t);
  w.watch([file]);
  poll();
  assert.equal(changes(), 0, 'nothing changed');
  fs.writeFileSync(file, 'bb');
  poll();
  assert.equal(changes(), 1);
});

test('ok/a deleted file is a change', (t) => {
  const { w, file, poll, changes } = setup(t);
  w.watch([file]);
  fs.rmSync(file);
  poll();
  assert.equal(changes(), 1);
});

test('ok/restamp takes the files as they are: no reload until they change again', (t) => {
  const { w, file, poll, changes } = setup(t);
  w.watch([file]);
  fs.writeFileSync(file, 'bb');
  w.restamp();
  poll();
  assert.equal(changes(), 0);
  fs.writeFileSync(file, 'ccc');
  poll();
  assert.equal(changes(), 1);
});

test('ok/watch replaces the files watched', (t) => {
  const { w, file, poll, changes } = setup(t);
  const other = path.join(path.dirname(file), 'other.pem');
  fs.writeFileSync(other, 'x');
  w.watch([other]);
  fs.writeFileSync(file, 'bb');
  poll();
  assert.equal(changes(), 0, 'the old file is no longer watched');
  fs.writeFileSync(other, 'yy');
  poll();
  assert.equal(changes(), 1);
});

test('fail/disabled: changes are not acted on', (t) => {
  const off = setup(t, false);
  off.w.watch([off.file]);
  fs.writeFileSync(off.file, 'bb');
  off.poll();
  assert.equal(off.changes(), 0);
});

test('fail/closed: changes are not acted on', (t) => {
  const { w, file, poll, changes } = setup(t);
  w.watch([file]);
  w.close();
  fs.writeFileSync(file, 'bb');
  poll();
  assert.equal(changes(), 0);
});
