/**
 * The one duration grammar (core/duration.ts): every form any of the three former parsers (CLI and
 * config.yaml, agent.yaml, the monitor's config) accepted still parses, garbage is CONFIG_INVALID,
 * and the three configs now agree on what a duration is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseManifest } from '../../src/agent/manifest.ts';
import { validateConfig } from '../../src/ca/config.ts';
import { MAX_DURATION_MS, parseDuration } from '../../src/core/duration.ts';
import { isMutualError } from '../../src/core/errors.ts';
import { validateMonitorConfig } from '../../src/monitor/monitor-config.ts';

const ok: [string | number, number][] = [
  ['90s', 90_000], ['15m', 900_000], ['12h', 43_200_000], ['30d', 2_592_000_000],
  // the agent's and the monitor's milliseconds
  ['500ms', 500], ['0ms', 0],
  // surrounding spaces (every parser trimmed)
  [' 5m ', 300_000], ['\t1h\n', 3_600_000],
  // the agent accepted 9 digits, the CLI 6
  ['100000000ms', 100_000_000], ['999999999s', 999_999_999_000], ['999999d', MAX_DURATION_MS],
  // agent.yaml: a YAML number is seconds
  [2, 2000], [0.5, 500], [0, 0],
];

const fail: unknown[] = [
  '', '   ', '5', 'm', 'ms', '1.5h', '-5m', '+5m', '5 m', '5mm', '1w', '8H', '1h30m', '15 minutes', '0x10s',
  '1000000000s', // 10 digits
  '1234567d', // over MAX_DURATION_MS (the CLI refused it; so does everyone now)
  '999999999d', // the agent accepted it: 2.7 million years, not a safe integer of milliseconds
  -1, Number.NaN, Number.POSITIVE_INFINITY, MAX_DURATION_MS, // a number of seconds beyond the bound
  null, undefined, {}, ['5m'],
];

for (const [text, ms] of ok) {
  test(`duration/ok/${JSON.stringify(text)}`, () => assert.equal(parseDuration(text), ms));
}

for (const text of fail) {
  test(`duration/fail/${String(JSON.stringify(text))}`, () => {
    assert.throws(() => parseDuration(text as string), (e: unknown) => isMutualError(e) && e.code === 'CONFIG_INVALID');
  });
}

test('duration/the error names the source and the grammar', () => {
  try {
    parseDuration('soon', '--ttl');
    assert.fail('accepted');
  } catch (e) {
    assert.ok(isMutualError(e));
    assert.match(e.fields.detail ?? '', /^--ttl: "soon" is not a duration: .*ms, s, m, h or d/);
  }
});

/** One duration field of each config, set to `v`: the CA's profile lifetime, agent.yaml's retryInitial, the monitor's schedule. */
const configs: [string, (v: string) => unknown][] = [
  ['config.yaml', (v) => validateConfig({ trustDomain: 'acme.internal', name: 'x', profiles: { client: { defaultLifetime: v } } })],
  ['agent.yaml', (v) => parseManifest(`ca: { url: https://ca.acme.internal, rootFingerprint: "${'ab'.repeat(32)}" }\nstateDir: /tmp/s\nrenewal: { retryInitial: "${v}" }\ncertificates:\n  - { name: api, profile: server, names: [api.acme.internal], tokenFile: /tmp/t, files: { cert: /tmp/c, key: /tmp/k } }\n`, '/tmp/agent.yaml')],
  ['monitor.yaml', (v) => validateMonitorConfig({ schedule: { every: v } }, '/tmp')],
];

test('duration/every config reads the same grammar', () => {
  // In every field's bounds (5 minutes to 3650 days for lifetimes, at least 10s for schedule.every).
  for (const v of ['600000ms', '10m', '2h', '7d', ' 30m ', '100000000ms']) {
    for (const [name, read] of configs) assert.doesNotThrow(() => read(v), `ok/${name}/${v}`);
  }
  for (const v of ['10 minutes', '1h30m', '1w', '1.5h', '1234567d']) {
    for (const [name, read] of configs) {
      assert.throws(() => read(v), (e: unknown) => isMutualError(e) && e.code === 'CONFIG_INVALID', `fail/${name}/${v}`);
    }
  }
});
