/**
 * Replacing the root through the CLI, in order: `root rotate` -> `root install` -> new
 * intermediates under the new root -> leaves -> `rotation status` -> `root retire` (refused, then
 * allowed once the old leaves are gone), with the emergency path (an intermediate revoked at the
 * root CRL) on the way. OpenSSL (-x509_strict, with a purpose) judges every certificate and chain:
 * a new leaf with only the OLD root as anchor (through new-by-old) and with only the NEW root; an
 * old leaf with only the new root (through old-by-new).
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { hasTool, openssl, run } from '../helpers/tools.ts';
import { tempDir, TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { openAuthority } from '../../src/ca/open-authority.ts';
import { errorCode, explain, json, mutual, type CliResult } from './cli-helper.ts';
import { openInventory } from '../../src/cli/compose.ts';
import { rotationStatus } from '../../src/ca/index.ts';

const dir = tempDir('mutual-cli-rotation-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const home = path.join(dir, 'home');
const offline = path.join(dir, 'offline');
const ca = (...f: string[]) => path.join(home, 'ca', ...f);
const off = (...f: string[]) => path.join(offline, ...f);
const p = (...parts: string[]) => path.join(dir, ...parts);
const cli = (args: string[], h = home) => mutual(['--home', h, '--json', ...args]);

const expectOk = (r: CliResult) => assert.equal(r.status, 0, explain(r));
function expectError(r: CliResult, code: string): void {
  assert.notEqual(r.status, 0, explain(r));
  assert.equal(errorCode(r), code, explain(r));
}
const fp = (file: string) => crypto.createHash('sha256').update(new crypto.X509Certificate(fs.readFileSync(file)).raw).digest('hex');
const cat = (out: string, ...files: string[]) => {
  fs.writeFileSync(out, files.map((f) => fs.readFileSync(f, 'utf8')).join(''));
  return out;
};
/** openssl verify -x509_strict: `anchor` the only trust anchor, `untrusted` the rest of the chain. */
function verify(leaf: string, anchor: string, untrusted: string | undefined, purpose: string, extra: string[] = []) {
  return openssl(['verify', '-x509_strict', '-purpose', purpose, ...extra, '-CAfile', anchor, ...(untrusted ? ['-untrusted', untrusted] : []), leaf]);
}
const verifies = (r: ReturnType<typeof openssl>) => assert.equal(r.status, 0, r.stdout + r.stderr);
async function issue(role: 'server' | 'client', name: string): Promise<string> {
  const r = await cli(['--json', 'issue', role, role === 'server' ? `${name}.acme.internal` : name, '--out', p(name)]);
  expectOk(r);
  return json(r).serial;
}
async function status(): Promise<any> {
  const r = await cli(['--json', 'rotation', 'status']);
  expectOk(r);
  return json(r);
}

const skip = { skip: !hasTool('openssl') && process.env.MUTUAL_INTEROP !== 'require' ? 'openssl is not installed' : false };
let oldRoot: string;

before(async () => {
  expectOk(await cli(['init', '--trust-domain', 'acme.internal', '--name', 'Acme', '--offline-dir', offline]));
  fs.copyFileSync(ca('root.pem'), p('old-root.pem'));
  fs.copyFileSync(ca('server-ca.pem'), p('old-server-ca.pem'));
  fs.copyFileSync(ca('client-ca.pem'), p('old-client-ca.pem'));
  oldRoot = fp(ca('root.pem'));
});

test('ok/before any rotation the trust bundle is the root, and status says none', skip, async () => {
  const b = await cli(['bundle']);
  expectOk(b);
  assert.equal(b.stdout, fs.readFileSync(ca('root.pem'), 'utf8'));
  assert.equal((await status()).rotation.phase, 'none');
  expectError(await cli(['root', 'retire']), 'ROTATION_NOT_STARTED');
  expectError(await cli(['root', 'install', '--from', offline]), 'ROTATION_NOT_STARTED');
});

