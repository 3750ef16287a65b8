/**
 * `mutual`: command wiring only. Each action resolves its inputs, calls src/ca, and prints.
 *
 * Start-up: this module and what it imports statically must stay light (commander, src/core, the
 * CLI helpers: no npm dependency beyond commander), so `--help` and `--version` answer without
 * loading the CA, the stores, the servers or their dependencies. An action imports what it runs
 * with `await import()` (test/package/cli-startup.test.ts checks; bench/cli-startup.ts measures).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { CertificateAuthority, LeafRole } from '../ca/index.ts';
import type { CaStore } from '../ca/store.ts';
import { defaultOfflineDir, homeLayout, offlineLayout, resolveHome, type HomeLayout } from '../ca/home.ts';
import { MIN_HEAD_PREFIX } from '../ca/limits.ts';
import { REVOCATION_REASONS } from '../core/revocation-reasons.ts';
import { KEY_TYPES, type KeyType } from '../core/key-types.ts';
import { MutualError } from '../core/errors.ts';
import { parseDuration } from '../core/duration.ts';
import { EXIT, reportError, reportUsageError } from './output.ts';
import { durationOption, expiringOption, positiveInt } from './option-parsers.ts';
import { registerServerCommands } from './server-commands.ts';
import { commandExitCode, registerMonitorCommands } from './monitor-command.ts';
import { agentExitCode, registerAgentCommand } from './agent-command.ts';
import { registerGatewayCommand } from './gateway-command.ts';
import { registerAcmeCommand } from './acme-command.ts';
import { registerRotationCommands } from './rotation-commands.ts';

/** Global options every command sees. */
interface GlobalOptions {
  home?: string;
  passphraseFile?: string;
  json?: boolean;
}

const MAX_INPUT_FILE = 1024 * 1024;

function readInput(file: string): Buffer {
  const st = fs.statSync(file);
  if (!st.isFile()) throw new MutualError('FILE_UNREADABLE', { detail: `${file} is not a file`, path: file });
  if (st.size > MAX_INPUT_FILE) throw new MutualError('INPUT_TOO_LARGE', { detail: `${file} is ${st.size} bytes` });
  return fs.readFileSync(file);
}

/** Set once a command loads the key module: run() then closes the token sessions it opened. */
let keysLoaded = false;

/** The key module (passphrases, key stores), loaded when a command needs a key (not by --help). */
const passphrases = () => {
  keysLoaded = true;
  return import('../keys/index.ts');
};

/** `--key-store`: `file` or a pkcs11: URI naming a token (checked: PKCS11_URI_INVALID). */
async function keyStoreOption(v: string | undefined) {
  return v === undefined ? undefined : (await passphrases()).parseKeyStore(v);
}

/**
 * The passphrase of the root keys a command may open (`rootKeys`), unless all of them are on a
 * token: then none is asked (the token's PIN comes from the URI's pin-source), and '' is given.
 * `needsFile`: the command also writes a new encrypted key, which needs one whatever the old key is.
 */
async function rootPassphraseFor(rootKeys: string[], file: string | undefined, g: GlobalOptions, needsFile = false): Promise<string> {
  const { keyLocation } = await passphrases();
  const onToken = (k: string): boolean => {
    try {
      return keyLocation(k).kind === 'pkcs11';
    } catch {
      // A missing or unreadable key file: the command itself says so, with its own error.
      return false;
    }
  };
  return !needsFile && rootKeys.every(onToken) ? '' : rootPassphrase(file, g);
}

/**
 * The CA passphrase. With `home` (a CA that exists), none is asked when every key the online CA
 * opens is on a token (needsPassphrase): '' is given, and no file key will be opened with it.
 */
async function caPassphrase(g: GlobalOptions, confirm = false, home?: string): Promise<string> {
  const { resolvePassphrase } = await passphrases();
  if (home !== undefined && !(await import('../ca/index.ts')).needsPassphrase(home)) return '';
  return resolvePassphrase({ passphraseFile: g.passphraseFile, purpose: 'the CA keys', confirm });
}

