/**
 * "One of each thing" (issue 15): a source scan of src/ that fails when a second HTTP fetcher, a
 * second client of the CA's API or a second reader of a certificate's revocation URLs appears.
 * Each rule lists the files allowed and why; adding one to a list is a decision for review, not a
 * way to make this test pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const SRC = path.resolve(import.meta.dirname, '../../src');

function sources(dir = SRC): { file: string; text: string }[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') ? [{ file: path.relative(SRC, full).split(path.sep).join('/'), text: fs.readFileSync(full, 'utf8') }] : [];
  });
}

/** Files of src/ whose code (comments removed) matches `re`. */
function filesMatching(re: RegExp): string[] {
  const code = (t: string) => t.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  return sources().filter((s) => re.test(code(s.text))).map((s) => s.file).sort();
}

const RULES: { name: string; pattern: RegExp; allowed: Record<string, string> }[] = [
  {
    name: 'one HTTP(S) fetcher: only sdk/fetch-bytes.ts sends HTTP requests',
    // node:http(s) .request/.get (as http, https or lib), imported by name, undici's or the global fetch.
    pattern: /\b(https?|lib|\w*[Hh]ttps?)\.(request|get)\(|import\s*\{[^}]*\b(request|get)\b[^}]*\}\s*from\s*'node:https?'|(?<![\w#.])fetch\(|\bundiciFetch\(/,
    allowed: {
      'sdk/fetch-bytes.ts': 'the bounded fetcher (size cap, deadline, no redirects)',
      'sdk/client.ts': 'createFetch: the mTLS client the SDK gives applications (undici), not a fetcher of the project\'s own',
      'ca/acme/validate-http01.ts': 'ACME http-01 validation (RFC 8555 8.3): connects to the address it resolved itself with the identifier as Host/SNI, follows redirects under Boulder\'s rules and ignores certificates, none of which the bounded fetcher does (and ca does not import sdk)',
    },
  },
  {
    name: 'raw TLS connections only where a handshake itself is the point',
    pattern: /\btls\.connect\(|\bnet\.(connect|createConnection)\(|\bhttp2\.connect\(/,
    allowed: {
      'agent/hooks.ts': 'verifies the certificate a reloaded service serves (a handshake, no request)',
      'gateway/upstream.ts': 'the gateway\'s upstream connections (proxying, streamed, with its own limits)',
      'monitor/probe-tls.ts': 'the monitor\'s TLS probe (reads the handshake step by step)',
      'sdk/client.ts': 'the SDK\'s mTLS dispatcher for applications',
      'ca/acme/validate-tls-alpn01.ts': 'ACME tls-alpn-01 validation (RFC 8737): the handshake (ALPN acme-tls/1, the certificate presented) is the proof',
    },
  },
  {
    name: 'one CA client: only sdk/ca-client.ts calls the CA\'s API',
    pattern: /['"`][^'"`]*(\/v1\/enroll|\/v1\/renew|\/roots\.pem|\/ca\/(server|client)(\.all)?\.pem|\/ca\/\$\{)/,
    allowed: {
      'sdk/ca-client.ts': 'the CA client',
      'server/ca-server.ts': 'the CA server (routes, not calls)',
      'server/request-target.ts': 'the CA server\'s route table',
      'server/routes.ts': 'the CA server\'s route handlers (answers, not calls)',
      'ca/init-ca.ts': 'writes the URLs the CA serves into its certificates and config',
      'ca/load-intermediates.ts': 'the URLs the CA names in the certificates it issues',
      'ca/offline.ts': 'the URLs the offline root names',
      'core/errors.ts': 'error messages that tell the reader which URL to check',
    },
  },
  {
    name: 'one reader of revocation URLs: only core/cert-urls.ts reads CRL DP / AIA',
    pattern: /OID\.(crlDistributionPoints|authorityInfoAccess)\b/,
    allowed: {
      'core/cert-urls.ts': 'the reader',
      'core/certificate-template.ts': 'the writer',
    },
  },
];

for (const r of RULES) {
  test(`ok/${r.name}`, () => {
    const extra = filesMatching(r.pattern).filter((f) => !Object.hasOwn(r.allowed, f));
    assert.deepEqual(extra, [], `${r.name}; use the one the project has (${Object.keys(r.allowed)[0]}) instead`);
  });
}

test('ok/the rules see what they are about (a scan that matches nothing checks nothing)', () => {
  for (const r of RULES) assert.ok(filesMatching(r.pattern).includes(Object.keys(r.allowed)[0]), `${r.name}: the pattern no longer finds ${Object.keys(r.allowed)[0]}`);
});
