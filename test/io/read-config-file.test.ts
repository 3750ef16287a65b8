/**
 * The one config loader (src/io/read-config-file.ts) and the four configs that use it: bounded
 * reads, YAML with limits, zod, and CONFIG_INVALID naming the file, the field and the line.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { loadManifest } from '../../src/agent/manifest.ts';
import { readConfig } from '../../src/ca/config.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { loadGatewayConfig } from '../../src/gateway/config.ts';
import { loadConfigFile, MAX_YAML_ALIASES, parseConfigValue, parseConfigYaml, readConfigFile } from '../../src/io/read-config-file.ts';
import { readMonitorConfig } from '../../src/monitor/monitor-config.ts';
import { tempDir } from '../helpers/test-ca.ts';

const dir = tempDir('mutual-read-config-');
let n = 0;
const write = (text: string | Buffer): string => {
  const f = path.join(dir, `c${n++}.yaml`);
  fs.writeFileSync(f, text);
  return f;
};

/** The CONFIG_INVALID detail `fn` throws (fails on anything else). */
function detailOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isMutualError(e), `not a MutualError: ${String(e)}`);
    assert.equal(e.code, 'CONFIG_INVALID', e.message);
    return e.fields.detail ?? '';
  }
  assert.fail('accepted');
}

const schema = z.object({
  name: z.string(),
  listen: z.object({ port: z.number().int().max(65535) }).strict(),
  routes: z.array(z.object({ name: z.string(), upstream: z.string().url() }).strict()).default([]),
}).strict();
const load = (file: string, maxBytes = 4096) => loadConfigFile(file, { maxBytes, validate: (v, yaml) => parseConfigValue(schema, v, yaml) });
const GOOD = 'name: gw\nlisten:\n  port: 8443\nroutes:\n  - name: api\n    upstream: http://127.0.0.1:9000\n';

describe('io/loadConfigFile', () => {
  test('ok/read, parsed and validated', () => {
    assert.deepEqual(load(write(GOOD)), { name: 'gw', listen: { port: 8443 }, routes: [{ name: 'api', upstream: 'http://127.0.0.1:9000' }] });
  });

  test('ok/CRLF line endings read the same, lines still counted', () => {
    assert.deepEqual(load(write(GOOD.replace(/\n/g, '\r\n'))), load(write(GOOD)));
    const f = write(GOOD.replace('8443', '"x"').replace(/\n/g, '\r\n'));
    assert.equal(detailOf(() => load(f)), `${f}: listen.port: Invalid input: expected number, received string (line 3)`);
  });

  test('ok/a symlink is followed (Kubernetes mounts ConfigMaps as symlinks)', () => {
    const link = path.join(dir, 'link.yaml');
    fs.symlinkSync(write(GOOD), link);
    assert.equal(load(link).name, 'gw');
  });

  const fails: { name: string; file: () => string; maxBytes?: number; want: RegExp }[] = [
    { name: 'fail/missing', file: () => path.join(dir, 'nope.yaml'), want: /nope\.yaml: no such file$/ },
    { name: 'fail/oversized', file: () => write(GOOD + '#'.repeat(5000)), want: /: larger than 4096 bytes$/ },
    { name: 'fail/exactly-one-byte-over', file: () => write('a'.repeat(4097)), want: /: larger than 4096 bytes$/ },
    { name: 'fail/a-folder', file: () => fs.mkdtempSync(path.join(dir, 'd')), want: /: not a regular file$/ },
    { name: 'fail/garbage-bytes', file: () => write(Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x7b, 0x5b])), want: /: (not valid YAML|\(top level\)): / },
    { name: 'fail/syntax', file: () => write('name: gw\nlisten: [\n'), want: /: not valid YAML: .*\(line \d\)$/ },
    { name: 'fail/duplicate-key', file: () => write(GOOD + 'name: again\n'), want: /: not valid YAML: .*(unique|duplicate).* \(line 7\)$/i },
    { name: 'fail/alias-bomb', file: () => write(`a: &a [x, x, x, x, x, x, x, x, x, x]\nb: [${Array(MAX_YAML_ALIASES + 1).fill('*a').join(', ')}]\n`), want: /: not valid YAML: .*alias/i },
    { name: 'fail/empty', file: () => write(''), want: /: \(top level\): .*expected object.*$/ },
    { name: 'fail/wrong-type-names-field-and-line', file: () => write(GOOD.replace('8443', '70000')), want: /: listen\.port: .* \(line 3\)$/ },
    { name: 'fail/list-entry-by-name', file: () => write(GOOD.replace('http://127.0.0.1:9000', 'not a url')), want: /: routes\[0\] \(api\)\.upstream: .* \(line 6\)$/ },
    { name: 'fail/missing-key-at-its-parent', file: () => write('name: gw\nlisten:\n  other: 1\n'), want: /: listen\.port: .*received undefined \(line 3\)$/ },
    { name: 'fail/unknown-key', file: () => write(GOOD + 'extra: 1\n'), want: /: \(top level\): Unrecognized key.*"extra".* \(line 1\)$/ },
  ];
  for (const c of fails) {
    test(c.name, () => {
      const f = c.file();
      const d = detailOf(() => load(f, c.maxBytes));
      assert.ok(d.startsWith(`${f}: `), `names the file: ${d}`);
      assert.match(d, c.want);
    });
  }

  test('fail/a FIFO is refused without hanging the reader', () => {
    const fifo = path.join(dir, 'fifo.yaml');
    execFileSync('mkfifo', [fifo]);
    assert.match(detailOf(() => readConfigFile(fifo, { maxBytes: 4096 })), /fifo\.yaml: not a regular file$/);
  });

  test('ok/the caller decides what a missing file is', () => {
    const e = new Error('mine');
    assert.throws(() => readConfigFile(path.join(dir, 'nope.yaml'), { maxBytes: 10, missing: () => e }), (got) => got === e);
  });

  test('ok/text from elsewhere: no file, still a line', () => {
    const yaml = parseConfigYaml('name: gw\nlisten: { port: x }\n');
    assert.equal(detailOf(() => parseConfigValue(schema, yaml.value, yaml)), 'listen.port: Invalid input: expected number, received string (line 2)');
    assert.equal(detailOf(() => parseConfigValue(schema, { name: 1 })), 'name: Invalid input: expected string, received number');
  });
});

