/**
 * The state folder's layout. Everything the online CA needs lives under one folder (`--home`,
 * else MUTUAL_HOME, else ~/.mutual); the root key never does: it lives in the offline folder
 * (`--offline-dir`, default: `<home>-offline` beside it).
 */
import os from 'node:os';
import path from 'node:path';

/** Paths inside a state folder. */
export interface HomeLayout {
  home: string;
  config: string;
  database: string;
  caDir: string;
  keysDir: string;
  rootCert: string;
  rootCrl: string;
  /** The trust bundle: every root relying parties trust now (docs/operations.md, "Replacing the root"). */
  rootsBundle: string;
  /** The root rotation's state (absent: none ever). */
  rotation: string;
  /** Cross-certificates between the old and the new root. */
  crossDir: string;
  serverCaCert: string;
  clientCaCert: string;
  serverCaKey: string;
  clientCaKey: string;
  adminDir: string;
}

/** Resolves the state folder: the flag, then MUTUAL_HOME, then ~/.mutual. */
export function resolveHome(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(flag ?? env.MUTUAL_HOME ?? path.join(os.homedir(), '.mutual'));
}

/** The default offline folder for a state folder: a sibling named `<name>-offline`. */
export function defaultOfflineDir(home: string): string {
  return path.join(path.dirname(home), `${path.basename(home)}-offline`);
}

/** The layout of a state folder. */
export function homeLayout(home: string): HomeLayout {
  const caDir = path.join(home, 'ca');
  const keysDir = path.join(home, 'keys');
  return {
    home,
    config: path.join(home, 'config.yaml'),
    database: path.join(home, 'mutual.db'),
    caDir,
    keysDir,
    rootCert: path.join(caDir, 'root.pem'),
    rootCrl: path.join(caDir, 'root.crl'),
    rootsBundle: path.join(caDir, 'roots.pem'),
    rotation: path.join(caDir, 'rotation.json'),
    crossDir: path.join(caDir, 'cross'),
    serverCaCert: path.join(caDir, 'server-ca.pem'),
    clientCaCert: path.join(caDir, 'client-ca.pem'),
    serverCaKey: path.join(keysDir, 'server-ca.key.pem'),
    clientCaKey: path.join(keysDir, 'client-ca.key.pem'),
    adminDir: path.join(home, 'admin'),
  };
}

/** Paths inside the offline folder. */
export interface OfflineLayout {
  dir: string;
  rootKey: string;
  rootCert: string;
  /** Root CRL state: number and revoked intermediates. */
  state: string;
  rootCrl: string;
  /** After `mutual root rotate`: the old root's files (the `root.*` ones are the new root's). */
  prevRootKey: string;
  prevRootCert: string;
  prevState: string;
  prevRootCrl: string;
  /** The rotation's cross-certificates (`new-by-old.pem`, `old-by-new.pem`). */
  crossDir: string;
  /** The rotation's state (absent: no rotation made in this folder). */
  rotation: string;
}

/** The layout of an offline folder. */
export function offlineLayout(dir: string): OfflineLayout {
  return {
    dir,
    rootKey: path.join(dir, 'root.key.pem'),
    rootCert: path.join(dir, 'root.pem'),
    state: path.join(dir, 'root-state.json'),
    rootCrl: path.join(dir, 'root.crl'),
    prevRootKey: path.join(dir, 'root.prev.key.pem'),
    prevRootCert: path.join(dir, 'root.prev.pem'),
    prevState: path.join(dir, 'root.prev-state.json'),
    prevRootCrl: path.join(dir, 'root.prev.crl'),
    crossDir: path.join(dir, 'cross'),
    rotation: path.join(dir, 'rotation.json'),
  };
}
