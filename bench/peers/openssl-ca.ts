/**
 * The `openssl ca` peer: a standalone OpenSSL CA on disk, leaf issuance from CSRs in one process, and
 * CRL generation from a synthesized index. Each measurement runs the `openssl` on PATH under GNU time
 * and checks the output afterwards, outside the timed part.
 */
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bitString, explicit, implicit, integer, octetString, oid, readElement, seq, set, Tag, utf8String } from '../../src/core/der.ts';
import { OID } from '../../src/core/oids.ts';
import { toPem } from '../../src/core/pem.ts';
import { runTimed } from '../lib/measure.ts';

/** Leaf validity `openssl ca` is configured with, in days. */
export const LEAF_DAYS = 90;
/** Up to this many entries the CRL is also checked through `openssl crl -text` (the text of 1M entries is ~200 MB). */
export const CRL_TEXT_CHECK_MAX = 100_000;
/** Linux caps the whole argument list at ~2 MB; stay well under it for `-infiles`. */
const MAX_ARGV_BYTES = 1_500_000;

/** An OpenSSL CA laid out on disk by {@link prepareOpensslCa}. */
export interface OpensslCa {
  dir: string;
  /** openssl.cnf with the `[ca]` section; pass it as `-config`. */
  config: string;
  /** The self-signed P-256 CA certificate (PEM). */
  certificate: string;
  /** The CA's private key (PKCS#8 PEM, unencrypted), or the `pkcs11:` URI of a token key. */
  privateKey: string;
  /** Extra `openssl ca`/`req` arguments that name the key: none for a file, the engine's for a token key. */
  keyArgs: string[];
  /** The environment of every openssl run (the token's SOFTHSM2_CONF and module); default this process's. */
  env?: NodeJS.ProcessEnv;
  /** index.txt, the CA's database. */
  database: string;
  /** Where `openssl ca` writes every issued certificate, one `SERIAL.pem` each. */
  newcertsDir: string;
}

/** Options for {@link measureOpensslIssuance}. */
export interface OpensslIssuanceOptions {
  /**
   * `-out` file; default `issued-last.pem` in the CA directory. openssl reopens it with O_TRUNC for
   * every certificate, and on ext4 each truncation of the file just written starts a writeback
   * (auto_da_alloc): ~0.45 ms per certificate here. `/dev/null` shows openssl ca without that cost.
   */
  out?: string;
  /** Run pinned to these CPUs (`taskset -c`), e.g. `0`; default: unpinned. */
  cpus?: string;
}

/** What {@link measureOpensslIssuance} measured. */
export interface OpensslIssuanceResult {
  count: number;
  seconds: number;
  certsPerSec: number;
  peakRssMB: number;
  cpuSeconds: number;
}

/** Options for {@link measureOpensslCrl}. */
export interface OpensslCrlOptions {
  /** Revocation time is an hour before, expiry {@link LEAF_DAYS} days after; default: the current time. */
  now?: Date;
  /**
   * Reason written into every index entry, which openssl turns into a CRL reason extension (+14 bytes
   * and one more allocation per entry); `null` for none. Default `keyCompromise`.
   */
  reason?: string | null;
}

/** What {@link measureOpensslCrl} measured. */
export interface OpensslCrlResult {
  count: number;
  order: 'sorted' | 'random';
  seconds: number;
  peakRssMB: number;
  cpuSeconds: number;
  /** Size of the CRL in DER. */
  derBytes: number;
}

const cnf = (dir: string) => `# openssl ca peer for mutual's benchmarks
[ca]
default_ca = bench_ca

[bench_ca]
dir = ${dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.crt
private_key = $dir/ca.key
crlnumber = $dir/crlnumber
rand_serial = yes
unique_subject = no
default_md = sha256
default_days = ${LEAF_DAYS}
default_crl_days = 7
policy = policy_cn
email_in_dn = no
preserve = no
copy_extensions = copy
x509_extensions = server_leaf
crl_extensions = crl_ext

[policy_cn]
commonName = supplied

[server_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[crl_ext]
authorityKeyIdentifier = keyid:always

[req]
distinguished_name = req_dn
prompt = no

[req_dn]
CN = mutual bench openssl CA

[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`;

