/**
 * CLI wiring for `mutual acme`: the external account binding keys an operator hands to ACME
 * clients (`mutual acme eab create --names 'api.*.acme.internal'`, `mutual acme eab list`). Keys
 * live in the CA's database (SQLite or PostgreSQL, as configured), so no CA passphrase is needed;
 * the store and the ACME code are imported by the action, so `mutual --help` does not load them.
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import type { CaStore } from '../ca/store.ts';
import { homeLayout, resolveHome } from '../ca/home.ts';
import { MutualError } from '../core/errors.ts';
import { parseDuration } from '../core/duration.ts';
import { durationOption } from './option-parsers.ts';

interface Globals {
  home?: string;
  json?: boolean;
}

const out = (g: Globals, human: string, json: unknown) => process.stdout.write(g.json ? JSON.stringify(json, null, 2) + '\n' : human);

/** `--names a,b --names c` -> [a, b, c]. */
const names = (v: string, prev: string[] = []) => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];

/** Opens the CA's inventory (no keys) for `fn`, and closes it. */
async function withStore<T>(g: Globals, fn: (store: CaStore) => Promise<T>): Promise<T> {
  const home = resolveHome(g.home);
  if (!fs.existsSync(homeLayout(home).config)) throw new MutualError('CA_NOT_INITIALIZED', { detail: `no CA in ${home}` });
  const { openInventory } = await import('./compose.ts');
  const store = (await openInventory(home))!;
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Adds `mutual acme eab create|list` to the program. */
export function registerAcmeCommand(program: Command, g: () => Globals): void {
  const acme = program.command('acme').description('ACME (RFC 8555) on `mutual serve`: external account binding keys (docs/acme.md)');
  const eab = acme.command('eab').description('external account binding keys: one binds one ACME account and bounds the names it may order');

  eab.command('create')
    .description('make an EAB key; prints its key id and HMAC key (shown once) for the ACME client')
    .requiredOption('--names <patterns>', 'names the account may order, comma-separated or repeated; "*" matches one label: api.*.acme.internal', names)
    .option('--client', 'allow the client certificate profile (recorded; ACME orders issue server certificates)')
    .option('--expires <duration>', 'the key binds no account after this long: 30d, 12h (default: never)', durationOption)
    .action(async (o: { names: string[]; client?: boolean; expires?: string }) => {
      const { createEabKey } = await import('../ca/index.ts');
      const now = new Date();
      const key = await withStore(g(), (store) => createEabKey(store.acme, {
        names: o.names, clientProfile: o.client === true, now, ...(o.expires ? { expiresAt: new Date(now.getTime() + parseDuration(o.expires)) } : {}),
      }));
      const hmac = key.hmacKey.toString('base64url');
      out(g(), `EAB key id:   ${key.keyId}\nHMAC key:     ${hmac}\nnames:        ${key.names.join(', ')}\n${key.expiresAt ? `expires:      ${key.expiresAt.toISOString()}\n` : ''}`
        + `The HMAC key is not shown again. certbot: --eab-kid ${key.keyId} --eab-hmac-key <HMAC key>\n`,
      { keyId: key.keyId, hmacKey: hmac, names: key.names, clientProfile: key.clientProfile, createdAt: key.createdAt, ...(key.expiresAt ? { expiresAt: key.expiresAt } : {}) });
    });

  eab.command('list')
    .description('list the EAB keys (without their HMAC keys) and the accounts they bound')
    .action(async () => {
      const keys = await withStore(g(), (store) => store.acme.eabKeys());
      const view = keys.map(({ hmacKey: _, ...k }) => k);
      const text = keys.map((k) => `${k.keyId.padEnd(22)}  ${(k.accountId ? `bound ${k.accountId}` : k.expiresAt && k.expiresAt <= new Date() ? 'expired' : 'unbound').padEnd(30)}  ${k.names.join(',')}${k.clientProfile ? '  (client)' : ''}`).join('\n');
      out(g(), text ? `KEY ID                  STATE                           NAMES\n${text}\n` : 'No EAB keys.\n', view);
    });
}
