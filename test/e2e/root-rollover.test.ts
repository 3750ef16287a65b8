/**
 * Issue 17, end to end: the CA's keys and then its root roll over while requests flow, and not one
 * request fails.
 *
 * A CA (`mutual serve`, in process, on the test's clock) and behind it four relying parties that
 * terminate mTLS: nginx and HAProxy (Debian's), `mutual gateway` and an SDK server. One `mutual
 * agent` keeps each party's server certificate, client-CA bundle and CRLs on disk and reloads it.
 * Client loops (curl and Node, each with a certificate issued at a different moment: under the old
 * root, cross-signed, under the new root) send requests back to back through every party during
 * the whole sequence. At every step every chain in use is judged by OpenSSL (`verify -x509_strict`)
 * and GnuTLS (`certtool --verify`).
 *
 * 1. New intermediates (new keys) under the same root; the agent deploys both keys' CAs and renews.
 * 2. The emergency path: intermediates revoked at the root's CRL; once the agent refreshed the CRLs
 *    (an explicit cycle on the moved clock, no sleep) nginx and HAProxy refuse their leaves; the
 *    gateway and the SDK, which fetch the root's CRL from the client CA's CRL distribution point, too.
 * 3. The root rollover: `root rotate`, `root install`, new intermediates under the new root; the
 *    agent deploys the two-root bundle (accepting the new root through new-by-old) and renews every
 *    certificate under the retiring root; `root retire`; the agent drops the old root, after which a
 *    client with an old-root-only chain is refused by every party.
 *
 * GnuTLS 3.7 counts the self-issued new-by-old against the old root's pathLen, which RFC 5280
 * does not; roots have pathLen 2 (ROOT_PATH_LEN) so it verifies those paths. Time is the test's clock, a day behind the
 * wall clock (the parties judge by the wall clock). Go's crypto/x509 (go-verify.go, built at run
 * time from Debian's golang-go) is the third verifier of every chain; it reads no CRLs.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Agent } from '../../src/agent/agent.ts';
import { servedSerial } from '../../src/agent/hooks.ts';
import { renewRootCrl } from '../../src/ca/offline.ts';
import { installRoot, retireRoot, rotateRoot } from '../../src/ca/index.ts';
import { call } from '../../src/sdk/ca-client.ts';
import { TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { hasTool, requireTool } from '../helpers/tools.ts';
import { EVENT_WAIT_MS, hostDir, manifestFor, serialOf, startAgentCa, testClock, until, type AgentTestCa } from '../agent/harness.ts';
import { prepareParties, partiesManifest, partyFiles, PARTY_NAMES, startParties, withoutReloads, type PartyName, type RelyingParty } from './relying-parties.ts';
import { Load, untilRefused, curlOnce, type ClientCredential, type Target } from './load.ts';
import { judgeChains, judgeRefused, type ChainInUse } from './verify-chains.ts';

/** Leaf lifetime: every certificate the test issues is valid on the wall clock too. */
const LEAF_SECONDS = 2 * 86_400;
/** Successful requests through every party, per loop, awaited at each step. */
const PER_STEP = 5;
const TOOLS = [['nginx', 'nginx'], ['haproxy', 'haproxy'], ['curl', 'curl'], ['openssl', 'openssl'], ['certtool', 'gnutls-bin'], ['go', 'golang-go']] as const;
const missing = TOOLS.filter(([cmd]) => !hasTool(cmd));

