/**
 * agent.yaml, deployment-file headers, the schedule and the exit codes: table-driven, no I/O
 * beyond a temp folder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parseManifest } from '../../src/agent/manifest.ts';
import { parseDuration } from '../../src/core/duration.ts';
import { parseTemplate, renderTemplate, templateOwnership } from '../../src/agent/deploy-templates.ts';
import { renewalTime, retryDelay } from '../../src/agent/schedule.ts';
import { AGENT_EXIT, exitCodeFor } from '../../src/agent/exit-codes.ts';
import { MutualError } from '../../src/core/errors.ts';
import { tempDir } from '../helpers/test-ca.ts';

const FP = 'ab'.repeat(32);
const base = `
ca:
  url: https://ca.acme.internal:8443
  rootFingerprint: "${FP}"
stateDir: ./state
certificates:
  - name: api
    profile: server
    names: [api.acme.internal, 10.0.0.5]
    tokenFile: ./api.token
    files: { cert: /etc/x/api.crt, key: /etc/x/api.key }
`;
const dir = tempDir('mutual-agent-manifest-');
const file = path.join(dir, 'agent.yaml');
const parse = (text: string) => parseManifest(text, file);
const detailOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof MutualError, String(e));
    return `${e.code}: ${e.fields.detail}`;
  }
  assert.fail('expected an error');
};

test('ok/manifest/minimal resolves paths, defaults and names', () => {
  const m = parse(base);
  assert.equal(m.stateDir, path.join(dir, 'state'));
  assert.equal(m.certificates[0].tokenFile, path.join(dir, 'api.token'));
  assert.deepEqual(m.certificates[0].names, { dns: ['api.acme.internal'], ip: ['10.0.0.5'], uri: [] });
  assert.equal(m.renewal.fraction, 2 / 3);
  assert.equal(m.certificates[0].keyMode, 0o600);
  assert.equal(m.certificates[0].ownership.mode, 0o644);
  assert.equal(m.certificates[0].newKey, true);
  assert.equal(m.ca?.rootFingerprint, FP);
});

test('ok/manifest/full: client identity, hooks, verify, pkcs12, trust files beside the certificate', () => {
  const m = parse(`
ca: { url: "https://ca:8443/", root: ./root.pem }
stateDir: /var/lib/mutual-agent
renewal: { fraction: 0.6, jitter: 0.2, retryInitial: 5s, retryMax: 10m, warnFraction: 0.2 }
trust:
  refresh: 10m
  crls: [{ path: /etc/nginx/crl.pem, issuers: [root, client], reload: { signal: HUP, pidFile: /run/nginx.pid } }]
templates: { dir: ./deploy.d }
metricsFile: /var/lib/node_exporter/mutual.prom
certificates:
  - name: payments
    profile: client
    identity: spiffe://acme.internal/prod/payments
    keyType: ed25519
    owner: 0
    group: 0
    mode: '0640'
    keyMode: '0600'
    files:
      fullchain: /etc/app/client.pem
      key: /etc/app/client.key
      pkcs12: { path: /etc/app/client.p12, passwordFile: /etc/app/p12.pass }
      bundle: /etc/app/ca.pem
    check: [app, --check]
    reload: systemctl reload app
    commandTimeout: 5s
    verify: { port: 8443 }
`);
  const c = m.certificates[0];
  assert.equal(m.ca?.url, 'https://ca:8443');
  assert.equal(m.ca?.rootFile, path.join(dir, 'root.pem'));
  assert.deepEqual(c.names.uri, ['spiffe://acme.internal/prod/payments']);
  assert.deepEqual(c.hooks.check, { argv: ['app', '--check'] });
  assert.deepEqual(c.hooks.reload, { shell: 'systemctl reload app' });
  assert.equal(c.hooks.timeoutMs, 5000);
  assert.deepEqual(c.ownership, { uid: 0, gid: 0, mode: 0o640 });
  assert.equal(c.verify?.host, '127.0.0.1');
  assert.equal(m.trust.refreshMs, 600_000);
  assert.deepEqual(m.trust.crls[0].hooks.reload, { signal: 'SIGHUP', pidFile: '/run/nginx.pid' });
  // The bundle beside a client certificate: the root and the server CA (to check servers).
  assert.deepEqual(m.trust.bundles[0].include, ['root', 'server-ca']);
  assert.equal(m.trust.bundles[0].source, 'certificates[0] (payments).files.bundle');
  assert.equal(m.renewal.retryInitialMs, 5000);
});

const acme = `
stateDir: ./state
certificates:
  - name: web
    profile: server
    names: [web.acme.internal]
    acme:
      directory: https://ca.acme.internal/acme/directory
      eabKeyId: kid-1
      eabHmacKeyFile: ./eab.key
      challenge: { type: http-01, listen: "0.0.0.0:80" }
      ca: ./acme-ca.pem
    files: { fullchain: /etc/x/web.pem, key: /etc/x/web.key }
`;

test('ok/manifest/acme: no ca section, challenge forms resolved', () => {
  const m = parse(acme);
  assert.equal(m.ca, undefined);
  const a = m.certificates[0].acme!;
  assert.equal(a.directory, 'https://ca.acme.internal/acme/directory');
  assert.deepEqual(a.challenge, { type: 'http-01', listen: { host: '0.0.0.0', port: 80 } });
  assert.equal(a.eabHmacKeyFile, path.join(dir, 'eab.key'));
  assert.equal(a.caFile, path.join(dir, 'acme-ca.pem'));
  assert.deepEqual(parse(acme.replace('{ type: http-01, listen: "0.0.0.0:80" }', '{ type: http-01, webroot: ./www }')).certificates[0].acme!.challenge, { type: 'http-01', webroot: path.join(dir, 'www') });
  assert.deepEqual(parse(acme.replace('{ type: http-01, listen: "0.0.0.0:80" }', '{ type: dns-01, hook: ./dns-hook }')).certificates[0].acme!.challenge, { type: 'dns-01', hook: path.join(dir, 'dns-hook') });
  assert.deepEqual(parse(acme.replace('"0.0.0.0:80"', '"[::1]:8080"')).certificates[0].acme!.challenge, { type: 'http-01', listen: { host: '::1', port: 8080 } });
});

const bad: { name: string; text: string; field: RegExp }[] = [
  { name: 'fail/acme/token-too', text: acme.replace('    acme:', '    tokenFile: ./t\n    acme:'), field: /acme: an ACME certificate needs no token/ },
  { name: 'fail/acme/client-profile', text: acme.replace('profile: server', 'profile: client').replace('names: [web.acme.internal]', 'identity: spiffe://acme.internal/prod/web'), field: /acme: ACME issues server certificates/ },
  { name: 'fail/acme/eab-half', text: acme.replace('      eabKeyId: kid-1\n', ''), field: /eabKeyId and eabHmacKeyFile together/ },
  { name: 'fail/acme/challenge', text: acme.replace('type: http-01, listen', 'type: tls-alpn-01, listen'), field: /acme\.challenge/ },
  { name: 'fail/acme/listen', text: acme.replace('"0.0.0.0:80"', '"port 80"'), field: /listen is address:port/ },
  { name: 'fail/acme/directory', text: acme.replace('https://ca.acme.internal/acme/directory', 'ftp://x/dir'), field: /must be an http\(s\) URL/ },
  { name: 'fail/acme/token-certificate-without-ca', text: acme + '  - { name: api, profile: server, names: [a.acme.internal], tokenFile: ./t, files: { cert: /a.crt, key: /a.key } }\n', field: /ca: give the mutual CA/ },
  { name: 'fail/acme/trust-without-ca', text: acme + 'trust: { bundles: [{ path: /etc/x/b.pem }] }\n', field: /trust files come from the mutual CA/ },
  { name: 'fail/yaml/syntax', text: 'ca: [', field: /not valid YAML/ },
  { name: 'fail/yaml/not-a-mapping', text: '- 1\n- 2', field: /expected a mapping/ },
  { name: 'fail/yaml/duplicate-key', text: base + 'stateDir: /x\n', field: /not valid YAML/ },
  { name: 'fail/ca/missing', text: 'stateDir: /x\n', field: /: ca: / },
  { name: 'fail/ca/http', text: base.replace('https://ca.acme', 'http://ca.acme'), field: /ca\.url: the CA URL must be https/ },
  { name: 'fail/ca/fingerprint', text: base.replace(FP, 'abc'), field: /ca\.rootFingerprint: a SHA-256 fingerprint/ },
  { name: 'fail/ca/no-pin', text: base.replace(`  rootFingerprint: "${FP}"\n`, '').replace('    tokenFile: ./api.token\n', ''), field: /ca: pin the CA root/ },
  { name: 'fail/unknown-key', text: base + 'certifcates: []\n', field: /Unrecognized key/ },
  { name: 'fail/certificate/name', text: base.replace('name: api', 'name: "API/1"'), field: /certificates\[0\] \(API\/1\)\.name: use 1-64 lowercase/ },
  { name: 'fail/certificate/profile', text: base.replace('profile: server', 'profile: both'), field: /certificates\[0\] \(api\)\.profile/ },
  { name: 'fail/certificate/no-names', text: base.replace('names: [api.acme.internal, 10.0.0.5]', 'names: []'), field: /certificates\[0\] \(api\)\.names: a server certificate needs/ },
  { name: 'fail/certificate/bad-name', text: base.replace('10.0.0.5', '"bad name!"'), field: /is neither a DNS name nor an IP/ },
  { name: 'fail/certificate/client-without-identity', text: base.replace('profile: server', 'profile: client').replace('    names: [api.acme.internal, 10.0.0.5]\n', ''), field: /identity: a client certificate needs/ },
  { name: 'fail/certificate/bad-identity', text: base.replace('profile: server', 'profile: client').replace('names: [api.acme.internal, 10.0.0.5]', 'identity: "http://x/y"'), field: /identity: .*must start with spiffe/ },
  { name: 'fail/certificate/no-key-target', text: base.replace(', key: /etc/x/api.key', ''), field: /files\.key: the key must go somewhere/ },
  { name: 'fail/certificate/mode-number', text: base.replace('    files:', "    mode: 0640\n    files:"), field: /mode: write modes as quoted octal strings/ },
  { name: 'fail/certificate/mode-setuid', text: base.replace('    files:', "    mode: '4755'\n    files:"), field: /setuid/ },
  { name: 'fail/certificate/unknown-owner', text: base.replace('    files:', '    owner: no-such-user-xyz\n    files:'), field: /no user named "no-such-user-xyz"/ },
  { name: 'fail/certificate/same-target-twice', text: base.replace('key: /etc/x/api.key', 'key: /etc/x/api.crt'), field: /is also written by/ },
  { name: 'fail/certificate/target-in-state', text: base.replace('/etc/x/api.key', './state/api.key'), field: /inside stateDir/ },
  { name: 'fail/certificate/duplicate-name', text: base + '  - { name: api, profile: server, names: [b.acme.internal], files: { cert: /b.crt, key: /b.key } }\n', field: /another certificate is already named api/ },
  { name: 'fail/certificate/reload-signal', text: base.replace('    files:', '    reload: { signal: KILL, pidFile: /run/x.pid }\n    files:'), field: /signal must be one of/ },
  { name: 'fail/renewal/fraction', text: base + 'renewal: { fraction: 1.5 }\n', field: /renewal\.fraction/ },
  { name: 'fail/renewal/jitter-out', text: base + 'renewal: { fraction: 0.95, jitter: 0.2 }\n', field: /fraction \+- jitter\/2/ },
  { name: 'fail/renewal/duration', text: base + 'renewal: { retryInitial: soon }\n', field: /renewal\.retryInitial: "soon" is not a duration/ },
  { name: 'fail/trust/der-two-issuers', text: base + 'trust: { crls: [{ path: /x.crl, format: der, issuers: [root, client] }] }\n', field: /a DER file holds one CRL/ },
];
for (const c of bad) {
  test(c.name, () => {
    const d = detailOf(() => parse(c.text));
    assert.match(d, /^CONFIG_INVALID: /);
    assert.match(d, c.field);
    assert.ok(d.includes(file), 'the message names the file');
  });
}

test('fail/manifest/missing file names the way to point at one', async () => {
  const { loadManifest } = await import('../../src/agent/manifest.ts');
  assert.match(detailOf(() => loadManifest(path.join(dir, 'nope.yaml'))), /CONFIG_INVALID: .*no such file \(pass -c/);
});

test('ok/duration', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('15m'), 900_000);
  assert.equal(parseDuration(2), 2000);
  assert.throws(() => parseDuration('1 hour'));
});

// ---- deployment-file headers

const tpl = (s: string) => parseTemplate(s, '/etc/mutual/deploy.d/x.pem');
test('ok/template/header and placeholders', () => {
  const t = tpl('# deploy-target: /etc/haproxy/api.pem\n# Combined PEM for haproxy\n# owner: 0\n# mode: 0640\n# reload: systemctl reload haproxy\n\n{{fullchain api}}\n{{ key api }}\nstatic\n{{bundle root,client-ca}}\n');
  assert.equal(t.target, '/etc/haproxy/api.pem');
  assert.deepEqual(t.ownership, { uid: 0, mode: 0o640 });
  assert.deepEqual(t.reload, { shell: 'systemctl reload haproxy' });
  assert.deepEqual(t.placeholders.map((p) => p.kind), ['fullchain', 'key', 'bundle']);
  const out = renderTemplate(t, {
    certificate: (n, k) => `-----${k} ${n}-----\n`,
    bundle: (parts) => parts.join('+') + '\n',
    crls: () => undefined,
  });
  assert.equal(out, '-----fullchain api-----\n-----key api-----\nstatic\nroot+client-ca\n');
  assert.equal(templateOwnership(tpl('# deploy-target: /a\n{{key api}}')).mode, 0o600);
  assert.equal(templateOwnership(tpl('# deploy-target: /a\n{{cert api}}')).mode, 0o644);
  assert.equal(renderTemplate(tpl('# deploy-target: /a\n{{crl root}}'), { certificate: () => '', bundle: () => '', crls: () => undefined }), undefined);
});

const badHeaders: { name: string; text: string; why: RegExp }[] = [
  { name: 'fail/template/no-target', text: '# owner: root\n{{cert api}}', why: /x\.pem:1: no "# deploy-target/ },
  { name: 'fail/template/relative-target', text: '# deploy-target: certs/api.pem\n', why: /:1: deploy-target must be an absolute/ },
  { name: 'fail/template/unknown-key', text: '# deploy-target: /a\n# deploy-targt: /b\n', why: /:2: unknown header key "deploy-targt"/ },
  { name: 'fail/template/twice', text: '# deploy-target: /a\n# deploy-target: /b\n', why: /:2: "deploy-target" is given twice/ },
  { name: 'fail/template/mode', text: '# deploy-target: /a\n# mode: rw-r--r--\n', why: /:2: mode must be octal/ },
  { name: 'fail/template/owner', text: '# deploy-target: /a\n# owner: no-such-user-xyz\n', why: /:2: no user named/ },
  { name: 'fail/template/signal-without-pid', text: '# deploy-target: /a\n# reload-signal: HUP\n', why: /reload-signal needs a pid-file/ },
  { name: 'fail/template/placeholder-kind', text: '# deploy-target: /a\n\nx\n{{secret api}}\n', why: /:4: unknown placeholder \{\{secret/ },
  { name: 'fail/template/placeholder-malformed', text: '# deploy-target: /a\n{{fullchain}}\n', why: /:2: malformed placeholder/ },
  { name: 'fail/template/bundle-part', text: '# deploy-target: /a\n{{bundle root,intermediate}}\n', why: /use root, server-ca, client-ca/ },
  { name: 'fail/template/binary', text: '# deploy-target: /a\n\0\0', why: /binary files/ },
];
for (const c of badHeaders) {
  test(c.name, () => {
    const d = detailOf(() => tpl(c.text));
    assert.match(d, /^AGENT_TEMPLATE_INVALID: \/etc\/mutual\/deploy\.d\/x\.pem/);
    assert.match(d, c.why);
  });
}

// ---- schedule and exit codes

test('ok/schedule/renewal at the fraction, jitter from the serial, lifetime from when it was obtained', () => {
  const nb = new Date('2030-01-01T00:00:00Z');
  const na = new Date('2030-01-01T01:30:00Z');
  const at = renewalTime({ serial: 'aa', notBefore: nb, notAfter: na, fraction: 2 / 3, jitter: 0 });
  assert.equal(at.toISOString(), '2030-01-01T01:00:00.000Z');
  const j1 = renewalTime({ serial: 'aa', notBefore: nb, notAfter: na, fraction: 2 / 3, jitter: 0.2 });
  assert.equal(j1.getTime(), renewalTime({ serial: 'aa', notBefore: nb, notAfter: na, fraction: 2 / 3, jitter: 0.2 }).getTime(), 'stable per serial');
  assert.ok(Math.abs(j1.getTime() - at.getTime()) <= 0.1 * 5400_000);
  // The CA backdates notBefore by a minute; a 6 s certificate obtained now renews 3 s from now.
  const got = new Date('2030-01-01T00:01:00Z');
  const short = renewalTime({ serial: 'bb', notBefore: nb, notAfter: new Date(got.getTime() + 6000), obtainedAt: got, fraction: 0.5, jitter: 0 });
  assert.equal(short.getTime() - got.getTime(), 3000);
  assert.equal(retryDelay(1, 1000, 8000, () => 0.5), 1000);
  assert.equal(retryDelay(3, 1000, 8000, () => 0.5), 4000);
  assert.equal(retryDelay(10, 1000, 8000, () => 0.5), 8000);
});

test('ok/exit codes: the most severe failure wins', () => {
  const e = (code: ConstructorParameters<typeof MutualError>[0]) => new MutualError(code);
  assert.equal(exitCodeFor([]), AGENT_EXIT.OK);
  assert.equal(exitCodeFor([e('CONFIG_INVALID')]), 10);
  assert.equal(exitCodeFor([e('CA_UNAVAILABLE')]), 11);
  assert.equal(exitCodeFor([e('AGENT_REVOKED')]), 12);
  assert.equal(exitCodeFor([e('AGENT_TOKEN_NEEDED')]), 12);
  assert.equal(exitCodeFor([e('TOKEN_REPLAYED')]), 12);
  assert.equal(exitCodeFor([e('CA_UNAVAILABLE'), e('AGENT_CHECK_FAILED')]), 13);
  assert.equal(exitCodeFor([e('AGENT_WRITE_FAILED')]), 13);
  assert.equal(exitCodeFor([e('AGENT_ROLLBACK_FAILED'), e('AGENT_CHECK_FAILED')]), 14);
  assert.equal(exitCodeFor([e('AGENT_LOCKED')]), 15);
  assert.equal(exitCodeFor([new Error('bug')]), 1);
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