async function rootPassphrase(file: string | undefined, g: GlobalOptions): Promise<string> {
  const env = { ...process.env, MUTUAL_CA_PASSPHRASE: process.env.MUTUAL_ROOT_PASSPHRASE || process.env.MUTUAL_CA_PASSPHRASE };
  const { resolvePassphrase } = await passphrases();
  return resolvePassphrase({ passphraseFile: file ?? g.passphraseFile, env, purpose: 'the offline root key' });
}

async function p12Password(o: { p12?: boolean; p12PasswordFile?: string }): Promise<string | undefined> {
  if (!o.p12) return undefined;
  if (o.p12PasswordFile) return fs.readFileSync(o.p12PasswordFile, 'utf8').replace(/\r?\n$/, '');
  if (process.env.MUTUAL_P12_PASSWORD) return process.env.MUTUAL_P12_PASSWORD;
  const env = { MUTUAL_CA_PASSPHRASE: undefined };
  const { resolvePassphrase } = await passphrases();
  return resolvePassphrase({ env, purpose: 'the PKCS#12 bundle (MUTUAL_P12_PASSWORD)', confirm: true });
}

/** The state folder's layout; throws CA_NOT_INITIALIZED when it holds no CA. */
function requireHome(g: GlobalOptions): HomeLayout {
  const home = resolveHome(g.home);
  const l = homeLayout(home);
  if (!fs.existsSync(l.config)) throw new MutualError('CA_NOT_INITIALIZED', { detail: `no CA in ${home}` });
  return l;
}

/** Parses an audit head option: hex, at least MIN_HEAD_PREFIX digits (a usage error otherwise). */
function headOption(v: string): string {
  if (!new RegExp(`^[0-9a-fA-F]{${MIN_HEAD_PREFIX},64}$`).test(v)) throw new InvalidArgumentError(`expected ${MIN_HEAD_PREFIX} to 64 hex digits`);
  return v;
}

/** `--ttl`: a certificate lifetime such as 8h, 15m or 90d (5 minutes at least; the CA checks the bounds). */
const ttlOption = () => new Option('--ttl <duration>', 'lifetime as a duration: 15m, 8h, 90d (5m at least; default: the profile\'s)').argParser(durationOption).conflicts('days');

