/**
 * pkcs11: URIs (RFC 7512) as key references and key stores carry them, the PIN sources, and the
 * key store setting: what parses, what is written back, and the codes of what is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { formatPkcs11Uri, parseKeyStore, parsePkcs11Uri, MAX_PKCS11_URI_LENGTH } from '../../src/keys/index.ts';
import { modulePathOf } from '../../src/keys/pkcs11/uri.ts';
import { readPin } from '../../src/keys/pkcs11/pin.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { tempDir } from '../helpers/test-ca.ts';
import { prng } from '../helpers/prng.ts';

const codeOf = (f: () => unknown): string => {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (isMutualError(e)) return e.code;
    throw e;
  }
};

const M = 'module-path=/usr/lib/softhsm/libsofthsm2.so';

test('ok/parse', async (t) => {
  const cases: { name: string; uri: string; want: (u: ReturnType<typeof parsePkcs11Uri>) => void; back?: string }[] = [
    { name: 'token only', uri: `pkcs11:token=mutual?${M}`, want: (u) => assert.deepEqual(u.path, { token: 'mutual' }) },
    {
      name: 'RFC 7512 example with id bytes',
      uri: 'pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=',
      want: (u) => {
        assert.equal(u.path.token, 'The Software PKCS#11 Softtoken');
        assert.equal(u.path.manufacturer, 'Snake Oil, Inc.');
        assert.equal(u.path.type, 'cert');
        assert.equal(u.path.serial, '');
        assert.deepEqual(u.id, Buffer.from('69953e5cf4bdec91', 'hex'));
      },
    },
    { name: 'UTF-8 label', uri: 'pkcs11:object=cl%C3%A9', want: (u) => assert.equal(u.path.object, 'clé') },
    { name: 'attribute names are case-insensitive', uri: 'pkcs11:TOKEN=a', want: (u) => assert.equal(u.path.token, 'a') },
    {
      name: 'query: module, pin source, vendor rsa',
      uri: `pkcs11:token=a?${M}&pin-source=file:/etc/mutual/pin&x-mutual-rsa=pss`,
      want: (u) => {
        assert.equal(u.modulePath, '/usr/lib/softhsm/libsofthsm2.so');
        assert.equal(u.pinSource, 'file:/etc/mutual/pin');
        assert.equal(u.rsa, 'pss');
      },
    },
    { name: 'other vendor attributes are kept', uri: 'pkcs11:token=a;x-vendor=1?x-other=2', want: (u) => assert.deepEqual([u.vendorPath, u.vendorQuery], [['x-vendor=1'], ['x-other=2']]) },
    { name: 'slot attributes', uri: 'pkcs11:slot-id=3;slot-description=SoftHSM%20slot', want: (u) => assert.deepEqual(u.path, { 'slot-id': '3', 'slot-description': 'SoftHSM slot' }) },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const u = parsePkcs11Uri(c.uri);
      c.want(u);
      // Written back, it parses to the same thing.
      assert.deepEqual(parsePkcs11Uri(formatPkcs11Uri(u)), u);
    });
  }
});

test('ok/format encodes separators and writes id as bytes', () => {
  const text = formatPkcs11Uri({ path: { token: 'a;b=c d', object: 'k' }, id: Buffer.from([0x01, 0x41]), modulePath: '/lib/x.so', pinSource: 'env:PIN', vendorPath: [], vendorQuery: [] });
  assert.equal(text, 'pkcs11:token=a%3bb%3dc%20d;object=k;id=%01%41?module-path=/lib/x.so&pin-source=env:PIN');
});

test('fail/parse', async (t) => {
  const cases: [string, string][] = [
    ['not pkcs11', 'file:/etc/key'],
    ['pin-value', `pkcs11:token=a?${M}&pin-value=1234`],
    ['relative module-path', 'pkcs11:token=a?module-path=lib/softhsm.so'],
    ['unknown path attribute', 'pkcs11:token=a;colour=blue'],
    ['unknown query attribute', 'pkcs11:token=a?pin-source=/p&speed=fast'],
    ['attribute twice', 'pkcs11:token=a;token=b'],
    ['attribute twice, other case', 'pkcs11:token=a;Token=b'],
    ['no value form', 'pkcs11:token'],
    ['broken escape', 'pkcs11:token=a%2'],
    ['non-hex escape', 'pkcs11:token=a%zz'],
    ['space unencoded', 'pkcs11:token=a b'],
    ['not UTF-8', 'pkcs11:token=%ff'],
    ['unknown type', 'pkcs11:type=secret'],
    ['unknown rsa scheme', 'pkcs11:token=a?x-mutual-rsa=raw'],
    ['too long', `pkcs11:token=${'a'.repeat(MAX_PKCS11_URI_LENGTH)}`],
  ];
  for (const [name, uri] of cases) await t.test(name, () => assert.equal(codeOf(() => parsePkcs11Uri(uri)), 'PKCS11_URI_INVALID'));
});

test('module-path from MUTUAL_PKCS11_MODULE when the URI has none', () => {
  assert.equal(modulePathOf(parsePkcs11Uri('pkcs11:token=a'), { MUTUAL_PKCS11_MODULE: '/lib/m.so' }), '/lib/m.so');
  assert.equal(modulePathOf(parsePkcs11Uri(`pkcs11:token=a?${M}`), { MUTUAL_PKCS11_MODULE: '/lib/m.so' }), '/usr/lib/softhsm/libsofthsm2.so');
  assert.equal(codeOf(() => modulePathOf(parsePkcs11Uri('pkcs11:token=a'), {})), 'PKCS11_URI_INVALID');
  assert.equal(codeOf(() => modulePathOf(parsePkcs11Uri('pkcs11:token=a'), { MUTUAL_PKCS11_MODULE: 'm.so' })), 'PKCS11_URI_INVALID');
});

test('parseKeyStore', () => {
  assert.deepEqual(parseKeyStore(undefined), { kind: 'file' });
  assert.deepEqual(parseKeyStore('file'), { kind: 'file' });
  const uri = `pkcs11:token=a?${M}&pin-source=env:P`;
  assert.deepEqual(parseKeyStore(uri), { kind: 'pkcs11', uri });
  assert.equal(codeOf(() => parseKeyStore(`pkcs11:token=a;object=k?${M}`)), 'PKCS11_URI_INVALID');
  assert.equal(codeOf(() => parseKeyStore(`pkcs11:token=a;id=%01?${M}`)), 'PKCS11_URI_INVALID');
  assert.equal(codeOf(() => parseKeyStore('hsm')), 'PKCS11_URI_INVALID');
  assert.equal(codeOf(() => parseKeyStore(`pkcs11:token=a?${M}&pin-value=1`)), 'PKCS11_URI_INVALID');
});

test('PIN sources', async (t) => {
  const dir = tempDir('mutual-pin-');
  fs.chmodSync(dir, 0o700);
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string, mode = 0o600): string => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text, { mode });
    fs.chmodSync(p, mode);
    return p;
  };
  const pin = file('pin', '1234\n');
  const creds = path.join(dir, 'creds');
  fs.mkdirSync(creds, { mode: 0o700 });
  fs.writeFileSync(path.join(creds, 'hsm'), '5678', { mode: 0o600 });
  fs.writeFileSync(path.join(creds, 'mutual-pkcs11-pin'), '9012\n', { mode: 0o600 });
  const ok: [string, string | undefined, NodeJS.ProcessEnv, string][] = [
    ['file: form, newline removed', `file:${pin}`, {}, '1234'],
    ['bare absolute path', pin, {}, '1234'],
    ['env:', 'env:P', { P: 'abcd' }, 'abcd'],
    ['credential:', 'credential:hsm', { CREDENTIALS_DIRECTORY: creds }, '5678'],
    ['default: MUTUAL_PKCS11_PIN', undefined, { MUTUAL_PKCS11_PIN: 'e', CREDENTIALS_DIRECTORY: creds }, 'e'],
    ['default: the mutual-pkcs11-pin credential', undefined, { CREDENTIALS_DIRECTORY: creds }, '9012'],
  ];
  for (const [name, source, env, want] of ok) await t.test(`ok/${name}`, () => assert.equal(readPin(source, env), want));
  const fail: [string, string | undefined, NodeJS.ProcessEnv, string][] = [
    ['no source at all', undefined, {}, 'HSM_PIN_MISSING'],
    ['env: variable unset (no fallback to MUTUAL_PKCS11_PIN)', 'env:P', { MUTUAL_PKCS11_PIN: 'x' }, 'HSM_PIN_MISSING'],
    ['file missing', `file:${path.join(dir, 'none')}`, {}, 'HSM_PIN_MISSING'],
    ['file empty', `file:${file('empty', '')}`, {}, 'HSM_PIN_MISSING'],
    ['file readable by others', `file:${file('open', '1234', 0o644)}`, {}, 'KEY_FILE_INSECURE'],
    ['file too large', `file:${file('big', 'x'.repeat(5000))}`, {}, 'INPUT_TOO_LARGE'],
    ['relative file', 'file:pin', {}, 'PKCS11_URI_INVALID'],
    ['a command (RFC 7512 |cmd) is not run', '|/bin/echo 1234', {}, 'PKCS11_URI_INVALID'],
    ['credential outside the folder', 'credential:../pin', { CREDENTIALS_DIRECTORY: creds }, 'PKCS11_URI_INVALID'],
    ['credential without CREDENTIALS_DIRECTORY', 'credential:hsm', {}, 'HSM_PIN_MISSING'],
  ];
  for (const [name, source, env, code] of fail) {
    await t.test(`fail/${name}`, () => {
      let err: unknown;
      try {
        readPin(source, env);
      } catch (e) {
        err = e;
      }
      assert.ok(isMutualError(err, code as never), String(err));
      // A PIN never appears in an error.
      assert.doesNotMatch(JSON.stringify({ m: (err as Error).message, f: (err as { fields?: unknown }).fields }), /1234|5678|9012/);
    });
  }
});

test('fuzz/mutated URIs parse to something that formats back to itself, or are PKCS11_URI_INVALID', () => {
  // Bounded and deterministic (test/helpers/prng.ts): 3,000 inputs from a few valid URIs, mutated
  // by inserting, deleting and replacing characters drawn from the URI's own alphabet and its edges.
  const seeds = [
    `pkcs11:token=mutual;serial=1234;object=mutual-root-20261201-0a1b2c3d;id=%01%02%ff?${M}&pin-source=file:/etc/mutual/pin&x-mutual-rsa=pss`,
    'pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;slot-id=7;type=private;x-v=1?module-name=softhsm2&x-q=%00',
    'pkcs11:',
  ];
  const alphabet = 'pkcs11:;?&=%/0aFz-._~ \u00e9\u0000|#[]';
  const random = prng(0x70313175);
  const pick = (n: number): number => Math.floor(random() * n);
  let parsed = 0;
  for (let i = 0; i < 3000; i++) {
    let s = seeds[i % seeds.length];
    for (let k = 1 + pick(4); k > 0; k--) {
      const at = pick(s.length + 1);
      const c = alphabet[pick(alphabet.length)];
      const op = pick(3);
      s = op === 0 ? s.slice(0, at) + c + s.slice(at) : op === 1 ? s.slice(0, at) + s.slice(at + 1) : s.slice(0, at) + c + s.slice(at + 1);
    }
    let u: ReturnType<typeof parsePkcs11Uri>;
    try {
      u = parsePkcs11Uri(s);
    } catch (e) {
      assert.ok(isMutualError(e, 'PKCS11_URI_INVALID'), `${JSON.stringify(s)}: ${String(e)}`);
      continue;
    }
    parsed++;
    assert.deepEqual(parsePkcs11Uri(formatPkcs11Uri(u)), u, JSON.stringify(s));
  }
  assert.ok(parsed > 300, `only ${parsed} of the mutated URIs parsed: the mutations are too coarse to test the writer`);
});
