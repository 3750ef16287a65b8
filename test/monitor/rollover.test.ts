/**
 * The monitor during a root rollover (issue 17), against real TLS endpoints and files: an endpoint
 * whose chain reaches only the retiring root, a trust bundle that lacks the current root in the
 * overlap, the retire-at near (warning) and past with leaves still under the old root (critical);
 * each fires where it should and nowhere else. The CA rolls over with its own ceremonies; the roots
 * come from /roots.json served over HTTP (the CA's own document, or one with the retire-at moved),
 * or from the CA home's ca/roots.pem and ca/rotation.json.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { validateMonitorConfig } from '../../src/monitor/monitor-config.ts';
import { runScan, type MonitorReport } from '../../src/monitor/run-scan.ts';
import { makeRealRollover, rootsJson, rootsPem, startRootsServer, verifyStrict, fingerprint, type RealRollover, type RootsServer } from '../helpers/rollover.ts';
import { rootsDocument } from '../../src/ca/index.ts';
import { homeLayout } from '../../src/ca/home.ts';
import type { Credential } from '../sdk/fixtures.ts';
import { names } from '../sdk/fixtures.ts';
import { startTlsServer, type Running } from './support.ts';

const DAY = 86_400_000;
const ROLLOVER_KINDS = ['root-retiring-served', 'bundle-missing-root', 'root-retiring', 'root-retired-in-use'];
let ro: RealRollover;
let roots: RootsServer;
let oldEp: Running;
let newEp: Running;
const files: Record<string, string> = {};
const now = new Date();

before(async () => {
  // A real rollover of one CA: the old leaf is issued before it; the new one after, with the
  // chain the CA answers during the overlap (new intermediate + new-by-old).
  let oldLeaf!: Credential;
  ro = await makeRealRollover(async (old) => {
    oldLeaf = await old.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'old-web');
  });
  const newLeaf = await ro.new.issue('server', names({ dns: ['localhost'], ip: ['127.0.0.1'] }), 'new-web');
  const newChain = newLeaf.fullchain;
  assert.ok(newChain.includes(ro.newByOld));
  // The chains as OpenSSL sees them: the old one reaches the old root only; with new-by-old the new one reaches both.
  const chainOf = (fullchain: string, cert: string) => fullchain.slice(cert.length);
  assert.deepEqual([verifyStrict(ro.dir, oldLeaf.cert, chainOf(oldLeaf.fullchain, oldLeaf.cert), ro.old.root), verifyStrict(ro.dir, oldLeaf.cert, chainOf(oldLeaf.fullchain, oldLeaf.cert), ro.new.root)], [true, false]);
  assert.deepEqual([verifyStrict(ro.dir, newLeaf.cert, chainOf(newChain, newLeaf.cert), ro.old.root), verifyStrict(ro.dir, newLeaf.cert, chainOf(newChain, newLeaf.cert), ro.new.root)], [true, true]);
  oldEp = await startTlsServer({ cert: oldLeaf.fullchain, key: oldLeaf.key });
  newEp = await startTlsServer({ cert: newChain, key: newLeaf.key });
  const dir = path.join(ro.dir, 'files');
  fs.mkdirSync(dir);
  const write = (n: string, text: string) => {
    files[n] = path.join(dir, n);
    fs.writeFileSync(files[n], text);
  };
  write('bundle-old.pem', rootsPem([{ pem: ro.old.root }]));
  write('bundle-both.pem', ro.bundle());
  write('old-fullchain.pem', oldLeaf.fullchain);
  write('new-fullchain.pem', newChain);
  roots = await startRootsServer('', '');
});

after(async () => {
  await oldEp.close();
  await newEp.close();
  await roots.close();
  await ro.close();
});

const overlap = (retireAt: Date) => rootsJson({
  current: ro.new.root, roots: [{ pem: ro.old.root, retireAt }, { pem: ro.new.root }],
  cross: [{ pem: ro.newByOld, subject: ro.new.root, issuer: ro.old.root }], phase: 'overlap', oldRoot: ro.old.root, newRoot: ro.new.root, retireAt,
});

async function scan(json: string, o: { endpoints?: Running[]; files?: string[] } = {}): Promise<MonitorReport> {
  roots.json = json;
  const config = validateMonitorConfig({
    sources: {
      roots: { url: roots.url },
      endpoints: (o.endpoints ?? [oldEp, newEp]).map((e) => ({ address: `127.0.0.1:${e.port}`, servername: 'localhost' })),
      files: (o.files ?? Object.keys(files)).map((n) => ({ path: files[n] })),
    },
  }, ro.dir);
  return runScan(config, { now });
}

/** The rollover findings as `kind subject` lines, sorted. */
const rolloverLines = (r: MonitorReport) => r.findings.filter((f) => ROLLOVER_KINDS.includes(f.kind)).map((f) => `${f.kind} ${f.severity} ${f.code} ${f.source}`).sort();