/** Runs `fn` on the CA's inventory (SQLite or PostgreSQL, as configured), without its keys. */
async function withInventory<T>(g: GlobalOptions, fn: (store: CaStore) => Promise<T>): Promise<T> {
  const home = requireHome(g).home;
  const { openInventory } = await import('./compose.ts');
  const store = await openInventory(home);
  if (!store) throw new MutualError('CA_NOT_INITIALIZED', { detail: `no inventory in ${home}` });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

async function withCa<T>(g: GlobalOptions, fn: (ca: CertificateAuthority) => Promise<T>): Promise<T> {
  const home = requireHome(g).home;
  const { openAuthority } = await import('./compose.ts');
  const ca = await openAuthority({ home, passphrase: await caPassphrase(g, false, home) });
  try {
    return await fn(ca);
  } finally {
    await ca.close();
  }
}

const print = (g: GlobalOptions, human: string, json: unknown) => {
  process.stdout.write(g.json ? JSON.stringify(json, null, 2) + '\n' : human);
};

const collect = (v: string, prev: string[]) => [...prev, v];

/**
 * SHA-256 of a certificate's DER, 64 lowercase hex digits: what a token's `sha` claim carries and
 * agent.yaml's `ca.rootFingerprint` takes.
 */
async function rootFingerprint(pemOrDer: string | Buffer): Promise<string> {
  const [{ parseCertificate }, { readPemOrDer }] = await Promise.all([import('../core/certificate.ts'), import('../core/pem.ts')]);
  return parseCertificate(readPemOrDer(pemOrDer, ['CERTIFICATE'])).fingerprint;
}

/** The issue request field for a `--ttl` option, if given. */
const ttl = (v: string | undefined): { ttlSeconds?: number } => (v === undefined ? {} : { ttlSeconds: parseDuration(v) / 1000 });

/** mutual's version, from its package.json (two folders up from src/cli and from dist/cli alike). */
function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/**
 * Builds the program. `run` in tests uses it with a captured output. With `json` (the command
 * line has --json, known before commander parses it), commander's own error text is not printed:
 * `run` prints the usage error as JSON instead.
 */
export function buildProgram(o: { json?: boolean } = {}): Command {
  const program = new Command('mutual')
    .description('An internal certificate authority and mutual-TLS toolkit')
    .option('--home <dir>', 'state folder (default: $MUTUAL_HOME, else ~/.mutual)')
    .option('--passphrase-file <file>', 'file holding the CA passphrase (else $MUTUAL_CA_PASSPHRASE, else a prompt)')
    .option('--json', 'machine-readable output')
    .version(packageVersion(), '-V, --version', 'print the version of mutual')
    // Before the commands are added: they copy the output settings when they are made.
    .configureOutput(o.json ? { writeErr: () => {} } : {})
    .showHelpAfterError()
    .exitOverride();
  const g = () => program.opts<GlobalOptions>();

  registerIssuingCommands(program, g);
  registerSigningCommands(program, g);
  registerReadingCommands(program, g);
  registerOfflineCommands(program, g);
  registerRotationCommands(program, g, { rootPassphrase, rootPassphraseFor, keyStoreOption, requireHome, withInventory });

  registerServerCommands(program, g);
  registerMonitorCommands(program);
  registerAgentCommand(program);
  registerGatewayCommand(program);
  registerAcmeCommand(program, g);

  program.command('demo')
    .description('initialize a CA if needed, then show mTLS working and a revoked certificate refused')
    .action(async () => (await import('./demo.ts')).runDemo({ home: resolveHome(g().home ?? '.mutual') }));

  return program;
}

/** `init` and `issue`: making the CA and certificates with new keys. */
function registerIssuingCommands(program: Command, g: () => GlobalOptions): void {
  program.command('init')
    .description('create the root, server and client intermediates, the root CRL and an admin certificate')
    .requiredOption('--trust-domain <domain>', 'SPIFFE trust domain, e.g. acme.internal')
    .option('--name <name>', 'organization name in the CA certificates', 'mutual')
    .option('--offline-dir <dir>', 'where the encrypted root key (or its token key reference) goes (default: <home>-offline)')
    .option('--root-passphrase-file <file>', 'passphrase for the root key (else $MUTUAL_ROOT_PASSPHRASE, else the CA passphrase)')
    .option('--key-store <uri>', 'make the intermediates\' keys on a PKCS#11 token: pkcs11:token=...?module-path=...&pin-source=file:... (default: encrypted files); written to config.yaml as keys.store')
    .option('--root-key-store <uri>', 'make the root key on a PKCS#11 token (its reference goes to the offline folder; default: an encrypted file there)')
    .addOption(new Option('--ocsp-responder-keys <where>', 'OCSP responder keys: in memory, or on the --key-store token as session objects (config.yaml keys.ocspResponderKeys)').choices(['memory', 'store']))
    .addOption(new Option('--enrollment-token-key <where>', 'the enrollment token signing key: an encrypted file, or on the --key-store token (config.yaml keys.enrollmentTokenKey)').choices(['file', 'store']))
    .option('--permit-dns <suffix>', 'also permit this DNS suffix (repeatable)', collect, [])
    .option('--permit-ip <cidr>', 'also permit this IP range (repeatable)', collect, [])
    .option('--url <url>', 'public base URL of the CA server, written into certificates (CRL, OCSP, AIA)')
    .addOption(new Option('--root-key <type>', 'root key type').choices(KEY_TYPES).default('p384'))
    .addOption(new Option('--key <type>', 'intermediate key type').choices(KEY_TYPES).default('p256'))
    .option('--admin <name>', 'name of the first admin', 'admin')
    .option('--p12', 'also write the admin certificate as admin/bundle.p12 (password: $MUTUAL_P12_PASSWORD or a prompt)')
    .option('--p12-password-file <file>', 'PKCS#12 password file')
    .option('--admin-passphrase-file <file>', 'passphrase that encrypts admin/key.pem (else $MUTUAL_ADMIN_PASSPHRASE, else the CA passphrase)')
    .option('--database <url>', 'keep the inventory in PostgreSQL (postgres://user@host/db, no password: PGPASSWORD or ~/.pgpass give it); written to config.yaml')
    .option('--database-schema <name>', 'its PostgreSQL schema (default public)')
    .action(async (o) => {
      const [{ initCa }, { resolveStoreLocation }, { ADMIN_PASSPHRASE_ENV, adminPassphrase }, { writeIssued }] = await Promise.all([
        import('../ca/index.ts'), import('../ca/open-ca-store.ts'), import('./admin-key.ts'), import('../ca/index.ts')]);
      const home = resolveHome(g().home);
      const passphrase = await caPassphrase(g(), true);
      const rootPass = o.rootPassphraseFile || process.env.MUTUAL_ROOT_PASSPHRASE ? await rootPassphrase(o.rootPassphraseFile, g()) : passphrase;
      const adminPass = o.adminPassphraseFile || process.env[ADMIN_PASSPHRASE_ENV] ? await adminPassphrase({ adminPassphraseFile: o.adminPassphraseFile }) : passphrase;
      const p12 = await p12Password(o);
      if (o.databaseSchema && !o.database) throw new MutualError('CONFIG_INVALID', { detail: '--database-schema needs --database' });
      // Both URIs are checked before anything is asked for or made.
      const keyStore = await keyStoreOption(o.keyStore);
      const rootKeyStore = await keyStoreOption(o.rootKeyStore);
      // MUTUAL_DATABASE_URL (which may hold a password) serves this run only; --database is written to config.yaml.
      const at = o.database ? undefined : resolveStoreLocation({ home, env: process.env });
      const r = await initCa({
        home, offlineDir: o.offlineDir && path.resolve(o.offlineDir), trustDomain: o.trustDomain, name: o.name, passphrase, rootPassphrase: rootPass,
        permitDns: o.permitDns, permitIp: o.permitIp, url: o.url, keyTypes: { root: o.rootKey as KeyType, intermediate: o.key as KeyType }, adminName: o.admin,
        adminKeyPassphrase: adminPass, database: o.database ? { url: o.database, schema: o.databaseSchema } : undefined, keyStore, rootKeyStore,
        ...(o.ocspResponderKeys || o.enrollmentTokenKey ? { keysConfig: { ocspResponderKeys: o.ocspResponderKeys, enrollmentTokenKey: o.enrollmentTokenKey } } : {}),
        ...(at?.kind === 'postgres' ? { databaseUrl: at.url, databaseSchema: at.schema } : {}),
      });
      const adminDir = homeLayout(home).adminDir;
      const fingerprint = await rootFingerprint(r.rootPem);
      if (p12 !== undefined) writeIssued(adminDir, r.admin, { p12Password: p12, keyPassphrase: adminPass, force: true });
      print(g(), [
        `Created CA "${r.config.name}" for trust domain ${r.config.trustDomain} in ${home}`,
        `  root CA       ${homeLayout(home).rootCert}`,
        `  server CA     ${homeLayout(home).serverCaCert}`,
        `  client CA     ${homeLayout(home).clientCaCert}`,
        `  admin         ${adminDir}/cert.pem (${r.admin.identity})`,
        `  root SHA-256  ${fingerprint}   (agent.yaml's ca.rootFingerprint; \`mutual fingerprint\` prints it again)`,
        '',
        ...(rootKeyStore?.kind === 'pkcs11' ? [
          `The ROOT KEY is on its token; ${r.offline.dir} holds its reference. Keep that token (and`,
          'folder) offline. The online CA never needs them; only `mutual offline sign-intermediate`',
          'and `mutual offline crl` do.',
        ] : [
          `The ROOT KEY is in ${r.offline.dir} (encrypted). Move that folder off this host`,
          '(e.g. to an encrypted USB drive kept offline). The online CA never needs it; only',
          '`mutual offline sign-intermediate` and `mutual offline crl` do.',
        ]),
        '',
      ].join('\n'), { home, offlineDir: r.offline.dir, trustDomain: r.config.trustDomain, rootFingerprint: fingerprint, admin: { identity: r.admin.identity, serial: r.admin.serial } });
    });

  const issue = program.command('issue').description('issue a certificate with a new key');
  issue.command('server')
    .description('a server certificate (serverAuth, DNS/IP names) from the server CA')
    .argument('<dns...>', 'DNS names')
    .option('--ip <ip>', 'IP address (repeatable)', collect, [])
    .requiredOption('--out <dir>', 'folder for cert.pem, key.pem, chain.pem, fullchain.pem')
    .option('--days <n>', 'lifetime in days (default: the profile\'s)', positiveInt)
    .addOption(ttlOption())
    .addOption(new Option('--key <type>', 'key type').choices(KEY_TYPES))
    .option('--p12', 'also write bundle.p12')
    .option('--p12-password-file <file>', 'PKCS#12 password file (else $MUTUAL_P12_PASSWORD, else a prompt)')
    .option('--force', 'replace an existing key.pem in --out')
    .action(async (dns: string[], o) => issueAndWrite('server', { dns, ip: o.ip, uri: [] }, o));
  issue.command('client')
    .description('a client certificate (clientAuth, SPIFFE identity) from the client CA')
    .argument('<service>', 'service name (or a full spiffe:// identity)')
    .option('--env <env>', 'environment segment of the identity', 'prod')
    .requiredOption('--out <dir>', 'folder for cert.pem, key.pem, chain.pem, fullchain.pem')
    .option('--days <n>', 'lifetime in days', positiveInt)
    .addOption(ttlOption())
    .addOption(new Option('--key <type>', 'key type').choices(KEY_TYPES))
    .option('--p12', 'also write bundle.p12')
    .option('--p12-password-file <file>', 'PKCS#12 password file')
    .option('--force', 'replace an existing key.pem in --out')
    .action(async (service: string, o) => {
      const [{ readConfig }, { serviceIdentity }] = await Promise.all([import('../ca/index.ts'), import('../core/identity.ts')]);
      const config = readConfig(requireHome(g()).config);
      const id = service.startsWith('spiffe://') ? service : serviceIdentity(config.trustDomain, o.env, service).uri;
      await issueAndWrite('client', { dns: [], ip: [], uri: [id] }, o);
    });

  async function issueAndWrite(role: LeafRole, names: { dns: string[]; ip: string[]; uri: string[] }, o: { out: string; days?: number; ttl?: string; key?: KeyType; p12?: boolean; p12PasswordFile?: string; force?: boolean }) {
    const keyPath = path.join(o.out, 'key.pem');
    if (!o.force && fs.existsSync(keyPath)) throw new MutualError('OUTPUT_EXISTS', { detail: keyPath });
    const password = await p12Password(o);
    const { writeIssued } = await import('../ca/index.ts');
    await withCa(g(), async (ca) => {
      const r = await ca.issue({ role, names, days: o.days, ...ttl(o.ttl), keyType: o.key, actor: 'cli' });
      const files = writeIssued(o.out, r, { p12Password: password, force: o.force });
      print(g(), `Issued ${role} certificate ${r.serial} for ${[...names.dns, ...names.ip, ...names.uri].join(', ')}, valid until ${r.notAfter.toISOString()}\n${files.map((f) => '  ' + f).join('\n')}\n`,
        { serial: r.serial, notAfter: r.notAfter, identity: r.identity, files });
    });
  }
}

/** Signing CSRs, revocation and CRLs. */
function registerSigningCommands(program: Command, g: () => GlobalOptions): void {
  program.command('sign')
    .description('sign a CSR (the key stays with the requester)')
    .argument('<csr>', 'CSR file (PEM or DER)')
    .addOption(new Option('--profile <profile>', 'certificate profile').choices(['server', 'client']).makeOptionMandatory())
    .option('--days <n>', 'lifetime in days', positiveInt)
    .addOption(ttlOption())
    .option('--out <file>', 'write the certificate (PEM) here instead of stdout')
    .option('--fullchain', 'include the issuing CA after the certificate')
    .action(async (file: string, o) => {
      const csr = readInput(file);
      await withCa(g(), async (ca) => {
        const r = await ca.issue({ role: o.profile, csr, days: o.days, ...ttl(o.ttl), actor: 'cli' });
        const pem = o.fullchain ? r.fullchainPem : r.certificatePem;
        if (o.out) {
          fs.writeFileSync(o.out, pem);
          print(g(), `Issued ${o.profile} certificate ${r.serial} -> ${o.out}\n`, { serial: r.serial, notAfter: r.notAfter, file: o.out });
        } else if (g().json) print(g(), '', { serial: r.serial, notAfter: r.notAfter, certificate: pem });
        else process.stdout.write(pem);
      });
    });

  program.command('revoke')
    .description('revoke a certificate and regenerate its CA\'s CRL')
    .argument('<serial-or-file>', 'hex serial, or a certificate file')
    .addOption(new Option('--reason <reason>', 'RFC 5280 reason').choices(Object.keys(REVOCATION_REASONS)).default('unspecified'))
    .action(async (ref: string, o) => {
      const byFile = fs.existsSync(ref);
      const { parseRevocationReason } = await import('../core/revocation-reasons.ts');
      await withCa(g(), async (ca) => {
        const r = await ca.revoke({ ...(byFile ? { certificate: readInput(ref) } : { serial: ref }), reason: parseRevocationReason(o.reason), actor: 'cli' });
        const covered = r.covered.map((c) => `\n  also revoked ${c.serial} (renewed from it), reason ${c.reason}`).join('');
        print(g(), `Revoked ${r.serial} (${r.subject}), reason ${r.reason}.${covered}\nThe ${r.role} CA's CRL was regenerated.\n`,
          { serial: r.serial, reason: r.reason, revokedAt: r.revokedAt, covered: r.covered.map((c) => c.serial) });
      });
    });

  program.command('crl')
    .description('print or write a CA\'s current CRL')
    .addOption(new Option('--issuer <ca>', 'which CA').choices(['root', 'server', 'client']).makeOptionMandatory())
    .option('--out <file>', 'write here (DER if it ends in .crl or .der, else PEM)')
    .option('--der', 'DER to stdout')
    .action(async (o) => {
      let der: Buffer;
      if (o.issuer === 'root') der = fs.readFileSync(requireHome(g()).rootCrl);
      else der = await withCa(g(), (ca) => ca.writeCrl(o.issuer));
      const pem = (await import('../core/pem.ts')).toPem(der, 'X509 CRL');
      if (o.out) {
        fs.writeFileSync(o.out, /\.(crl|der)$/.test(o.out) ? der : pem);
        print(g(), `Wrote the ${o.issuer} CRL to ${o.out}\n`, { file: o.out });
      } else process.stdout.write(o.der ? der : pem);
    });

}

/** Reading the inventory, certificates and the audit log: no CA key needed. */
function registerReadingCommands(program: Command, g: () => GlobalOptions): void {
  program.command('list')
    .description('list the inventory')
    .option('--expiring <duration>', 'only certificates expiring within this time: 30d, 12h (a bare number is days)', expiringOption)
    .addOption(new Option('--role <role>').choices(['server', 'client']))
    .addOption(new Option('--status <status>').choices(['valid', 'revoked']))
    .option('--all', 'include expired certificates')
    .option('--limit <n>', 'at most this many', positiveInt, 1000)
    .action(async (o) => {
      // The inventory is read without the CA keys: listing needs no passphrase, and does not pay
      // the key files' 600,000 PBKDF2 rounds (~90 ms a key).
      await withInventory(g(), async (store) => {
        const now = new Date();
        const rows = await store.listCertificates({
          role: o.role, status: o.status, limit: o.limit, notExpiredAt: o.all ? undefined : now,
          expiringBefore: o.expiring ? new Date(now.getTime() + parseDuration(o.expiring)) : undefined,
        });
        const view = rows.map((r) => ({ serial: r.serial, role: r.role, subject: r.subject, identity: r.identity, names: r.names, notAfter: r.notAfter, status: r.status, reason: r.reason }));
        const text = rows.map((r) => `${r.serial}  ${r.role.padEnd(6)}  ${r.status.padEnd(7)}  ${r.notAfter.toISOString()}  ${r.identity ?? [...r.names.dns, ...r.names.ip].join(',')}`).join('\n');
        print(g(), (text ? `SERIAL                            ROLE    STATUS   NOT AFTER                 NAMES\n${text}\n` : 'No certificates match.\n'), view);
      });
    });

  program.command('inspect')
    .description('explain a certificate: names, validity, issuer, and its status in the inventory')
    .argument('<file>', 'certificate (PEM or DER)')
    .action(async (file: string) => {
      const [{ parseCertificate }, { readPemOrDer }, { describeCertificate }] = await Promise.all([
        import('../core/certificate.ts'), import('../core/pem.ts'), import('./describe.ts')]);
      const info = parseCertificate(readPemOrDer(readInput(file), ['CERTIFICATE']));
      const home = resolveHome(g().home);
      let status: string | undefined;
      // Without a CA here, the certificate is explained on its own.
      const store = fs.existsSync(homeLayout(home).config) ? await (await import('./compose.ts')).openInventory(home, { ifPresent: true }) : undefined;
      if (store) {
        try {
          const found = await store.getCertificate(info.serial, info.authorityKeyId?.toString('hex'));
          status = found && found.fingerprint === info.fingerprint ? (found.status === 'revoked' ? `revoked ${found.revokedAt?.toISOString()} (${found.reason})` : 'valid (in inventory)') : 'not in this CA\'s inventory';
        } finally {
          await store.close();
        }
      }
      const d = describeCertificate(info, new Date(), status);
      print(g(), d.text, d.json);
    });

  program.command('keys')
    .description('where each CA key lives: an encrypted key file, or a key on a PKCS#11 token (its reference URI; never a PIN)')
    .option('--offline-dir <dir>', 'also the root keys in this offline folder (default: <home>-offline, when it exists)')
    .action(async (o: { offlineDir?: string }) => {
      const l = requireHome(g());
      keysLoaded = true;
      const { keyLocations } = await import('../ca/index.ts');
      const offlineDir = path.resolve(o.offlineDir ?? defaultOfflineDir(l.home));
      const keys = keyLocations(l.home, fs.existsSync(offlineDir) ? offlineDir : undefined);
      const text = keys.map((k) => `${k.name.padEnd(26)} ${k.kind === 'pkcs11' ? `token   ${k.uri}` : `file    ${k.file}`}`).join('\n');
      print(g(), `${text}\n`, keys);
    });

  program.command('fingerprint')
    .description('print the SHA-256 fingerprint of the CA\'s root (or of CERT): 64 hex digits, the form tokens and agent.yaml\'s ca.rootFingerprint use')
    .argument('[cert]', 'a certificate file (PEM or DER) instead of the root in --home')
    .action(async (file: string | undefined) => {
      const source = file ?? requireHome(g()).rootCert;
      const fingerprint = await rootFingerprint(readInput(source));
      print(g(), `${fingerprint}\n`, { fingerprint, file: source });
    });

  program.command('bundle')
    .description('print CA certificates (PEM)')
    .addArgument(new Argument('[which]', 'which CA certificates: the trust bundle (every root trusted now; default), the current root, an intermediate, all').choices(['roots', 'root', 'server', 'client', 'all']).default('roots'))
    .action(async (which: string) => {
      const l = requireHome(g());
      // roots.pem exists once a root rotation was installed; before, the bundle is root.pem.
      const bundle = fs.existsSync(l.rootsBundle) ? l.rootsBundle : l.rootCert;
      const files: Record<string, string[]> = { roots: [bundle], root: [l.rootCert], server: [l.serverCaCert], client: [l.clientCaCert], all: [bundle, l.serverCaCert, l.clientCaCert] };
      process.stdout.write(files[which].map((f) => fs.readFileSync(f, 'utf8')).join(''));
    });

  program.command('audit').description('the audit log').command('verify')
    .description('check the audit log\'s hash chain and that the inventory agrees with it')
    .option('--head <hash>', `a head printed by an earlier run (at least ${MIN_HEAD_PREFIX} hex digits): the log must still hold it, so entries cut off since show`, headOption)
    .action(async (o: { head?: string }) => {
      const l = requireHome(g());
      const [{ openInventory }, { verifyAuditLog }] = await Promise.all([import('./compose.ts'), import('../ca/index.ts')]);
      const store = (await openInventory(l.home))!;
      try {
        const r = await verifyAuditLog(store, { head: o.head });
        print(g(), `Audit log intact: ${r.entries} entries, head ${r.head.slice(0, MIN_HEAD_PREFIX)}\n`, r);
      } finally {
        await store.close();
      }
    });
}

/** The offline root and the air-gapped re-signing of intermediates. */
function registerOfflineCommands(program: Command, g: () => GlobalOptions): void {
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
      print(g(), `Signed the ${o.role} CA -> ${o.out}. Install it with \`mutual intermediate install ${o.out} --role ${o.role}\`.\n`, { file: o.out });
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
      print(g(), `Renewed the root CRL${copied.length ? ` (copied to ${copied.join(', ')})` : ''}.\n`, { bytes: der.length, copied });
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
      print(g(), `Wrote ${o.out}. Sign it offline: \`mutual offline sign-intermediate ${o.out} --role ${o.role} --out ${o.role}-ca.pem\`.\n`, { file: o.out });
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
      print(g(), `Installed the ${o.role} CA certificate.${promoted ? ' Both intermediates are under the new root: ca/root.pem is now the new root.' : ''} Reload \`mutual serve\` (every replica: kill -HUP <pid>, or systemctl reload) or restart it, so it issues from it.\n`, { ok: true, rootPromoted: promoted });
    });
}

/** Runs the CLI; returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  // Options after `--` are arguments, not --json.
  const dashDash = argv.indexOf('--');
  const json = (dashDash < 0 ? argv : argv.slice(0, dashDash)).includes('--json');
  const program = buildProgram({ json });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return commandExitCode(program) ?? agentExitCode(program) ?? EXIT.OK;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.OK : reportUsageError(e.message, json);
    return reportError(e, json || Boolean(program.opts().json));
  } finally {
    // A token's sessions and module end with the command, not with the process's exit handlers.
    if (keysLoaded) await (await passphrases()).closeKeyStores();
  }
}

if (import.meta.main) {
  process.exitCode = await run(process.argv.slice(2));
}