/** A CA key on a PKCS#11 token, which openssl reaches through libp11's engine (Debian's libengine-pkcs11-openssl). */
export interface OpensslTokenKey {
  /** The private key's URI as libp11 reads it: `pkcs11:token=..;object=..;type=private?pin-source=file:..`. */
  uri: string;
  /** The environment openssl runs in: `PKCS11_MODULE_PATH` (the engine's module) and the token's own settings. */
  env: NodeJS.ProcessEnv;
}

/**
 * Makes a standalone OpenSSL CA in `dir` (created if needed): a P-256 key, a self-signed CA certificate
 * (`openssl req -x509`, 10 years), and an openssl.cnf whose `[ca]` section issues server leaves
 * (CA:FALSE, digitalSignature, serverAuth, SAN copied from the CSR, SKI/AKI, {@link LEAF_DAYS} days,
 * SHA-256, random serials) to any CN-only subject, and signs CRLs with a CRL number and AKI.
 * With `tokenKey` the CA's key is that token key instead (`-engine pkcs11 -keyform engine`).
 */
export async function prepareOpensslCa(dir: string, tokenKey?: OpensslTokenKey): Promise<OpensslCa> {
  // openssl.cnf has no quoting; `$` would expand and whitespace or `#` would cut the value.
  if (/[\s$#"'\\]/.test(dir)) throw new TypeError(`the CA directory must not contain spaces or $#"'\\: ${dir}`);
  const ca: OpensslCa = {
    dir,
    config: join(dir, 'openssl.cnf'),
    certificate: join(dir, 'ca.crt'),
    privateKey: tokenKey?.uri ?? join(dir, 'ca.key'),
    keyArgs: tokenKey ? ['-engine', 'pkcs11', '-keyform', 'engine'] : [],
    env: tokenKey?.env,
    database: join(dir, 'index.txt'),
    newcertsDir: join(dir, 'newcerts'),
  };
  await mkdir(ca.newcertsDir, { recursive: true });
  if (!tokenKey) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await writeFile(ca.privateKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  }
  await writeFile(ca.config, cnf(dir));
  await writeFile(ca.database, '');
  await writeFile(join(dir, 'crlnumber'), '01\n');
  await runTimed('openssl', ['req', '-x509', '-new', '-config', ca.config, ...ca.keyArgs, '-key', ca.privateKey, '-sha256', '-days', '3650', '-extensions', 'v3_ca', '-out', ca.certificate], { env: ca.env });
  return ca;
}

/**
 * Starts from an empty database and newcerts/, so every run does the same work. The old newcerts/ is
 * renamed aside, not deleted: on ext4, creating files soon after deleting thousands makes the inode
 * allocator skip "recently deleted" inodes (minutes), which slowed later rounds here by up to 2x.
 */
async function resetDatabase(ca: OpensslCa): Promise<void> {
  if ((await readdir(ca.newcertsDir)).length > 0) await rename(ca.newcertsDir, `${ca.newcertsDir}.old-${Date.now()}-${randomBytes(3).toString('hex')}`);
  await mkdir(ca.newcertsDir, { recursive: true });
  for (const f of ['index.txt.old', 'index.txt.attr', 'index.txt.attr.old']) await rm(join(ca.dir, f), { force: true });
  await writeFile(ca.database, '');
}

/**
 * Issues one leaf per CSR in ONE `openssl ca -batch -notext -infiles ...` process (the fastest way to
 * drive it: index.txt is written once at the end, without fsync) and times it. `-notext` because the
 * text dump otherwise written into every certificate file is work mutual does not do. index.txt is
 * emptied and newcerts/ set aside first. (`rand_serial` draws one random serial per run and adds 1 per
 * certificate.) Afterwards checks that newcerts/ and index.txt hold `count`
 * certificates, and that one of them verifies against the CA and carries the CSR's SAN and serverAuth.
 */
export async function measureOpensslIssuance(ca: OpensslCa, csrPemFiles: readonly string[], opts: OpensslIssuanceOptions = {}): Promise<OpensslIssuanceResult> {
  const count = csrPemFiles.length;
  if (count === 0) throw new TypeError('no CSRs to issue');
  if (csrPemFiles.reduce((n, f) => n + f.length + 1, 0) > MAX_ARGV_BYTES) {
    throw new TypeError(`${count} CSR paths do not fit on one command line; use fewer or shorter paths`);
  }
  await resetDatabase(ca);
  // -out keeps only the last certificate (every one is in newcerts/); without it they all go to stdout.
  const out = opts.out ?? join(ca.dir, 'issued-last.pem');
  const args = ['ca', '-batch', '-notext', '-config', ca.config, ...ca.keyArgs, '-keyfile', ca.privateKey, '-out', out, '-infiles', ...csrPemFiles];
  const run = opts.cpus ? await runTimed('taskset', ['-c', opts.cpus, 'openssl', ...args], { env: ca.env }) : await runTimed('openssl', args, { env: ca.env });

  const files = (await readdir(ca.newcertsDir)).filter((f) => f.endsWith('.pem'));
  const valid = (await readFile(ca.database, 'utf8')).split('\n').filter((l) => l.startsWith('V\t')).length;
  if (files.length !== count || valid !== count) {
    throw new Error(`openssl ca issued ${files.length} certificates into newcerts/ and recorded ${valid}, expected ${count}`);
  }
  const sample = join(ca.newcertsDir, files[0]);
  const verified = await runTimed('openssl', ['verify', '-CAfile', ca.certificate, sample]);
  if (!/: OK\s*$/.test(verified.stdout)) throw new Error(`issued certificate does not verify: ${verified.stdout}${verified.stderr}`);
  const text = (await runTimed('openssl', ['x509', '-noout', '-text', '-in', sample])).stdout;
  if (!/DNS:host-\d+\.bench\.internal/.test(text) || !text.includes('TLS Web Server Authentication')) {
    throw new Error(`issued certificate lacks the SAN copied from the CSR or serverAuth:\n${text}`);
  }
  return { count, seconds: run.seconds, certsPerSec: count / run.seconds, peakRssMB: run.peakRssMB, cpuSeconds: run.cpuSeconds };
}

/** A minimal PKCS#10 CertificationRequest (RFC 2986) for a P-256 key, CN and one DNS SAN, signed ecdsa-with-SHA256. */
function buildCsr(name: string): Buffer {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const subject = seq(set(seq(oid(OID.commonName), utf8String(name))));
  const san = seq(oid(OID.subjectAltName), octetString(seq(implicit(2, Buffer.from(name, 'latin1')))));
  const extensionRequest = seq(oid(OID.extensionRequest), set(seq(san)));
  const info = seq(integer(0), subject, publicKey.export({ type: 'spki', format: 'der' }), explicit(0, extensionRequest));
  const signature = sign('sha256', info, { key: privateKey, dsaEncoding: 'der' });
  return seq(info, seq(oid(OID.ecdsaWithSHA256)), bitString(signature));
}

/**
 * Writes `count` CSRs as `dir/host-<i>.csr` (PEM; CN and SAN DNS `host-<i>.bench.internal`, each with its
 * own P-256 key, keys not kept) and returns their paths in order. The first is checked with
 * `openssl req -verify`.
 */
export async function writeCsrs(dir: string, count: number): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const path = join(dir, `host-${i}.csr`);
    await writeFile(path, toPem(buildCsr(`host-${i}.bench.internal`), 'CERTIFICATE REQUEST'));
    paths.push(path);
  }
  if (count > 0) {
    const r = await runTimed('openssl', ['req', '-verify', '-noout', '-in', paths[0]]);
    if (!/verify OK/.test(r.stdout + r.stderr)) throw new Error(`openssl does not accept the CSR ${paths[0]}: ${r.stderr}`);
  }
  return paths;
}