test('ok/root rotate makes a new root and both cross-certificates; OpenSSL verifies each', skip, async () => {
  await issue('server', 'old1');
  await issue('server', 'old2');
  await issue('client', 'oldclient');
  const r = await cli(['--json', 'root', 'rotate', '--offline-dir', offline, '--retire-after', '30d']);
  expectOk(r);
  assert.equal(json(r).oldRoot, oldRoot);
  assert.equal(fp(off('root.prev.pem')), oldRoot, 'the old root is root.prev.pem');
  assert.equal(fp(off('root.pem')), json(r).newRoot);
  assert.ok(fs.existsSync(off('root.prev.key.pem')) && fs.existsSync(off('root.key.pem')));
  assert.match(fs.readFileSync(off('root.key.pem'), 'utf8'), /ENCRYPTED PRIVATE KEY/, 'the new root key is encrypted');
  verifies(openssl(['verify', '-x509_strict', '-CAfile', off('root.pem'), off('root.pem')]));
  verifies(openssl(['verify', '-x509_strict', '-CAfile', off('root.prev.pem'), off('cross', 'new-by-old.pem')]));
  verifies(openssl(['verify', '-x509_strict', '-CAfile', off('root.pem'), off('cross', 'old-by-new.pem')]));
  const text = openssl(['x509', '-in', off('cross', 'new-by-old.pem'), '-noout', '-text']).stdout;
  assert.match(text, /CA:TRUE, pathlen:2/, 'the new root\'s pathLen (ROOT_PATH_LEN, 2)');
  assert.match(openssl(['x509', '-in', off('cross', 'old-by-new.pem'), '-noout', '-text']).stdout, /CA:TRUE, pathlen:2/, 'the old root\'s (ROOT_PATH_LEN, as init makes it)');
  assert.match(text, /Certificate Sign, CRL Sign/);
  // The same name (the cross-certificates are self-issued), another key.
  const subject = (f: string) => openssl(['x509', '-in', f, '-noout', '-subject']).stdout;
  assert.equal(subject(off('root.pem')), subject(off('root.prev.pem')));
  assert.notEqual(fp(off('root.pem')), oldRoot);
});

test('fail/rotate twice is refused', skip, async () => {
  expectError(await cli(['root', 'rotate', '--offline-dir', offline]), 'ROTATION_IN_PROGRESS');
});

test('fail/install from another CA\'s folder, and a cross-certificate whose key does not match', skip, async () => {
  const h2 = p('home2');
  const o2 = p('offline2');
  expectOk(await cli(['init', '--trust-domain', 'other.internal', '--offline-dir', o2], h2));
  expectOk(await cli(['root', 'rotate', '--offline-dir', o2], h2));
  expectError(await cli(['root', 'install', '--from', o2]), 'ROTATION_WRONG_CA');
  // A copy of the right folder whose new-by-old is the other cross-certificate (the old root's key).
  const bad = p('offline-bad');
  fs.cpSync(offline, bad, { recursive: true });
  fs.copyFileSync(path.join(bad, 'cross', 'old-by-new.pem'), path.join(bad, 'cross', 'new-by-old.pem'));
  expectError(await cli(['root', 'install', '--from', bad]), 'ROTATION_CROSS_INVALID');
  assert.ok(!fs.existsSync(ca('roots.pem')), 'nothing was installed');
});

test('ok/root install writes the two-root bundle and starts the overlap; root.pem stays the old root', skip, async () => {
  expectOk(await cli(['root', 'install', '--from', offline]));
  const bundle = fs.readFileSync(ca('roots.pem'), 'utf8');
  const newRoot = fp(off('root.pem'));
  assert.match(bundle, new RegExp(`# mutual-root ${oldRoot}\\n# not-after \\S+\\n# retire-at \\S+\\n-----BEGIN CERTIFICATE-----`));
  assert.match(bundle, new RegExp(`# mutual-root ${newRoot}\\n# not-after \\S+\\n-----BEGIN CERTIFICATE-----`));
  const rotation = JSON.parse(fs.readFileSync(ca('rotation.json'), 'utf8'));
  assert.equal(rotation.phase, 'overlap');
  assert.equal(rotation.newRoot, newRoot);
  assert.equal(new Date(rotation.retireAt).getTime() - new Date(rotation.startedAt).getTime(), 30 * 86_400_000);
  assert.equal(fp(ca('root.pem')), oldRoot);
  assert.equal((await cli(['bundle'])).stdout, bundle, '`mutual bundle` prints the trust bundle');
  expectError(await cli(['root', 'install', '--from', offline]), 'ROTATION_IN_PROGRESS');
  expectError(await cli(['root', 'retire']), 'ROTATION_INTERMEDIATES_PENDING');
  const s = await status();
  assert.equal(s.oldRootLeaves.count, 4, 'old1, old2, oldclient and the admin');
});

