/**
 * Deployment units (src/agent/deploy.ts deploymentUnits): which of a cycle's changes are put in
 * place, checked, reloaded and rolled back together. Pure; the deployment itself (files, hooks,
 * rollback) is exercised against real files and nginx in rollback.test.ts and nginx.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deploymentUnits } from '../../src/agent/deploy.ts';
import type { HookSpec } from '../../src/agent/manifest.ts';

const NGINX: HookSpec = { check: { argv: ['nginx', '-t'] }, reload: { argv: ['nginx', '-s', 'reload'] }, timeoutMs: 5000 };
/** The same commands with another limit: still the same service. */
const NGINX_SLOW: HookSpec = { ...NGINX, timeoutMs: 30_000 };
const PG: HookSpec = { reload: { shell: 'systemctl reload postgresql' }, timeoutMs: 5000 };
const NONE: HookSpec = { timeoutMs: 5000 };

interface Item { id: string; hooks: HookSpec; name?: string; renders?: string[] }
const ids = (units: Item[][]): string[][] => units.map((u) => u.map((x) => x.id));

const cases: { name: string; changes: Item[]; want: string[][] }[] = [
  { name: 'ok/nothing', changes: [], want: [] },
  { name: 'ok/no hooks: each change alone', changes: [{ id: 'a', hooks: NONE }, { id: 'b', hooks: NONE }], want: [['a'], ['b']] },
  {
    name: 'ok/same check and reload: one unit whatever the limit, in planned order',
    changes: [{ id: 'bundle', hooks: NGINX }, { id: 'pg', hooks: PG, name: 'db' }, { id: 'web', hooks: NGINX_SLOW, name: 'web' }, { id: 'crl', hooks: NGINX }],
    want: [['bundle', 'web', 'crl'], ['pg']],
  },
  {
    name: 'ok/a deployment file goes with the certificate it renders, whatever its own hooks',
    changes: [{ id: 'web', hooks: NGINX, name: 'web' }, { id: 'tpl', hooks: NONE, renders: ['web'] }, { id: 'other', hooks: NONE }],
    want: [['web', 'tpl'], ['other']],
  },
  {
    name: 'ok/transitively: a file rendering two certificates joins their services',
    changes: [{ id: 'web', hooks: NGINX, name: 'web' }, { id: 'db', hooks: PG, name: 'db' }, { id: 'both', hooks: NONE, renders: ['db', 'web'] }],
    want: [['web', 'db', 'both']],
  },
  {
    name: 'ok/a certificate not deployed in this cycle ties nothing',
    changes: [{ id: 'tpl', hooks: NONE, renders: ['absent'] }, { id: 'web', hooks: NGINX, name: 'web' }],
    want: [['tpl'], ['web']],
  },
];
for (const c of cases) {
  test(`deploymentUnits/${c.name}`, () => {
    assert.deepEqual(ids(deploymentUnits(c.changes)), c.want);
  });
}