/** index.txt times: UTCTime without the century (YYMMDDHHMMSSZ). */
const indexTime = (d: Date) => d.toISOString().replace(/^\d\d(\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d).*$/, '$1$2$3$4$5$6Z');

/**
 * 16-byte serials as even-length upper-case hex, with the top byte in 0x40-0x7f so every one encodes
 * as a 16-byte positive INTEGER: 'sorted' is a random 8-byte prefix + an 8-byte counter, 'random' is
 * random (a collision among 1M is ~2^-83 likely).
 */
function serialsHex(count: number, order: 'sorted' | 'random'): (i: number) => string {
  if (order === 'sorted') {
    const prefix = randomBytes(8);
    prefix[0] = (prefix[0] & 0x3f) | 0x40;
    const p = prefix.toString('hex').toUpperCase();
    return (i) => p + i.toString(16).toUpperCase().padStart(16, '0');
  }
  const all = randomBytes(16 * count);
  for (let o = 0; o < all.length; o += 16) all[o] = (all[o] & 0x3f) | 0x40;
  return (i) => all.toString('hex', 16 * i, 16 * i + 16).toUpperCase();
}

/** Writes an index.txt of `count` revoked entries, in chunks so 1M lines stay cheap. */
async function writeRevokedIndex(path: string, count: number, order: 'sorted' | 'random', now: Date, reason: string | null): Promise<void> {
  const expiry = indexTime(new Date(now.getTime() + LEAF_DAYS * 86_400_000));
  const revoked = indexTime(new Date(now.getTime() - 3_600_000)) + (reason === null ? '' : `,${reason}`);
  const serial = serialsHex(count, order);
  const fh = await open(path, 'w');
  try {
    const CHUNK = 50_000;
    for (let start = 0; start < count; start += CHUNK) {
      let s = '';
      for (let i = start; i < Math.min(count, start + CHUNK); i++) s += `R\t${expiry}\t${revoked}\t${serial(i)}\tunknown\t/CN=x-${i}\n`;
      await fh.write(s);
    }
  } finally {
    await fh.close();
  }
}

