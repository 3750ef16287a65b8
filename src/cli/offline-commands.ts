/**
 * CLI wiring for the offline root and the air-gapped re-signing of intermediates: `mutual offline
 * sign-intermediate|crl` and `mutual intermediate csr|install` (docs/operations.md). The CA is
 * imported by the action that runs (see main.ts on start-up).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { defaultOfflineDir, homeLayout, offlineLayout, resolveHome, type HomeLayout } from '../ca/home.ts';
import { MutualError } from '../core/errors.ts';
import { REVOCATION_REASONS } from '../core/revocation-reasons.ts';
import type { KeyStoreSpec } from '../keys/index.ts';
import { positiveInt } from './option-parsers.ts';

interface Globals {
  home?: string;
  passphraseFile?: string;
  json?: boolean;
}

/** What main.ts lends these commands. */
export interface OfflineCommandDeps {
  /** The CA passphrase; '' with `home` when every key the online CA opens is on a token. */
  caPassphrase(g: Globals, confirm?: boolean, home?: string): Promise<string>;
  /** The passphrase of these root keys, '' when all are on a token. */
  rootPassphraseFor(rootKeys: string[], file: string | undefined, g: Globals, needsFile?: boolean): Promise<string>;
  /** Parses `--key-store` (PKCS11_URI_INVALID). */
  keyStoreOption(v: string | undefined): Promise<KeyStoreSpec | undefined>;
  requireHome(g: Globals): HomeLayout;
  /** Reads an input file, bounded (INPUT_TOO_LARGE). */
  readInput(file: string): Buffer;
}

const out = (g: Globals, human: string, json: unknown) => process.stdout.write(g.json ? JSON.stringify(json, null, 2) + '\n' : human);

