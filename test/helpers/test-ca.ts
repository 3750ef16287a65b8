/**
 * An ephemeral CA in a temp folder, made by the project's own `initCa`, for tests.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initCa, type InitCaOptions, type InitCaResult } from '../../src/ca/init-ca.ts';
import { CertificateAuthority } from '../../src/ca/authority.ts';
import { homeLayout, type HomeLayout } from '../../src/ca/home.ts';
import { openAuthority } from '../../src/ca/open-authority.ts';

/** The passphrase of every test CA (not a secret: these CAs live for one test). */
export const TEST_PASSPHRASE = 'test-passphrase-0123456789';

/** A CA made for one test. */
export interface TestCa {
  dir: string;
  home: string;
  offlineDir: string;
  layout: HomeLayout;
  init: InitCaResult;
  ca: CertificateAuthority;
  /** Writes `data` to a file in the temp folder and returns its path. */
  file(name: string, data: string | Uint8Array): string;
  close(): Promise<void>;
}

/** Makes a temp folder removed by the returned function. */
export function tempDir(prefix = 'mutual-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * Creates a CA (trust domain acme.internal unless overridden) and opens it. `now` fixes the time of
 * the hierarchy and of the open CA; `clock` (read at each call, a test moves it) is the open CA's
 * clock instead, and the hierarchy is made at its current time.
 */
export async function makeTestCa(options: Partial<InitCaOptions> & { offloadCrypto?: boolean; clock?: () => Date } = {}): Promise<TestCa> {
  const { offloadCrypto, clock, ...o } = options;
  if (clock && !o.now) o.now = clock();
  const dir = tempDir();
  const home = path.join(dir, 'home');
  const offlineDir = path.join(dir, 'offline');
  const init = await initCa({ home, offlineDir, trustDomain: 'acme.internal', name: 'Acme Test', passphrase: TEST_PASSPHRASE, ...o });
  const ca = await openAuthority({ home, passphrase: TEST_PASSPHRASE, now: clock ?? (o.now ? () => o.now! : undefined), offloadCrypto });
  const self: TestCa = {
    dir, home, offlineDir, layout: homeLayout(home), init, ca,
    file(name, data) {
      const p = path.join(dir, name);
      fs.writeFileSync(p, data);
      return p;
    },
    async close() {
      // The CA open now (a test may have reopened it, after a key rotation).
      await self.ca.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return self;
}
