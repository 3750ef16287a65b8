/**
 * CLI wiring for replacing the root (docs/operations.md, "Replacing the root"): `mutual root
 * rotate|install|retire` and `mutual rotation status`. The CA is imported by the action that
 * runs (see main.ts on start-up).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { defaultOfflineDir, offlineLayout, resolveHome, type HomeLayout } from '../ca/home.ts';
import type { CaStore } from '../ca/store.ts';
import type { KeyStoreSpec } from '../keys/index.ts';
import { KEY_TYPES, type KeyType } from '../core/key-types.ts';
import { parseDuration } from '../core/duration.ts';
import { durationOption } from './option-parsers.ts';

interface Globals {
  home?: string;
  passphraseFile?: string;
  json?: boolean;
}

/** What main.ts lends these commands. */
export interface RotationCommandDeps {
  rootPassphrase(file: string | undefined, g: Globals): Promise<string>;
  /** The passphrase of these root keys, '' when all are on a token and no new file key needs one. */
  rootPassphraseFor(rootKeys: string[], file: string | undefined, g: Globals, needsFile?: boolean): Promise<string>;
  /** Parses `--key-store` (PKCS11_URI_INVALID). */
  keyStoreOption(v: string | undefined): Promise<KeyStoreSpec | undefined>;
  requireHome(g: Globals): HomeLayout;
  withInventory<T>(g: Globals, fn: (store: CaStore) => Promise<T>): Promise<T>;
}

const out = (g: Globals, human: string, json: unknown) => process.stdout.write(g.json ? JSON.stringify(json, null, 2) + '\n' : human);
const short = (fp: string) => fp.slice(0, 16);

/** Adds `root` and `rotation` to the program. */
export function registerRotationCommands(program: Command, g: () => Globals, d: RotationCommandDeps): void {
  const root = program.command('root').description('replace the root CA (a rollover with cross-certificates)');
  root.command('rotate')
    .description('offline: make a new root and the cross-certificates joining it to the old one, in the offline folder')
    .option('--offline-dir <dir>', 'the offline folder (default: <home>-offline)')
    .option('--root-passphrase-file <file>', 'root key passphrase file (the new key is encrypted with it too)')
    .addOption(new Option('--root-key <type>', 'the new root\'s key type (default: the old root\'s)').choices(KEY_TYPES))
    .option('--retire-after <duration>', 'how long both roots are trusted: 90d, 30d', durationOption, '90d')
    .option('--key-store <uri>', 'make the new root key here: `file`, or a pkcs11: token URI (default: where the old root key lives)')
    .action(async (o) => {
      const [{ rotateRoot }, { keyStoreOf }] = await Promise.all([import('../ca/index.ts'), import('../keys/index.ts')]);
      const offlineDir = path.resolve(o.offlineDir ?? defaultOfflineDir(resolveHome(g().home)));
      const keyStore = await d.keyStoreOption(o.keyStore);
      const rootKey = offlineLayout(offlineDir).rootKey;
      // The new key is an encrypted file when told so, or when the old one is and no token is named.
      const newFile = (keyStore ?? (fs.existsSync(rootKey) ? keyStoreOf(rootKey) : { kind: 'file' })).kind === 'file';
      const r = await rotateRoot({
        offlineDir, rootPassphrase: await d.rootPassphraseFor([rootKey], o.rootPassphraseFile, g(), newFile), keyType: o.rootKey as KeyType | undefined,
        ...(keyStore ? { keyStore } : {}),
        retireAfterDays: Math.max(1, Math.round(parseDuration(o.retireAfter, '--retire-after') / 86_400_000)),
      });
      out(g(), [
        `Made a new root in ${offlineDir}:`,
        `  new root   ${r.newRoot.fingerprint}`,
        `  old root   ${r.oldRoot.fingerprint} (now root.prev.*)`,
        `  cross      cross/new-by-old.pem, cross/old-by-new.pem`,
        'Next: `mutual root install --from <this folder>` on the CA host, then new intermediates',
        '(`mutual intermediate csr --new-key`, `mutual offline sign-intermediate`, `mutual intermediate install`).',
        '',
      ].join('\n'), { offlineDir, oldRoot: r.oldRoot.fingerprint, newRoot: r.newRoot.fingerprint, retireAfterDays: r.rotation.retireAfterDays });
    });

  root.command('install')
    .description('online: install the new root and cross-certificates from the offline folder; both roots are trusted from now on')
    .requiredOption('--from <dir>', 'the offline folder `mutual root rotate` wrote to')
    .action(async (o) => {
      const { installRoot } = await import('../ca/index.ts');
      const l = d.requireHome(g());
      const s = await d.withInventory(g(), (store) => installRoot({ home: l.home, from: path.resolve(o.from), store }));
      out(g(), [
        `Installed the new root ${short(s.newRoot)}; ${l.rootsBundle} now holds both roots (the old one retires at ${s.retireAt}).`,
        'Next: sign and install new server and client intermediates under it; ca/root.pem becomes the new root when both are.',
        'Reload `mutual serve` (kill -HUP) after each step.',
        '',
      ].join('\n'), s);
    });

  root.command('retire')
    .description('end the overlap: drop the old root from the trust bundle (refused while valid leaves chain only to it)')
    .option('--force', 'retire even with valid leaves under the old root (they stop being trusted)')
    .action(async (o) => {
      const { retireRoot } = await import('../ca/index.ts');
      const l = d.requireHome(g());
      const r = await d.withInventory(g(), (store) => retireRoot({ home: l.home, store, force: o.force === true }));
      out(g(), `Retired the old root ${short(r.state.oldRoot)}${r.remaining ? ` (forced: ${r.remaining} leaves under it are no longer trusted)` : ''}. Reload \`mutual serve\` (kill -HUP).\n`, r);
    });

  program.command('rotation').description('the root rollover').command('status')
    .description('phase, roots, and the valid leaves that still chain only to the old root or to a revoked intermediate')
    .action(async () => {
      const { rotationStatus } = await import('../ca/index.ts');
      const l = d.requireHome(g());
      const s = await d.withInventory(g(), (store) => rotationStatus({ home: l.home, store }));
      const lines = [
        `phase: ${s.rotation.phase}`,
        ...s.roots.map((r) => `root ${short(r.fingerprint)}  ${r.current ? 'current ' : '        '}${r.inBundle ? (r.retireAt ? `retiring at ${r.retireAt}` : 'trusted') : 'retired'}  ${r.notBefore} .. ${r.notAfter}  ${r.subject}`),
        ...s.intermediates.map((i) => `intermediate ${i.name.padEnd(26)} root ${i.root ? short(i.root) : '?'.padEnd(16)}  ${i.revokedAtRoot ? 'REVOKED at root' : 'ok'}  ${i.leaves} valid leaves`),
        `leaves chaining only to the old root: ${s.oldRootLeaves.count}`,
        ...s.oldRootLeaves.serials.map((x) => `  ${x.serial}  ${x.intermediate}  ${x.notAfter}  ${x.identity ?? ''}`),
        `leaves under a revoked intermediate: ${s.revokedIntermediateLeaves.count}`,
        ...s.revokedIntermediateLeaves.serials.map((x) => `  ${x.serial}  ${x.intermediate}  ${x.notAfter}  ${x.identity ?? ''}`),
      ];
      out(g(), lines.join('\n') + '\n', s);
    });
}