/** Each of the four configs, with a field broken on line 3. */
const configs: { name: string; load: (f: string) => unknown; max: number; text: string; field: string }[] = [
  { name: 'config.yaml', load: readConfig, max: 256 * 1024, text: 'trustDomain: acme.internal\nname: x\nkeyTypes: { root: rsa1 }\n', field: 'keyTypes.root' },
  { name: 'agent.yaml', load: loadManifest, max: 256 * 1024, text: `ca:\n  url: https://ca.acme.internal:8443\n  rootFingerprint: "abc"\nstateDir: ./state\ncertificates: []\n`, field: 'ca.rootFingerprint' },
  { name: 'monitor.yaml', load: readMonitorConfig, max: 1024 * 1024, text: 'concurrency: 4\nschedule:\n  every: soon\n', field: 'schedule.every' },
  { name: 'gateway.yaml', load: loadGatewayConfig, max: 1024 * 1024, text: 'listen:\n  host: 127.0.0.1\n  port: "x"\n', field: 'listen.port' },
];

describe('io/the four configs use the one loader', () => {
  for (const c of configs) {
    test(`fail/${c.name}: file, field and line`, () => {
      const f = path.resolve(write(c.text));
      const d = detailOf(() => c.load(f));
      assert.ok(d.startsWith(`${f}: ${c.field}: `), d);
      assert.match(d, / \(line 3\)$/);
    });
    test(`fail/${c.name}: oversized before it is parsed`, () => {
      const f = path.resolve(write(`# ${'x'.repeat(c.max)}\n`));
      assert.match(detailOf(() => c.load(f)), /larger than \d+ bytes$/);
    });
    test(`fail/${c.name}: alias bomb`, () => {
      const f = path.resolve(write(`x: &a [1, 2, 3]\ny: [${Array(MAX_YAML_ALIASES + 1).fill('*a').join(', ')}]\n`));
      assert.match(detailOf(() => c.load(f)), /not valid YAML/);
    });
  }
});