/** Counts the revokedCertificates entries of a DER CRL (RFC 5280 5.1) without decoding them. */
function countCrlEntries(der: Buffer): number {
  const crl = readElement(der, 0);
  const tbs = readElement(der, crl.contentStart, crl.end);
  // TBSCertList: version?, signature, issuer, thisUpdate, nextUpdate?, revokedCertificates?, [0] crlExtensions?
  let o = tbs.contentStart;
  let sawTime = false;
  while (o < tbs.end) {
    const e = readElement(der, o, tbs.end);
    if (e.tag === Tag.UTC_TIME || e.tag === Tag.GENERALIZED_TIME) sawTime = true;
    else if (sawTime && e.tag === Tag.SEQUENCE) {
      let n = 0;
      for (let p = e.contentStart; p < e.end; n++) p = readElement(der, p, e.end).end;
      return n;
    }
    o = e.end;
  }
  return 0;
}

/**
 * Replaces the CA's index.txt with `count` synthesized revoked entries (16-byte serials, in increasing
 * order or random; reason keyCompromise unless `opts.reason` says otherwise) and times
 * `openssl ca -gencrl`, which reads the whole index into memory, sorts the entries and signs.
 * Afterwards converts the CRL to DER (its size is `derBytes`), checks its signature against the CA,
 * and that it lists `count` entries: counted in the DER always, and through `openssl crl -text` up to
 * {@link CRL_TEXT_CHECK_MAX}. The CA's index.txt is overwritten (newcerts/ is set aside).
 */
export async function measureOpensslCrl(ca: OpensslCa, count: number, order: 'sorted' | 'random', opts: OpensslCrlOptions = {}): Promise<OpensslCrlResult> {
  await resetDatabase(ca);
  await writeRevokedIndex(ca.database, count, order, opts.now ?? new Date(), opts.reason === undefined ? 'keyCompromise' : opts.reason);
  const pem = join(ca.dir, 'crl.pem');
  const der = join(ca.dir, 'crl.der');
  const run = await runTimed('openssl', ['ca', '-gencrl', '-config', ca.config, ...ca.keyArgs, '-keyfile', ca.privateKey, '-out', pem], { env: ca.env });

  await runTimed('openssl', ['crl', '-in', pem, '-outform', 'DER', '-out', der]);
  const derBytes = (await stat(der)).size;
  const entries = countCrlEntries(await readFile(der));
  if (entries !== count) throw new Error(`the CRL lists ${entries} entries, expected ${count}`);
  const verified = await runTimed('openssl', ['crl', '-in', pem, '-CAfile', ca.certificate, '-noout']);
  if (!/verify OK/.test(verified.stdout + verified.stderr)) throw new Error(`the CRL's signature does not verify: ${verified.stderr}`);
  if (count <= CRL_TEXT_CHECK_MAX) {
    const text = (await runTimed('openssl', ['crl', '-in', pem, '-noout', '-text'])).stdout;
    const listed = text.match(/^\s+Serial Number: /gm)?.length ?? 0;
    if (listed !== count) throw new Error(`openssl crl -text lists ${listed} serial numbers, expected ${count}`);
  }
  return { count, order, seconds: run.seconds, peakRssMB: run.peakRssMB, cpuSeconds: run.cpuSeconds, derBytes };
}