test('ok/overlap, retire-at far: the old-root endpoint and the bundle without the new root are reported, nothing else', async () => {
  const r = await scan(overlap(new Date(now.getTime() + 30 * DAY)));
  assert.deepEqual(rolloverLines(r), [
    `bundle-missing-root critical MONITOR_BUNDLE_MISSING_ROOT file:${files['bundle-old.pem']}`,
    `root-retiring-served warning MONITOR_ROOT_RETIRING endpoint:127.0.0.1:${oldEp.port}`,
  ].sort());
});

test('fail/retire-at within 14 days: a warning on the retiring root', async () => {
  const r = await scan(overlap(new Date(now.getTime() + 3 * DAY)));
  const f = r.findings.filter((x) => x.kind === 'root-retiring');
  assert.equal(f.length, 1);
  assert.deepEqual([f[0].severity, f[0].code], ['warning', 'MONITOR_ROOT_RETIRING']);
  assert.ok(f[0].subject.includes(fingerprint(ro.old.root).slice(0, 16)));
});

test('fail/retire-at past with leaves still under the old root: critical; ok/none when no leaf is left under it', async () => {
  const past = overlap(new Date(now.getTime() - DAY));
  const r = await scan(past);
  const f = r.findings.filter((x) => x.kind === 'root-retired-in-use');
  assert.equal(f.length, 1);
  assert.deepEqual([f[0].severity, f[0].code], ['critical', 'MONITOR_ROOT_RETIRED_IN_USE']);
  const clean = await scan(past, { endpoints: [newEp], files: ['bundle-both.pem', 'new-fullchain.pem'] });
  assert.deepEqual(rolloverLines(clean), []);
});

test('ok/no rollover (one root, phase none): no rollover finding', async () => {
  const r = await scan(rootsJson({ current: ro.old.root, roots: [{ pem: ro.old.root }], cross: [], phase: 'none' }), { endpoints: [oldEp], files: ['bundle-old.pem', 'old-fullchain.pem'] });
  assert.deepEqual(rolloverLines(r), []);
});

test('ok/the CA\'s own /roots.json (retire-at 90 days away): the old-root endpoint and the bundle without the new root', async () => {
  const r = await scan(JSON.stringify(rootsDocument(homeLayout(ro.new.tc.home))));
  assert.deepEqual(rolloverLines(r), [
    `bundle-missing-root critical MONITOR_BUNDLE_MISSING_ROOT file:${files['bundle-old.pem']}`,
    `root-retiring-served warning MONITOR_ROOT_RETIRING endpoint:127.0.0.1:${oldEp.port}`,
  ].sort());
});

test('ok/monitoring locally: the CA home\'s roots.pem and rotation.json give the same bundle finding', async () => {
  const r = await runScan(validateMonitorConfig({ sources: { inventory: { home: ro.new.tc.home }, files: [{ path: files['bundle-old.pem'] }, { path: files['bundle-both.pem'] }] } }, ro.dir), { now });
  assert.deepEqual(rolloverLines(r), [`bundle-missing-root critical MONITOR_BUNDLE_MISSING_ROOT file:${files['bundle-old.pem']}`]);
});
