/**
 * Judges every chain in use with three independent verifiers: OpenSSL (`openssl verify -x509_strict`,
 * with the purpose and, when given, every level's CRL), GnuTLS (`certtool --verify`, medium
 * profile, with the purpose and the CRLs) and Go's crypto/x509 (go-verify.go, with the purpose;
 * Go reads no CRLs, so it judges the path only and has no say on a refusal that rests on a CRL).
 * A chain file is the leaf followed by what its holder sends; the trust file holds the roots a
 * relying party trusts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runAsync } from '../helpers/tools.ts';

/** go-verify.go built once per test process (a temporary GOCACHE: nothing written outside tmp). */
let goVerify: Promise<string> | undefined;
function goVerifier(): Promise<string> {
  goVerify ??= (async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-go-verify-'));
    const bin = path.join(dir, 'go-verify');
    const r = await runAsync('go', ['build', '-o', bin, path.join(import.meta.dirname, 'go-verify.go')], { env: { ...process.env, GOCACHE: path.join(dir, 'cache'), GOPATH: path.join(dir, 'gopath'), GO111MODULE: 'off', GOFLAGS: '' } });
    if (r.status !== 0) throw new Error(`go build go-verify.go: ${r.stdout}${r.stderr}`);
    return bin;
  })();
  return goVerify;
}

/** A chain to judge: the holder's fullchain file (leaf first) and what it is used for. */
export interface ChainInUse {
  name: string;
  fullchainFile: string;
  purpose: 'client' | 'server';
}

const EKU = { client: '1.3.6.1.5.5.7.3.2', server: '1.3.6.1.5.5.7.3.1' } as const;

/** The verdict of one verifier on one chain: '' when it passed, else what it said. */
async function verdicts(c: ChainInUse, trustFile: string, crlFile: string | undefined, scratch: string): Promise<{ openssl: string; gnutls: string; go: string }> {
  const leaf = path.join(scratch, `${c.name}.leaf.pem`);
  const text = fs.readFileSync(c.fullchainFile, 'utf8');
  fs.writeFileSync(leaf, text.slice(0, text.indexOf('-----END CERTIFICATE-----') + 26));
  const crl = crlFile ? ['-crl_check_all', '-CRLfile', crlFile] : [];
  const o = await runAsync('openssl', ['verify', '-x509_strict', '-purpose', c.purpose === 'client' ? 'sslclient' : 'sslserver', ...crl, '-CAfile', trustFile, '-untrusted', c.fullchainFile, leaf]);
  const x = await runAsync(await goVerifier(), [trustFile, c.fullchainFile, c.purpose]);
  const g = await runAsync('certtool', ['--verify', '--verify-profile', 'medium', '--verify-purpose', EKU[c.purpose], '--load-ca-certificate', trustFile, ...(crlFile ? ['--load-crl', crlFile] : []), '--infile', c.fullchainFile]);
  return {
    openssl: o.status === 0 ? '' : `${o.stdout}${o.stderr}`.trim(),
    gnutls: g.status === 0 ? '' : `${g.stdout}${g.stderr}`.split('\n').filter((l) => /Output|error|Error|not/.test(l)).join(' | '),
    go: x.status === 0 ? '' : `${x.stdout}${x.stderr}`.trim(),
  };
}

/** The verifiers. */
export type Verifier = 'openssl' | 'gnutls' | 'go';

/**
 * Every chain judged by `by` (default all three verifiers) against `trustFile` (and `crlFile`);
 * returns the failures as `verifier name: message` (none: all passed).
 */
export async function judgeChains(chains: ChainInUse[], trustFile: string, scratch: string, crlFile?: string, by: readonly Verifier[] = ['openssl', 'gnutls', 'go']): Promise<string[]> {
  fs.mkdirSync(scratch, { recursive: true });
  const out: string[] = [];
  for (const c of chains) {
    const v = await verdicts(c, trustFile, crlFile, scratch);
    for (const name of by) if (v[name]) out.push(`${name} ${c.name}: ${v[name]}`);
  }
  return out;
}

/**
 * Every verifier refuses `c` (e.g. a chain through a revoked intermediate, or to a root no longer
 * trusted); returns what did not. Go judges only refusals that do not rest on a CRL (`crlFile`).
 */
export async function judgeRefused(c: ChainInUse, trustFile: string, scratch: string, crlFile?: string): Promise<string[]> {
  fs.mkdirSync(scratch, { recursive: true });
  const v = await verdicts(c, trustFile, crlFile, scratch);
  const judges: Verifier[] = crlFile ? ['openssl', 'gnutls'] : ['openssl', 'gnutls', 'go'];
  return judges.filter((name) => !v[name]).map((name) => `${name} accepted ${c.name}`);
}
