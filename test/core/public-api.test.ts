import { test } from 'node:test';
import assert from 'node:assert/strict';

test('ok/the package entry points load and export what the docs name', async () => {
  const main = await import('../../src/index.ts');
  for (const name of ['CertificateAuthority', 'initCa', 'startCaServer', 'parseCertificate', 'MutualError', 'verifyAuditLog']) assert.ok(name in main, name);
  const sdk = await import('../../src/sdk/index.ts');
  for (const name of ['PeerVerifier', 'createServer', 'createFetch', 'identityFromXfcc', 'allow', 'enroll', 'renew']) assert.ok(name in sdk, name);
});
