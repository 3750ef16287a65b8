/**
 * Judges every chain in use with two independent verifiers: OpenSSL (`openssl verify -x509_strict`,
 * with the purpose and, when given, every level's CRL) and GnuTLS (`certtool --verify`, medium
 * profile, with the purpose and the CRLs). A chain file is the leaf followed by what its holder
 * sends; the trust file holds the roots a relying party trusts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { runAsync } from '../helpers/tools.ts';

/** A chain to judge: the holder's fullchain file (leaf first) and what it is used for. */
export interface ChainInUse {
  name: string;
  fullchainFile: string;
  purpose: 'client' | 'server';
}

const EKU = { client: '1.3.6.1.5.5.7.3.2', server: '1.3.6.1.5.5.7.3.1' } as const;

/** The verdict of one verifier on one chain: '' when it passed, else what it said. */
async function verdicts(c: ChainInUse, trustFile: string, crlFile: string | undefined, scratch: string): Promise<{ openssl: string; gnutls: string }> {
  const leaf = path.join(scratch, `${c.name}.leaf.pem`);
  const text = fs.readFileSync(c.fullchainFile, 'utf8');
  fs.writeFileSync(leaf, text.slice(0, text.indexOf('-----END CERTIFICATE-----') + 26));
  const crl = crlFile ? ['-crl_check_all', '-CRLfile', crlFile] : [];
  const o = await runAsync('openssl', ['verify', '-x509_strict', '-purpose', c.purpose === 'client' ? 'sslclient' : 'sslserver', ...crl, '-CAfile', trustFile, '-untrusted', c.fullchainFile, leaf]);
  const g = await runAsync('certtool', ['--verify', '--verify-profile', 'medium', '--verify-purpose', EKU[c.purpose], '--load-ca-certificate', trustFile, ...(crlFile ? ['--load-crl', crlFile] : []), '--infile', c.fullchainFile]);
  return {
    openssl: o.status === 0 ? '' : `${o.stdout}${o.stderr}`.trim(),
    gnutls: g.status === 0 ? '' : `${g.stdout}${g.stderr}`.split('\n').filter((l) => /Output|error|Error|not/.test(l)).join(' | '),
  };
}

/** The verifiers. */
export type Verifier = 'openssl' | 'gnutls';

/**
 * Every chain judged by `by` (default both verifiers) against `trustFile` (and `crlFile`); returns
 * the failures as `verifier name: message` (none: all passed).
 */
export async function judgeChains(chains: ChainInUse[], trustFile: string, scratch: string, crlFile?: string, by: readonly Verifier[] = ['openssl', 'gnutls']): Promise<string[]> {
  fs.mkdirSync(scratch, { recursive: true });
  const out: string[] = [];
  for (const c of chains) {
    const v = await verdicts(c, trustFile, crlFile, scratch);
    for (const name of by) if (v[name]) out.push(`${name} ${c.name}: ${v[name]}`);
  }
  return out;
}

/** Both verifiers refuse `c` (e.g. a chain through a revoked intermediate); returns what did not. */
export async function judgeRefused(c: ChainInUse, trustFile: string, scratch: string, crlFile?: string): Promise<string[]> {
  fs.mkdirSync(scratch, { recursive: true });
  const v = await verdicts(c, trustFile, crlFile, scratch);
  return [...(v.openssl ? [] : [`openssl accepted ${c.name}`]), ...(v.gnutls ? [] : [`gnutls accepted ${c.name}`])];
}
