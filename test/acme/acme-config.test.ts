/**
 * The `acme:` section of config.yaml: defaults when absent or empty, and CONFIG_INVALID naming
 * the field for values out of bounds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { acmeConfig, validateConfig } from '../../src/ca/config.ts';
import { isMutualError } from '../../src/core/errors.ts';

const base = { trustDomain: 'acme.internal', name: 'Acme' };

test('ok/defaults', () => {
  const absent = acmeConfig(validateConfig(base));
  assert.equal(absent.enabled, false);
  assert.deepEqual(absent.challenges, ['http-01', 'dns-01', 'tls-alpn-01']);
  assert.equal(absent.certificateLifetime, '24h');
  assert.deepEqual({ http: absent.httpPort, tls: absent.tlsAlpnPort, perHour: absent.ordersPerHour, timeout: absent.validationTimeout }, { http: 80, tls: 443, perHour: 300, timeout: '10s' });
  const set = acmeConfig(validateConfig({ ...base, acme: { enabled: true, externalAccountRequired: true, challenges: ['dns-01'], dns: { servers: ['10.0.0.53:53', '[::1]:5353'] }, certificateLifetime: '15m' } }));
  assert.equal(set.enabled, true);
  assert.deepEqual(set.challenges, ['dns-01']);
  assert.deepEqual(set.dns.servers, ['10.0.0.53:53', '[::1]:5353']);
  assert.equal(set.orderLifetime, '1h', 'the other fields keep their defaults');
});

test('fail/out-of-bounds-values', () => {
  const bad: Record<string, unknown>[] = [
    { challenges: [] }, { challenges: ['http-02'] }, { certificateLifetime: '1m' }, { httpPort: 0 }, { ordersPerHour: 0 },
    { validationTimeout: '10m' }, { dns: { servers: ['no-port'] } }, { termsOfService: 'not a url' }, { unknown: true },
  ];
  for (const acme of bad) assert.throws(() => validateConfig({ ...base, acme }), (e) => isMutualError(e, 'CONFIG_INVALID'), JSON.stringify(acme));
});
