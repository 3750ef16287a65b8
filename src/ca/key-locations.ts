/**
 * Where each of a CA's keys lives (`mutual keys`): an encrypted file, or a key on a PKCS#11 token
 * named by the key reference in that file (its URI, which names where the PIN comes from but never
 * holds it). Read from the files alone: no passphrase, no token login.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isMutualError } from '../core/errors.ts';
import { keyLocation } from '../keys/index.ts';
import { homeLayout, offlineLayout } from './home.ts';
import { readConfig } from './config.ts';
import { tokenKeyStore } from './key-store-choice.ts';
import { tokenKeyFile } from './tokens.ts';

/** One key of the CA. */
export interface KeyLocation {
  /** What it is: `root`, `server-ca`, `client-ca`, `server-ca.next`, `client-ca.prev-<time>`, `token`, `root.prev`. */
  name: string;
  /** Its file: the encrypted key, or the key reference. */
  file: string;
  kind: 'file' | 'pkcs11';
  /** For a token key: the reference URI. */
  uri?: string;
}

/** The key files of a state folder (and of its offline folder, when `offlineDir` is given and there). */
export function keyLocations(home: string, offlineDir?: string): KeyLocation[] {
  const l = homeLayout(home);
  const files: [string, string][] = [['server-ca', l.serverCaKey], ['client-ca', l.clientCaKey], ['token', tokenKeyFile(l.keysDir)]];
  for (const f of fs.existsSync(l.keysDir) ? fs.readdirSync(l.keysDir).sort() : []) {
    const m = /^((?:server|client)-ca\.(?:next|prev-\d+))\.key\.pem$/.exec(f);
    if (m) files.push([m[1], path.join(l.keysDir, f)]);
  }
  if (offlineDir !== undefined) {
    const o = offlineLayout(offlineDir);
    files.push(['root', o.rootKey], ['root.prev', o.prevRootKey]);
  }
  const out: KeyLocation[] = [];
  for (const [name, file] of files) {
    try {
      const at = keyLocation(file);
      out.push({ name, file, ...at });
    } catch (e) {
      // A key that is not there (no rotation yet, an offline folder kept elsewhere) is not listed.
      if (!isMutualError(e, 'KEY_FILE_MISSING')) throw e;
    }
  }
  return out;
}

/**
 * Whether opening the online CA in `home` needs the CA passphrase: some key it opens (the current
 * and retired intermediates, the enrollment token key) is an encrypted file, or the token key is
 * still to be made as one. False when all of them are on a token: an HSM-backed CA then starts
 * (under systemd, with no one to type) with the token's PIN source alone.
 */
export function needsPassphrase(home: string): boolean {
  const keys = keyLocations(home).filter((k) => !k.name.endsWith('.next'));
  if (keys.some((k) => k.kind === 'file')) return true;
  return !keys.some((k) => k.name === 'token') && tokenKeyStore(readConfig(homeLayout(home).config)) === undefined;
}
