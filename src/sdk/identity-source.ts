/**
 * A service's own TLS identity (certificate chain + key, and the trust bundle), kept current:
 * loaded from files and reloaded when they change (fs.watch on the folder, with a poll as the
 * fallback: watches miss events on some file systems and on atomic renames), or enrolled from the
 * CA with a one-time token and renewed in the background at 2/3 of its lifetime. Consumers read
 * {@link IdentitySource.current} when they open something new and listen to 'rotated'.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import tls from 'node:tls';
import diagnostics from 'node:diagnostics_channel';
import type { KeyType } from '../core/algorithms.ts';
import { parseCertificate, type CertificateInfo } from '../core/certificate.ts';
import { MutualError } from '../core/errors.ts';
import { readPemOrDer } from '../core/pem.ts';
import { writeFileAtomic } from '../io/index.ts';
import { enroll, renew } from './ca-client.ts';

/** Default poll interval for file identities (the fallback when a watch misses a change). */
export const IDENTITY_POLL_MS = 10_000;
/** Changes are read this long after the last file event, so a cert + key pair lands together. */
export const IDENTITY_SETTLE_MS = 50;
/** Renewal happens at this fraction of the lifetime (DESIGN.md: renew at 2/3). */
export const RENEW_FRACTION = 2 / 3;
/** Wait before retrying a failed renewal (at most; less when expiry is near). */
export const RENEW_RETRY_MS = 60_000;
/** Largest certificate/key/bundle file read. */
export const MAX_IDENTITY_FILE_BYTES = 1024 * 1024;

const rotatedChannel = diagnostics.channel('mutual:sdk:rotated');
const failedChannel = diagnostics.channel('mutual:sdk:rotation-failed');

/** The current material of an identity. */
export interface IdentityMaterial {
  /** Leaf + intermediates, PEM (what a TLS peer is sent). */
  cert: string;
  /** The private key, PEM (PKCS#8). */
  key: string;
  /** The trust bundle (roots, CA certificates), PEM, when known. */
  ca?: string;
  /** The leaf, parsed. */
  info: CertificateInfo;
}

/** Events of {@link IdentitySource}. */
export interface IdentitySourceEvents {
  rotated: [IdentityMaterial];
  error: [Error];
}

/**
 * An identity that may change while the process runs. 'rotated' fires after `current` changed;
 * 'error' fires when a reload or renewal failed (the previous material stays in use) and only if
 * someone listens to it.
 */
export class IdentitySource extends EventEmitter<IdentitySourceEvents> {
  #current: IdentityMaterial;
  #context: tls.SecureContext | undefined;
  readonly #stop: (() => void)[] = [];

  constructor(initial: IdentityMaterial) {
    super();
    this.#current = initial;
  }

  /** The material now in force. */
  get current(): IdentityMaterial {
    return this.#current;
  }

  /** A SecureContext made from the current material (made once per rotation). */
  get secureContext(): tls.SecureContext {
    this.#context ??= tls.createSecureContext({ cert: this.#current.cert, key: this.#current.key, ca: this.#current.ca });
    return this.#context;
  }

  /** Replaces the material and emits 'rotated' (for sources fed by hand, and by the loaders). */
  update(next: IdentityMaterial): void {
    this.#current = next;
    this.#context = undefined;
    if (rotatedChannel.hasSubscribers) rotatedChannel.publish({ serial: next.info.serial, notAfter: next.info.notAfter, subject: next.info.subject });
    this.emit('rotated', next);
  }

  /** Reports a failed reload or renewal. */
  fail(e: Error): void {
    if (failedChannel.hasSubscribers) failedChannel.publish({ error: e.message });
    if (this.listenerCount('error') > 0) this.emit('error', e);
  }

  /** Registers a cleanup run by {@link close}. */
  onClose(fn: () => void): void {
    this.#stop.push(fn);
  }