test('ok/new intermediates under the new root; root.pem becomes the new root once both are in', skip, async () => {
  for (const role of ['server', 'client']) {
    expectOk(await cli(['intermediate', 'csr', '--role', role, '--new-key', '--out', p(`${role}.csr`)]));
    expectOk(await cli(['offline', 'sign-intermediate', p(`${role}.csr`), '--role', role, '--offline-dir', offline, '--out', p(`new-${role}-ca.pem`)]));
    verifies(openssl(['verify', '-x509_strict', '-CAfile', off('root.pem'), p(`new-${role}-ca.pem`)]));
    const r = await cli(['--json', 'intermediate', 'install', p(`new-${role}-ca.pem`), '--role', role]);
    expectOk(r);
    assert.equal(json(r).rootPromoted, role === 'client');
  }
  assert.equal(fp(ca('root.pem')), fp(off('root.pem')), 'root.pem is the new root');
  assert.equal(fp(ca('roots.pem')), fp(off('root.pem')), 'the bundle starts with the current root (the one tokens pin)');
  assert.match(fs.readFileSync(ca('roots.pem'), 'utf8'), new RegExp(`# mutual-root ${oldRoot}\\n# not-after \\S+\\n# retire-at `), 'the old root is still in it, retiring');
});

test('ok/leaves: a new one verifies with only the old root and with only the new; an old one with only the new root', skip, async () => {
  await issue('server', 'new1');
  await issue('client', 'newclient');
  const newByOld = fs.readFileSync(ca('cross', 'new-by-old.pem'), 'utf8');
  assert.equal(fs.readFileSync(p('new1', 'chain.pem'), 'utf8'), fs.readFileSync(p('new-server-ca.pem'), 'utf8') + newByOld, 'chain: the intermediate, then new-by-old');
  for (const [leaf, purpose] of [['new1', 'sslserver'], ['newclient', 'sslclient']]) {
    verifies(verify(p(leaf, 'cert.pem'), p('old-root.pem'), p(leaf, 'chain.pem'), purpose));
    verifies(verify(p(leaf, 'cert.pem'), off('root.pem'), p(leaf, 'chain.pem'), purpose));
  }
  const oldServer = cat(p('old-server-chain.pem'), p('old-server-ca.pem'), ca('cross', 'old-by-new.pem'));
  const oldClient = cat(p('old-client-chain.pem'), p('old-client-ca.pem'), ca('cross', 'old-by-new.pem'));
  verifies(verify(p('old1', 'cert.pem'), off('root.pem'), oldServer, 'sslserver'));
  verifies(verify(p('oldclient', 'cert.pem'), off('root.pem'), oldClient, 'sslclient'));
  assert.notEqual(verify(p('old1', 'cert.pem'), off('root.pem'), p('old-server-ca.pem'), 'sslserver').status, 0, 'not without old-by-new');
  // GnuTLS too (it counts self-issued certificates against pathLen, which roots' pathLen 2 allows
  // for; test/e2e/root-rollover.test.ts checks the new-by-old paths under the old root with it).
  if (hasTool('certtool')) {
    const gnutls = (anchor: string, ...chain: string[]) => run('certtool', ['--verify', '--load-ca-certificate', anchor, '--infile', cat(p(`gnutls-${crypto.randomUUID()}.pem`), ...chain)]);
    const both = cat(p('both-roots.pem'), p('old-root.pem'), off('root.pem'));
    for (const [anchor, chain] of [[off('root.pem'), [p('new1', 'fullchain.pem')]], [both, [p('new1', 'fullchain.pem')]], [off('root.pem'), [p('old1', 'cert.pem'), oldServer]]] as const) {
      const r = gnutls(anchor, ...chain);
      assert.match(r.stdout + r.stderr, /Chain verification output: Verified/, r.stdout + r.stderr);
    }
  }
});