describe('key and root rollover under load', { skip: missing.length === 0 || process.env.MUTUAL_INTEROP === 'require' ? false : `not installed: ${missing.map(([, p]) => p).join(', ')}` }, () => {
  const clock = testClock();
  let ca: AgentTestCa;
  let dir: string;
  let agent: Agent;
  let parties: Record<PartyName, RelyingParty>;
  let targets: Target[];
  let load: Load;
  const creds: Record<string, ClientCredential> = {};
  /** What clients trust for the parties' server certificates. */
  const clientTrust = () => ({ file: path.join(dir, 'client-trust.pem'), pem: fs.readFileSync(path.join(dir, 'client-trust.pem'), 'utf8') });

  /** Issues a client certificate from the client CA in force now and writes it with its chain. */
  async function issueClient(name: string): Promise<ClientCredential> {
    const r = await ca.tc.ca.issue({ role: 'client', names: { dns: [], ip: [], uri: [`spiffe://acme.internal/e2e/${name}`] }, actor: 'test' });
    const fullchainFile = path.join(dir, `${name}.fullchain.pem`);
    const keyFile = path.join(dir, `${name}.key.pem`);
    const key = r.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string;
    fs.writeFileSync(fullchainFile, r.fullchainPem);
    fs.writeFileSync(keyFile, key, { mode: 0o600 });
    creds[name] = { name, fullchainFile, keyFile, fullchain: r.fullchainPem, key };
    return creds[name];
  }

  /** Every chain in use: the clients' and what each party serves. */
  const chainsInUse = (clients: string[]): ChainInUse[] => [
    ...clients.map((n) => ({ name: `client-${n}`, fullchainFile: creds[n].fullchainFile, purpose: 'client' as const })),
    ...PARTY_NAMES.map((n) => ({ name: `server-${n}`, fullchainFile: partyFiles(dir, n).fullchain, purpose: 'server' as const })),
  ];

  /** Both verifiers on every chain in use, against the root (the only one until the root rolls). */
  async function judgeStep(step: string, clients: string[]): Promise<void> {
    const failures = await judgeChains(chainsInUse(clients), clientTrust().file, path.join(dir, 'judged', step));
    assert.deepEqual(failures, [], `${step}: every chain in use verifies`);
  }

  /** One agent cycle on the moved clock (the trust refresh comes due); it must succeed. */
  async function agentCycle(what: string, force: string[] = []): Promise<void> {
    clock.advance(1000);
    const r = await agent.cycle({ ignoreBackoff: true, force });
    assert.equal(r.exitCode, 0, `${what}: ${JSON.stringify(r)}\n${Object.values(parties).map((p) => p.log().slice(-500)).join('\n')}`);
  }

  /** Waits until `cred` passes through every party (after a reload that made it acceptable). */
  async function untilAccepted(cred: ClientCredential, what: string): Promise<void> {
    for (const t of targets) {
      await until(async () => (await curlOnce(cred, t, clientTrust().file)) === 200, EVENT_WAIT_MS, `${t.party} to accept ${cred.name} (${what}): ${parties[t.party].log().slice(-500)}`);
    }
  }

  before(async (t) => {
    for (const [cmd, pkg] of TOOLS) if (!requireTool(t as never, cmd, pkg)) return;
    ca = await startAgentCa({ leafSeconds: LEAF_SECONDS, clock });
    dir = hostDir();
    const ports = await prepareParties(dir);
    fs.writeFileSync(path.join(dir, 'client-trust.pem'), ca.root);
    for (const name of PARTY_NAMES) fs.writeFileSync(path.join(dir, `${name}.token`), await ca.token(['localhost', '127.0.0.1']));
    const raw = partiesManifest(dir, ca, { renewalFraction: 0.5 });
    // First run before the parties exist (what ExecStartPre=mutual agent once does): no reloads.
    const boot = await new Agent({ manifest: manifestFor(dir, withoutReloads(raw)), now: clock.now }).cycle({ ignoreBackoff: true });
    assert.equal(boot.exitCode, 0, JSON.stringify(boot));
    agent = new Agent({ manifest: manifestFor(dir, raw), now: clock.now });
    parties = await startParties(dir, ports);
    targets = PARTY_NAMES.map((p) => ({ party: p, port: parties[p].port }));
    load = new Load(targets, clientTrust);
    await issueClient('early');
    await untilAccepted(creds.early, 'start');
  });

  after(async () => {
    await load?.stop();
    for (const p of Object.values(parties ?? {})) await p.close();
    await ca?.close();
    if (dir && !process.env.E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    // E2E_KEEP=1 keeps the folder (agent state, trust files, chains judged) to look at after a failure.
    if (process.env.E2E_KEEP) console.log(`kept ${dir}`);
  });

  it('ok/new intermediates under load: the agent deploys both keys\' CAs and renews every party\'s certificate; zero failed requests', async (tc) => {
    load.start(creds.early, 'curl');
    load.start(creds.early, 'node');
    await load.more(PER_STEP, 'start');
    await judgeStep('0-start', ['early']);

    // 1. The client CA gets a new key; the agent deploys the bundles with both client CAs.
    await ca.rotate('client-ca');
    await agentCycle('client CA rotated');
    await issueClient('fresh');
    await untilAccepted(creds.fresh, 'new client CA');
    load.start(creds.fresh, 'curl');
    load.start(creds.fresh, 'node');
    await load.more(PER_STEP, 'new client CA deployed');
    await judgeStep('1-client-ca', ['early', 'fresh']);

    // 2. The server CA gets a new key; the agent renews every party's certificate onto it.
    const before = Object.fromEntries(PARTY_NAMES.map((n) => [n, serialOf(partyFiles(dir, n).fullchain)]));
    // What a party served under the old server CA, for the emergency case.
    fs.copyFileSync(partyFiles(dir, 'nginx').fullchain, path.join(dir, 'old-server.fullchain.pem'));
    await ca.rotate('server-ca');
    await agentCycle('server CA rotated', [...PARTY_NAMES]);
    for (const n of PARTY_NAMES) {
      const want = serialOf(partyFiles(dir, n).fullchain);
      assert.notEqual(want, before[n], `${n} got a new certificate`);
      await until(async () => (await servedSerial({ host: '127.0.0.1', port: parties[n].port, serverName: 'localhost' })) === want, EVENT_WAIT_MS, `${n} to serve its renewed certificate`);
    }
    await load.more(PER_STEP, 'every party renewed');
    await judgeStep('2-server-ca', ['early', 'fresh']);

    await load.stop();
    for (const t of load.tallies) tc.diagnostic(`${t.name}: ${PARTY_NAMES.map((p) => `${p} ${t.ok[p] ?? 0}`).join(', ')}, ${t.failures.length} failed`);
    assert.deepEqual(load.failures(), [], 'no request failed');
    for (const t of load.tallies) for (const p of PARTY_NAMES) assert.ok((t.ok[p] ?? 0) >= 3 * PER_STEP || t.name.endsWith('fresh'), `${t.name} through ${p}: ${t.ok[p]}`);
  });

  it('ok/emergency: the retired client CA revoked at the root\'s CRL; after the agent\'s refresh every party refuses its leaves and still accepts the new key\'s', async (tc) => {
    const retired = ca.tc.ca.retired.find((r) => r.role === 'client-ca');
    assert.ok(retired, 'the old client CA is retired');
    const der = await renewRootCrl({ offlineDir: ca.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, revoke: { certificate: retired.pem, reason: 'keyCompromise' }, now: clock.now() });
    fs.writeFileSync(ca.tc.layout.rootCrl, der);
    // The documented refresh: the agent's trust refresh (500 ms here) comes due on the clock.
    await agentCycle('root CRL refreshed');
    for (const t of targets) {
      // Every party reads the root's CRL: OpenSSL checks every level's CRL in nginx and HAProxy (the
      // agent's CRL file has the root's); the gateway's and the SDK's verifier fetch it from the
      // client CA's CRL distribution point.
      await tc.test(`ok/${t.party} refuses a leaf of the revoked client CA and accepts the new key's`, async () => {
        const code = await untilRefused(creds.early, t, clientTrust().file, `${t.party} to refuse a leaf of the revoked client CA: ${parties[t.party].log().slice(-500)}`);
        assert.ok(code === 0 || (code >= 400 && code < 500), `${t.party} answered ${code}`);
        assert.equal(await curlOnce(creds.fresh, t, clientTrust().file), 200, `${t.party} still accepts the new key's leaf`);
      });
    }
    // Both verifiers, with the root's and the client CAs' CRLs the agent deployed.
    const crl = partyFiles(dir, 'nginx').crl;
    assert.deepEqual(await judgeRefused({ name: 'client-early', fullchainFile: creds.early.fullchainFile, purpose: 'client' }, clientTrust().file, path.join(dir, 'judged', '3-revoked'), crl), []);
    assert.deepEqual(await judgeChains([{ name: 'client-fresh', fullchainFile: creds.fresh.fullchainFile, purpose: 'client' }], clientTrust().file, path.join(dir, 'judged', '3-fresh'), crl), []);
    // The old server CA revoked at the root's CRL too: the parties' certificates, replaced by the
    // agent in the first case, chain through the new server CA and pass with every level's CRL;
    // what a party served before is refused by both verifiers.
    const oldServerCa = ca.tc.ca.retired.find((r) => r.role === 'server-ca');
    assert.ok(oldServerCa, 'the old server CA is retired');
    const der2 = await renewRootCrl({ offlineDir: ca.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, revoke: { certificate: oldServerCa.pem, reason: 'keyCompromise' }, now: clock.now() });
    fs.writeFileSync(ca.tc.layout.rootCrl, der2);
    await agentCycle('root CRL refreshed again');
    const serverCrls = path.join(dir, 'server-crls.pem');
    const all = await call(`${ca.url}/crl/server.all.pem`, { tls: { ca: ca.root }, raw: true });
    fs.writeFileSync(serverCrls, Buffer.concat([all.body, fs.readFileSync(crl)]));
    const served = PARTY_NAMES.map((n) => ({ name: `server-${n}`, fullchainFile: partyFiles(dir, n).fullchain, purpose: 'server' as const }));
    assert.deepEqual(await judgeChains(served, clientTrust().file, path.join(dir, 'judged', '3-served'), serverCrls), []);
    const oldServed = { name: 'old-server', fullchainFile: path.join(dir, 'old-server.fullchain.pem'), purpose: 'server' as const };
    assert.deepEqual(await judgeRefused(oldServed, clientTrust().file, path.join(dir, 'judged', '3-old-served'), serverCrls), []);
    for (const t of targets) assert.equal(await curlOnce(creds.fresh, t, clientTrust().file), 200, `${t.party} still serves`);
  });

  it('ok/root rollover under load: rotate, install, new intermediates, the agent deploys both roots and renews onto the new root, old root retired; zero failed requests, then old-root-only chains are refused by every party', async (tc) => {
    const file = (name: string, pem: string) => {
      fs.writeFileSync(path.join(dir, name), pem);
      return path.join(dir, name);
    };
    const oldRoot = file('old-root.pem', ca.root);
    await issueClient('preroot');
    load.start(creds.fresh, 'curl');
    load.start(creds.preroot, 'node');
    await load.more(PER_STEP, 'before the root rotation');

    // 1. Offline: a new root and the cross-certificates. Online: the overlap starts.
    const rotated = await rotateRoot({ offlineDir: ca.tc.offlineDir, rootPassphrase: TEST_PASSPHRASE, retireAfterDays: 30, now: clock.now() });
    const newRoot = file('new-root.pem', rotated.newRoot.pem);
    const both = file('both-roots.pem', ca.root + rotated.newRoot.pem);
    await installRoot({ home: ca.tc.home, from: ca.tc.offlineDir, store: ca.tc.ca.store, now: clock.now() });
    await load.more(PER_STEP, 'root installed');

    // 2. New intermediates under the new root (ca/root.pem becomes the new root once both are in).
    await ca.rotate('client-ca');
    await ca.rotate('server-ca');
    assert.equal(fs.readFileSync(ca.tc.layout.rootCert, 'utf8'), rotated.newRoot.pem, 'root.pem is the new root');
    await load.more(PER_STEP, 'new intermediates');

    // 3. The agent: both roots into every bundle (reloads), and every certificate under the root
    //    now retiring renewed onto the new intermediates, on its own.
    const before = Object.fromEntries(PARTY_NAMES.map((n) => [n, serialOf(partyFiles(dir, n).fullchain)]));
    await agentCycle('overlap');
    for (const n of PARTY_NAMES) {
      const want = serialOf(partyFiles(dir, n).fullchain);
      assert.notEqual(want, before[n], `the agent renewed ${n}'s certificate`);
      await until(async () => (await servedSerial({ host: '127.0.0.1', port: parties[n].port, serverName: 'localhost' })) === want, EVENT_WAIT_MS, `${n} to serve its certificate under the new root`);
    }
    // Clients of the new root join: one whose chain carries new-by-old, one with the new intermediate only.
    await issueClient('crossed');
    const plain = creds.crossed.fullchain.slice(0, creds.crossed.fullchain.indexOf('-----END CERTIFICATE-----', creds.crossed.fullchain.indexOf('-----END CERTIFICATE-----') + 1) + 26);
    creds.newroot = { ...creds.crossed, name: 'newroot', fullchain: plain, fullchainFile: file('newroot.fullchain.pem', plain) };
    assert.ok(creds.crossed.fullchain.length > plain.length, 'during the overlap the CA sends new-by-old in the chain');
    await untilAccepted(creds.crossed, 'overlap');
    await untilAccepted(creds.newroot, 'overlap');
    load.start(creds.crossed, 'curl');
    load.start(creds.crossed, 'node');
    load.start(creds.newroot, 'node');
    await load.more(PER_STEP, 'overlap deployed');
    const clients = (names: string[]) => names.map((n) => ({ name: `client-${n}`, fullchainFile: creds[n].fullchainFile, purpose: 'client' as const }));
    const servers = PARTY_NAMES.map((n) => ({ name: `server-${n}`, fullchainFile: partyFiles(dir, n).fullchain, purpose: 'server' as const }));
    // An old-root-only party verifies everything (through new-by-old); a new-root-only one what the new root issued.
    const overlapChains = [...clients(['fresh', 'preroot', 'crossed']), ...servers];
    assert.deepEqual(await judgeChains(overlapChains, oldRoot, path.join(dir, 'judged', 'r3-old'), undefined, ['openssl']), []);
    // GnuTLS (3.7) counts the self-issued new-by-old against the old root's pathLen (RFC 5280
    // 6.1.4 (l) exempts self-issued certificates); roots have pathLen 2 for it (ROOT_PATH_LEN), so a
    // GnuTLS party that trusts the old root only accepts the new root's chains too.
    await tc.test('ok/gnutls with the old root only verifies the chains through new-by-old', async () => {
      assert.deepEqual(await judgeChains(overlapChains, oldRoot, path.join(dir, 'judged', 'r3-old-gnutls'), undefined, ['gnutls']), []);
    });
    assert.deepEqual(await judgeChains([...clients(['crossed', 'newroot']), ...servers], newRoot, path.join(dir, 'judged', 'r3-new')), []);
    assert.deepEqual(await judgeChains(clients(['fresh', 'preroot', 'crossed', 'newroot']), both, path.join(dir, 'judged', 'r3-both')), []);

    // 4. The old root retired: old-root clients stop first (their leaves are to be refused), the
    //    others trust the new root only from now on.
    await load.stop('fresh');
    await load.stop('preroot');
    await retireRoot({ home: ca.tc.home, store: ca.tc.ca.store, force: true, now: clock.now() });
    fs.writeFileSync(path.join(dir, 'client-trust.pem.tmp'), rotated.newRoot.pem);
    fs.renameSync(path.join(dir, 'client-trust.pem.tmp'), path.join(dir, 'client-trust.pem'));
    await agentCycle('retired');
    await load.more(PER_STEP, 'old root retired');
    await load.stop();
    for (const t of load.tallies) tc.diagnostic(`${t.name}: ${PARTY_NAMES.map((p) => `${p} ${t.ok[p] ?? 0}`).join(', ')}, ${t.failures.length} failed`);
    assert.deepEqual(load.failures(), [], 'no request failed');
    assert.deepEqual(await judgeChains([...clients(['crossed', 'newroot']), ...servers], newRoot, path.join(dir, 'judged', 'r4-new')), []);
    for (const n of ['fresh', 'preroot']) assert.deepEqual(await judgeRefused({ name: `client-${n}`, fullchainFile: creds[n].fullchainFile, purpose: 'client' }, newRoot, path.join(dir, 'judged', 'r4-refused')), []);
    for (const t of targets) {
      for (const n of ['fresh', 'preroot']) await untilRefused(creds[n], t, clientTrust().file, `${t.party} to refuse ${n}, an old-root-only chain: ${parties[t.party].log().slice(-500)}`);
      assert.equal(await curlOnce(creds.crossed, t, clientTrust().file), 200, `${t.party} accepts the new root's client`);
    }
  });
});