  /** Stops watching and renewing. */
  close(): void {
    for (const fn of this.#stop.splice(0)) fn();
  }
}

/** Makes material from PEM text; throws KEY_MISMATCH when the key is not the certificate's. */
export function identityMaterial(cert: string, key: string, ca?: string): IdentityMaterial {
  const info = parseCertificate(readPemOrDer(cert, ['CERTIFICATE']));
  const keyObject = crypto.createPrivateKey(key);
  const spki = crypto.createPublicKey(keyObject).export({ type: 'spki', format: 'der' });
  if (!spki.equals(info.spki)) throw new MutualError('KEY_MISMATCH', { detail: `the key does not belong to the certificate for "${info.subject}" (serial ${info.serial})` });
  const keyPem = key.includes('-----BEGIN') ? key : (keyObject.export({ type: 'pkcs8', format: 'pem' }) as string);
  return { cert, key: keyPem, ...(ca ? { ca } : {}), info };
}

/** Options of {@link loadIdentity}. */
export interface LoadIdentityOptions {
  /** Certificate file: the leaf followed by its intermediates (fullchain.pem). */
  certFile: string;
  keyFile: string;
  /** Trust bundle file (roots and CA certificates), optional. */
  caFile?: string;
  /** Watch the files and reload on change. Default true. */
  watch?: boolean;
  /** Poll interval (ms) besides the watch; 0 turns polling off. Default {@link IDENTITY_POLL_MS}. */
  pollMs?: number;
}

function readSmall(file: string): string {
  const st = fs.statSync(file);
  if (st.size > MAX_IDENTITY_FILE_BYTES) throw new MutualError('INPUT_TOO_LARGE', { detail: `${file} is ${st.size} bytes` });
  return fs.readFileSync(file, 'utf8');
}

/**
 * Loads an identity from files and, by default, keeps it current: a change of any file (written
 * in place or renamed over, as `mutual agent` does) is read after {@link IDENTITY_SETTLE_MS}; a
 * pair that does not match yet (cert written, key not yet) is skipped until the next change or
 * poll. Throws KEY_MISMATCH, CERT_MALFORMED, PEM_* or a file error for the first load.
 */
export function loadIdentity(o: LoadIdentityOptions): IdentitySource {
  const read = () => identityMaterial(readSmall(o.certFile), readSmall(o.keyFile), o.caFile ? readSmall(o.caFile) : undefined);
  const src = new IdentitySource(read());
  if (o.watch === false) return src;
  const files = [o.certFile, o.keyFile, ...(o.caFile ? [o.caFile] : [])].map((f) => path.resolve(f));
  let stamp = files.map((f) => statStamp(f)).join('|');
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    timer = undefined;
    const now = files.map((f) => statStamp(f)).join('|');
    if (now === stamp) return;
    try {
      const next = read();
      stamp = now;
      if (next.cert !== src.current.cert || next.key !== src.current.key || next.ca !== src.current.ca) src.update(next);
    } catch (e) {
      // Half-written rotation (or a bad file): keep the material in force, look again later.
      // read() throws MutualErrors or the system's Errors, never other values.
      src.fail(e as Error);
    }
  };
  const soon = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(check, IDENTITY_SETTLE_MS);
    timer.unref();
  };
  const watchers: fs.FSWatcher[] = [];
  for (const dir of new Set(files.map((f) => path.dirname(f)))) {
    try {
      const w = fs.watch(dir, { persistent: false }, (_event, name) => {
        if (!name || files.some((f) => path.dirname(f) === dir && path.basename(f) === name.toString())) soon();
      });
      w.on('error', () => w.close());
      watchers.push(w);
    } catch {
      // No watch here (some container file systems): the poll below still sees changes.
    }
  }
  const pollMs = o.pollMs ?? IDENTITY_POLL_MS;
  const poll = pollMs > 0 ? setInterval(check, pollMs) : undefined;
  poll?.unref();
  src.onClose(() => {
    for (const w of watchers) w.close();
    if (poll) clearInterval(poll);
    if (timer) clearTimeout(timer);
  });
  return src;
}

/** A file's identity for change detection: inode, size and mtime, or `missing`. */
export function statStamp(file: string): string {
  try {
    const st = fs.statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

/** Options of {@link enrollIdentity}. */
export interface EnrollIdentityOptions {
  /** Base URL of `mutual serve`. */
  caUrl: string;
  /** One-time enrollment token (`mutual token <names>`). */
  token: string;
  keyType?: KeyType;
  /** Write cert.pem, key.pem (0600), fullchain.pem and root.pem here after each enrollment/renewal. */
  dir?: string;
  /** Renew at this fraction of the lifetime; default {@link RENEW_FRACTION}. */
  renewAt?: number;
  /** Clock; default `() => new Date()`. */
  now?: () => Date;
}

/**
 * Enrolls with a one-time token (the root is pinned by the token) and renews in the background at
 * 2/3 of the lifetime with a new key, over mTLS with the current certificate. A failed renewal
 * is retried every minute (sooner near expiry) and reported on 'error'.
 */
export async function enrollIdentity(o: EnrollIdentityOptions): Promise<IdentitySource> {
  const now = o.now ?? (() => new Date());
  const first = await enroll({ caUrl: o.caUrl, token: o.token, keyType: o.keyType });
  const root = first.root;
  const keyPem = (k: crypto.KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }) as string;
  const save = (m: IdentityMaterial) => {
    if (!o.dir) return;
    fs.mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    writeFileAtomic(path.join(o.dir, 'key.pem'), m.key, { mode: 0o600 });
    writeFileAtomic(path.join(o.dir, 'fullchain.pem'), m.cert, { mode: 0o644 });
    writeFileAtomic(path.join(o.dir, 'root.pem'), root, { mode: 0o644 });
  };
  const material = identityMaterial(first.fullchain, keyPem(first.key), root);
  save(material);
  const src = new IdentitySource(material);
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const plan = () => {
    if (closed) return;
    const info = src.current.info;
    const life = info.notAfter.getTime() - info.notBefore.getTime();
    const at = info.notBefore.getTime() + life * (o.renewAt ?? RENEW_FRACTION);
    schedule(Math.max(0, at - now().getTime()));
  };
  const schedule = (ms: number) => {
    // setTimeout caps at ~24.8 days; longer waits are chained.
    timer = setTimeout(() => (ms > 2 ** 31 - 1 ? schedule(ms - (2 ** 31 - 1)) : void renewNow()), Math.min(ms, 2 ** 31 - 1));
    timer.unref();
  };
  const renewNow = async () => {
    try {
      const cur = src.current;
      const r = await renew({ caUrl: o.caUrl, certificate: cur.cert, key: cur.key, root, newKey: true, keyType: o.keyType });
      const next = identityMaterial(r.fullchain, r.key ? keyPem(r.key) : cur.key, root);
      save(next);
      src.update(next);
      plan();
    } catch (e) {
      src.fail(e as Error); // renew() rejects with MutualErrors or the system's Errors
      const left = src.current.info.notAfter.getTime() - now().getTime();
      if (!closed) schedule(Math.max(1000, Math.min(RENEW_RETRY_MS, left / 10)));
    }
  };
  plan();
  src.onClose(() => {
    closed = true;
    if (timer) clearTimeout(timer);
  });
  return src;
}