test('ok/emergency: the old server intermediate revoked at the root CRL; status counts its leaves down', skip, async () => {
  expectOk(await cli(['offline', 'crl', '--offline-dir', offline, '--revoke', p('old-server-ca.pem'), '--reason', 'keyCompromise']));
  const serial = new crypto.X509Certificate(fs.readFileSync(p('old-server-ca.pem'))).serialNumber;
  const crlText = openssl(['crl', '-inform', 'DER', '-in', ca('root.crl'), '-noout', '-text']).stdout;
  assert.match(crlText.replace(/:/g, '').toUpperCase(), new RegExp(`SERIAL NUMBER ${serial}`));
  verifies(openssl(['crl', '-inform', 'DER', '-in', ca('root.crl'), '-noout', '-CAfile', p('old-root.pem')]));
  // OpenSSL with the CRLs of the whole path refuses a leaf under it.
  const authority = await openAuthority({ home, passphrase: TEST_PASSPHRASE });
  try {
    for (const r of authority.retired) await authority.writeCrlOf(r);
  } finally {
    await authority.close();
  }
  const crls = [ca('root.crl'), ...fs.readdirSync(ca()).filter((f) => /^server\.prev-.*\.crl$/.test(f)).map((f) => ca(f))];
  const pemCrls = crls.map((f, i) => {
    const out = p(`crl${i}.pem`);
    openssl(['crl', '-inform', 'DER', '-in', f, '-out', out]);
    return ['-CRLfile', out];
  }).flat();
  const refused = verify(p('old1', 'cert.pem'), p('old-root.pem'), p('old-server-ca.pem'), 'sslserver', ['-crl_check_all', ...pemCrls]);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stdout + refused.stderr, /certificate revoked/);
  let s = await status();
  assert.equal(s.revokedIntermediateLeaves.count, 2, 'old1 and old2');
  assert.ok(s.intermediates.some((i: any) => !i.current && i.role === 'server-ca' && i.revokedAtRoot));
  // Reissued: the old one revoked, a new one under the new intermediate.
  expectOk(await cli(['revoke', s.revokedIntermediateLeaves.serials[0].serial, '--reason', 'superseded']));
  await issue('server', 'reissued');
  s = await status();
  assert.equal(s.revokedIntermediateLeaves.count, 1);
});

test('ok/retire: refused while old leaves are valid, allowed once they are revoked or expired', skip, async () => {
  const refused = await cli(['--json', 'root', 'retire']);
  expectError(refused, 'ROTATION_LEAVES_REMAIN');
  const s = await status();
  assert.equal(s.oldRootLeaves.count, 3, 'old2, oldclient and the admin');
  // With the clock past their expiry, none remain (no sleep: the status takes the time).
  const store = (await openInventory(home))!;
  try {
    const later = new Date(Date.now() + 400 * 86_400_000);
    assert.equal((await rotationStatus({ home, store, now: later })).oldRootLeaves.count, 0);
  } finally {
    await store.close();
  }
  for (const x of s.oldRootLeaves.serials) expectOk(await cli(['revoke', x.serial, '--reason', 'superseded']));
  expectOk(await cli(['root', 'retire']));
  const bundle = fs.readFileSync(ca('roots.pem'), 'utf8');
  assert.ok(!bundle.includes(oldRoot), 'the old root left the bundle');
  assert.ok(bundle.includes(fp(off('root.pem'))));
  assert.equal(JSON.parse(fs.readFileSync(ca('rotation.json'), 'utf8')).phase, 'retired');
  assert.equal((await status()).rotation.phase, 'retired');
  expectError(await cli(['root', 'retire']), 'ROTATION_NOT_STARTED');
});