/** The offline root and the air-gapped re-signing of intermediates. */
export function registerOfflineCommands(program: Command, g: () => Globals, d: OfflineCommandDeps): void {
  const { caPassphrase, rootPassphraseFor, keyStoreOption, requireHome, readInput } = d;
  const offline = program.command('offline').description('operations with the offline root key');
  offline.command('sign-intermediate')
    .description('sign an intermediate CA certificate from its CSR with the root key')
    .argument('<csr>', 'the intermediate\'s CSR (from `mutual intermediate csr`)')
    .addOption(new Option('--role <role>').choices(['server', 'client']).makeOptionMandatory())
    .option('--offline-dir <dir>', 'the offline folder (default: <home>-offline)')
    .option('--root-passphrase-file <file>', 'root key passphrase file')
    .option('--days <n>', 'lifetime in days', positiveInt, 730)
    .addOption(new Option('--root <which>', 'after `mutual root rotate`: which root signs').choices(['new', 'old']).default('new'))
    .requiredOption('--out <file>', 'where to write the certificate (PEM)')
    .action(async (file: string, o) => {
      const [{ readConfig, signIntermediate }, { defaultNamePolicy }] = await Promise.all([import('../ca/index.ts'), import('../core/policy.ts')]);
      const home = requireHome(g()).home;
      const config = readConfig(homeLayout(home).config);
      const offlineDir = path.resolve(o.offlineDir ?? defaultOfflineDir(home));
      const pem = await signIntermediate({
        offlineDir, rootPassphrase: await rootPassphraseFor([offlineLayout(offlineDir)[o.root === 'old' ? 'prevRootKey' : 'rootKey']], o.rootPassphraseFile, g()),
        csr: readInput(file), role: o.role === 'server' ? 'server-ca' : 'client-ca', days: o.days, url: config.url, root: o.root, organization: config.name,
        policy: defaultNamePolicy(config.trustDomain, { dns: config.policy.permitDns, ip: config.policy.permitIp }),
      });
      fs.writeFileSync(o.out, pem);
      out(g(), `Signed the ${o.role} CA -> ${o.out}. Install it with \`mutual intermediate install ${o.out} --role ${o.role}\`.\n`, { file: o.out });
    });
  offline.command('crl')
    .description('renew the root CRL for the intermediates (optionally revoking one)')
    .option('--offline-dir <dir>', 'the offline folder (default: <home>-offline)')
    .option('--root-passphrase-file <file>', 'root key passphrase file')
    .option('--revoke <cert>', 'an intermediate certificate to revoke')
    .addOption(new Option('--reason <reason>').choices(Object.keys(REVOCATION_REASONS)).default('cessationOfOperation'))
    .addOption(new Option('--root <which>', 'after `mutual root rotate`, without --revoke: which root\'s CRL').choices(['new', 'old']).default('new'))
    .action(async (o) => {
      const { renewRootCrl, installRootCrl } = await import('../ca/index.ts');
      const home = resolveHome(g().home);
      const offlineDir = path.resolve(o.offlineDir ?? defaultOfflineDir(home));
      // With --revoke the root is the one that issued the certificate: either, after a rotation.
      const l = offlineLayout(offlineDir);
      const keys = o.revoke ? [l.rootKey, ...(fs.existsSync(l.prevRootKey) ? [l.prevRootKey] : [])] : [o.root === 'old' ? l.prevRootKey : l.rootKey];
      const der = await renewRootCrl({
        offlineDir, rootPassphrase: await rootPassphraseFor(keys, o.rootPassphraseFile, g()),
        revoke: o.revoke ? { certificate: readInput(o.revoke), reason: o.reason } : undefined, root: o.root,
      });
      const copied = installRootCrl(home, der);
      out(g(), `Renewed the root CRL${copied.length ? ` (copied to ${copied.join(', ')})` : ''}.\n`, { bytes: der.length, copied });
    });

  const inter = program.command('intermediate').description('re-signing the intermediates (air-gapped flow)');
  inter.command('csr')
    .description('write the CSR the offline root signs')
    .addOption(new Option('--role <role>').choices(['server', 'client']).makeOptionMandatory())
    .option('--new-key', 'make a new key (installed with the certificate)')
    .option('--key-store <uri>', 'with --new-key: make it here (`file`, or a pkcs11: token URI; default: where the current key lives)')
    .requiredOption('--out <file>', 'CSR file')
    .action(async (o) => {
      const { intermediateCsr } = await import('../ca/index.ts');
      if (o.keyStore !== undefined && !o.newKey) throw new MutualError('CONFIG_INVALID', { detail: '--key-store needs --new-key' });
      const keyStore = await keyStoreOption(o.keyStore);
      const home = requireHome(g()).home;
      // A new key written as an encrypted file needs the passphrase whatever the current key is.
      const pass = await caPassphrase(g(), false, keyStore?.kind === 'file' ? undefined : home);
      const pem = await intermediateCsr({ home, role: o.role === 'server' ? 'server-ca' : 'client-ca', passphrase: pass, newKey: o.newKey, ...(keyStore ? { keyStore } : {}) });
      fs.writeFileSync(o.out, pem);
      out(g(), `Wrote ${o.out}. Sign it offline: \`mutual offline sign-intermediate ${o.out} --role ${o.role} --out ${o.role}-ca.pem\`.\n`, { file: o.out });
    });
  inter.command('install')
    .description('install an intermediate certificate signed by the offline root')
    .argument('<cert>', 'certificate file')
    .addOption(new Option('--role <role>').choices(['server', 'client']).makeOptionMandatory())
    .action(async (file: string, o) => {
      const home = requireHome(g()).home;
      const passphrase = await caPassphrase(g(), false, home);
      const [{ openInventory }, { installIntermediate }] = await Promise.all([import('./compose.ts'), import('../ca/index.ts')]);
      const store = (await openInventory(home))!;
      let promoted = false;
      try {
        promoted = (await installIntermediate({ home, role: o.role === 'server' ? 'server-ca' : 'client-ca', certificate: readInput(file), passphrase, store })).rootPromoted;
      } finally {
        await store.close();
      }
      // A running server keeps the intermediate it started with until it reloads.
      out(g(), `Installed the ${o.role} CA certificate.${promoted ? ' Both intermediates are under the new root: ca/root.pem is now the new root.' : ''} Reload \`mutual serve\` (every replica: kill -HUP <pid>, or systemctl reload) or restart it, so it issues from it.\n`, { ok: true, rootPromoted: promoted });
    });
}
