/**
 * CLI wiring for the online CA: `serve`, `start`, `token`, and `ca enroll|renew|revoke|list`.
 * The server, the CA, the token signer and the CA client are imported by the action that runs
 * them, so `mutual --help` does not load them (see main.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { Command } from 'commander';
import { Option } from 'commander';
import { MAX_RENEWAL_GRACE_SECONDS } from '../ca/limits.ts';
import { homeLayout, resolveHome } from '../ca/home.ts';
import { KEY_TYPES, type KeyType } from '../core/key-types.ts';
import { MutualError } from '../core/errors.ts';
import { REVOCATION_REASONS } from '../core/revocation-reasons.ts';
import { resolveToken } from './resolve-token.ts';
import { writeFileAtomic } from '../io/atomic-file.ts';
import { parseDuration } from '../core/duration.ts';
import { durationOption, expiringOption, graceSecondsOption, hostPortOption, rateLimitOption, tokenTtlOption } from './option-parsers.ts';

interface Globals {
  home?: string;
  passphraseFile?: string;
  json?: boolean;
}

const out = (g: Globals, human: string, json: unknown) => process.stdout.write(g.json ? JSON.stringify(json, null, 2) + '\n' : human);

/** Writes an issued certificate's files; the key first, each file atomically. */
function writeFiles(dir: string, r: { certificate: string; chain: string; fullchain: string }, key: string | undefined, root: string | undefined): string[] {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files: string[] = [];
  const put = (name: string, data: string, mode = 0o644) => {
    writeFileAtomic(path.join(dir, name), data, { mode });
    files.push(path.join(dir, name));
  };
  if (key) put('key.pem', key, 0o600);
  put('cert.pem', r.certificate);
  put('chain.pem', r.chain);
  put('fullchain.pem', r.fullchain);
  if (root) put('root.pem', root);
  return files;
}

/** Adds the server-side and client-side commands to the program. */
export function registerServerCommands(program: Command, g: () => Globals): void {
  /** The CA passphrase; none is asked for a CA whose every key is on a token (see needsPassphrase). */
  const passphrase = async (home?: string) => {
    if (home !== undefined && fs.existsSync(homeLayout(home).config) && !(await import('../ca/index.ts')).needsPassphrase(home)) return '';
    return (await import('../keys/index.ts')).resolvePassphrase({ passphraseFile: g().passphraseFile, purpose: 'the CA keys' });
  };

  async function serve(o: { listen: string; publicListen?: string; url?: string; logLevel: string; graceSeconds: number; rateLimit: string; database?: string; databaseSchema?: string; sqliteWriterThread?: boolean; cryptoThreads?: boolean }, home: string, pass: string, banner: boolean, passFlag = '') {
    const [{ readConfig }, { openAuthority }, { startCaServer }, { pino }] = await Promise.all([
      import('../ca/index.ts'), import('./compose.ts'), import('../server/index.ts'), import('pino')]);
    const [host, portText] = splitHostPort(o.listen);
    const pub = o.publicListen ? splitHostPort(o.publicListen) : undefined;
    // The public base URL written into certificates (CRL DP, AIA): --url, else the config's, else
    // the plain-HTTP listener if there is one, else the HTTPS listen address.
    const config = readConfig(homeLayout(home).config);
    const base = o.url ?? config.url ?? (pub ? `http://${pub[0]}:${pub[1]}` : `https://${host}:${portText}`);
    const ca = await openAuthority({ home, passphrase: pass, databaseUrl: o.database, databaseSchema: o.databaseSchema, writerThread: o.sqliteWriterThread === true, url: base,
      offloadCrypto: o.cryptoThreads === true });
    const logger = pino({ level: o.logLevel });
    const rl = o.rateLimit === 'off' ? false : { perSecond: Number(o.rateLimit), burst: Number(o.rateLimit) * 2 };
    // ACME's URLs are the HTTPS API's: --url or the config's when https:, else each request's Host.
    const srv = await startCaServer({ ca, passphrase: pass, host, port: Number(portText), serverNames: o.url ? [new URL(o.url).hostname] : [], logger, renewalGraceSeconds: o.graceSeconds, rateLimit: rl,
      publicHost: pub?.[0], publicPort: pub ? Number(pub[1]) : undefined, acmeUrl: [o.url, config.url].find((u) => u?.startsWith('https:')) });
    if (banner) {
      const rel = path.relative(process.cwd(), home) || home;
      process.stderr.write([
        `mutual CA server on ${srv.url}${srv.publicUrl ? ` (OCSP and CRLs also on ${srv.publicUrl})` : ''}`,
        `  trust bundle (root): ${homeLayout(home).rootCert}`,
        `  admin credentials:   ${homeLayout(home).adminDir}/cert.pem, key.pem`,
        '',
        'Try:',
        `  curl --cacert ${rel}/ca/root.pem ${srv.url}/health`,
        `  curl --cacert ${rel}/ca/root.pem --cert ${rel}/admin/cert.pem --key ${rel}/admin/key.pem ${srv.url}/v1/certificates   # asks for the admin key's passphrase${passFlag ? ' (the demo passphrase)' : ''}`,
        `  npx mutual --home ${rel}${passFlag} ca list --ca-url ${srv.url}`,
        `  npx mutual --home ${rel}${passFlag} token spiffe://${ca.config.trustDomain}/dev/payments --ttl 10m --out token`,
        `  npx mutual ca enroll --ca-url ${srv.url} --token-file token --out ./payments`,
        `  npx mutual ca renew --ca-url ${srv.url} ./payments/cert.pem ./payments/key.pem --force`,
        `  openssl ocsp -url ${srv.url}/ocsp -issuer ${rel}/ca/client-ca.pem -cert ./payments/cert.pem -CAfile ${rel}/ca/root.pem`,
        `  npx mutual --home ${rel}${passFlag} demo   # a live mTLS call, a revocation, and the call refused`,
        '',
      ].join('\n'));
    }
    let closing = false;
    const stop = async (sig: string) => {
      if (closing) return;
      closing = true;
      logger.info({ signal: sig }, 'shutting down: finishing in-flight requests');
      await srv.close();
      await ca.close();
      // Ends the token sessions (and with them the OCSP responder keys made as session objects).
      await (await import('../keys/index.ts')).closeKeyStores();
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
    // After `mutual intermediate install` or an edited config.yaml: `kill -HUP`, `systemctl reload`.
    process.on('SIGHUP', () => {
      logger.info('SIGHUP: reading the intermediates and config.yaml again');
      srv.reload().catch((e: unknown) => {
        const err = e as { code?: string; message?: string };
        logger.error({ code: err.code, err: err.message }, 'reload failed; still serving with the intermediates loaded before');
      });
    });
  }

  const serveOptions = (c: Command) => c
    .option('--listen <host:port>', 'address to listen on', hostPortOption, '127.0.0.1:8443')
    .option('--public-listen <host:port>', 'also serve OCSP, CRLs and CA certificates over plain HTTP here (point --url at it)', hostPortOption)
    .option('--url <url>', 'public base URL written into certificates (default: the listen address)')
    .addOption(new Option('--log-level <level>').choices(['debug', 'info', 'warn', 'error']).default('info'))
    .option('--grace-seconds <n>', `allow renewal of certificates expired less than this long ago, 0 (off) to ${MAX_RENEWAL_GRACE_SECONDS}`, graceSecondsOption, 0)
    .option('--rate-limit <n>', 'API requests per second per client address, or "off"', rateLimitOption, '200')
    .option('--database <url>', 'postgres://... shared by replicas (default: $MUTUAL_DATABASE_URL, else config.yaml\'s database, else SQLite in the state folder)')
    .option('--database-schema <name>', 'PostgreSQL schema (default: $MUTUAL_DATABASE_SCHEMA, else config.yaml\'s, else public)')
    .option('--sqlite-writer-thread', 'commit SQLite batches on a writer thread (helps with many concurrent clients; measured slower at 8)')
    .option('--crypto-threads', 'verify CSRs and sign on libuv\'s thread pool (for many cores; slower on 2, where the hand-offs cost more than they free)');

  serveOptions(program.command('serve').description('run the online CA server (API, enrollment, renewal, OCSP, CRLs)'))
    .action(async (o) => serve(o, resolveHome(g().home), await passphrase(resolveHome(g().home)), true));

  serveOptions(program.command('start').description('first run: create a CA in the state folder; then serve it (what `npm start` runs)'))
    .action(async (o) => {
      const home = resolveHome(g().home);
      const fromEnv = process.env.MUTUAL_CA_PASSPHRASE;
      const pass = fromEnv || demoPassphrase(home);
      if (!fs.existsSync(homeLayout(home).config)) {
        // First run: the teaching demo (a CA, a live mTLS call, a revocation, the call refused),
        // then the CA server on the same state folder.
        await (await import('./demo.ts')).runDemo({ home, trailer: false });
        if (!fromEnv) process.stderr.write(`\nThe demo CA's passphrase is in ${demoPassphraseFile(home)} (a convenience of npm start; set MUTUAL_CA_PASSPHRASE for a real CA).\n\n`);
      }
      await serve(o, home, pass, true, fromEnv ? '' : ` --passphrase-file ${path.relative(process.cwd(), demoPassphraseFile(home))}`);
    });

  program.command('token')
    .description('make a one-time enrollment token for names (DNS, IP) or one identity (spiffe://...)')
    .argument('<names...>', 'what the token allows')
    .option('--ttl <duration>', 'lifetime of the token: 10m, 1h (at most 7d)', tokenTtlOption, '10m')
    .option('--cert-ttl <duration>', 'lifetime of the certificate it enrolls: 15m, 8h, 90d (5m at least; default: the profile\'s)', durationOption)
    .option('--out <file>', 'write the token to this file (0600), for `mutual ca enroll --token-file`, instead of stdout')
    .action(async (names: string[], o) => {
      const [{ checkLifetime, profileLifetimes, loadTokenKey, mintToken, tokenKeyStore }, { openAuthority }, { splitNames }, { checkNames }, { parseCertificate }, { readPemOrDer }] = await Promise.all([
        import('../ca/index.ts'), import('./compose.ts'), import('../core/names.ts'),
        import('../core/policy.ts'), import('../core/certificate.ts'), import('../core/pem.ts')]);
      const home = resolveHome(g().home);
      const pass = await passphrase(home);
      const ca = await openAuthority({ home, passphrase: pass });
      try {
        const sans = splitNames(names);
        const role = sans.uri.length ? 'client' : 'server';
        checkNames(ca.policy, sans, role);
        const certSeconds = o.certTtl === undefined ? undefined : checkLifetime(role, parseDuration(o.certTtl, '--cert-ttl') / 1000, profileLifetimes(ca.config.profiles[role]).maxSeconds);
        const rootFingerprint = parseCertificate(readPemOrDer(ca.rootPem, ['CERTIFICATE'])).fingerprint;
        const t = await mintToken({ key: loadTokenKey(ca.layout.keysDir, pass, tokenKeyStore(ca.config)), names: sans, ttlSeconds: parseDuration(o.ttl, '--ttl') / 1000, rootFingerprint, madeBy: 'cli', certLifetimeSeconds: certSeconds });
        await ca.store.audit({ actor: 'cli', action: 'token', target: t.jti, details: { names: sans, expiresAt: t.expiresAt.toISOString(), ...(certSeconds !== undefined ? { certificateTtlSeconds: certSeconds } : {}) } });
        if (o.out) {
          writeFileAtomic(o.out, t.token + '\n', { mode: 0o600 });
          out(g(), `Wrote a one-time token to ${o.out} (0600), valid until ${t.expiresAt.toISOString()}.\n`, { file: o.out, expiresAt: t.expiresAt });
        } else out(g(), t.token + '\n', { token: t.token, expiresAt: t.expiresAt });
      } finally {
        await ca.close();
        await (await import('../keys/index.ts')).closeKeyStores();
      }
    });

  registerClientCommands(program, g);
}

/** `mutual ca ...`: enrollment, renewal and admin calls to a running CA server. */
function registerClientCommands(program: Command, g: () => Globals): void {
  const client = program.command('ca').description('talk to a running CA server');
  client.command('enroll')
    .description('get a certificate with a one-time token (makes the key here)')
    .requiredOption('--ca-url <url>', 'the CA server')
    .addOption(new Option('--token-file <file>', 'file holding the token from `mutual token` (0600; or $MUTUAL_TOKEN)').conflicts('token'))
    .option('--token <token>', 'the token itself (visible to anyone running ps: prefer --token-file or $MUTUAL_TOKEN)')
    .requiredOption('--out <dir>', 'folder for cert.pem, key.pem, chain.pem, fullchain.pem, root.pem')
    .addOption(new Option('--key <type>', 'key type').choices(KEY_TYPES).default('p256'))
    .option('--root <file>', 'trust this root instead of the one pinned by the token')
    .option('--force', 'replace an existing key.pem in --out')
    .action(async (o) => {
      // Refused before the CA is asked, so the one-time token is not spent on it.
      const keyPath = path.join(o.out, 'key.pem');
      if (!o.force && fs.existsSync(keyPath)) throw new MutualError('OUTPUT_EXISTS', { detail: `${keyPath} exists; give --force to replace it, or another --out folder`, path: keyPath });
      const token = resolveToken({ token: o.token, tokenFile: o.tokenFile });
      const { enroll } = await import('../sdk/index.ts');
      const r = await enroll({ caUrl: o.caUrl, token, keyType: o.key as KeyType, root: o.root && fs.readFileSync(o.root, 'utf8') });
      const files = writeFiles(o.out, r, r.key.export({ type: 'pkcs8', format: 'pem' }) as string, r.root);
      out(g(), `Enrolled: certificate ${r.serial}${r.identity ? ` for ${r.identity}` : ''}, valid until ${r.notAfter}\n${files.map((f) => '  ' + f).join('\n')}\n`, { serial: r.serial, notAfter: r.notAfter, files });
    });

  client.command('renew')
    .description('renew a certificate over mTLS with itself (exit 0 when nothing needs doing)')
    .argument('<cert>', 'current certificate')
    .argument('<key>', 'its key')
    .requiredOption('--ca-url <url>', 'the CA server')
    .option('--root <file>', 'trusted root (default: root.pem beside the certificate)')
    .option('--new-key', 'make a new key as well')
    .option('--force', 'renew even before 2/3 of the lifetime')
    .action(async (certFile: string, keyFile: string, o) => {
      const certPem = fs.readFileSync(certFile, 'utf8');
      const [{ parseCertificate }, { readPemOrDer }] = await Promise.all([import('../core/certificate.ts'), import('../core/pem.ts')]);
      const info = parseCertificate(readPemOrDer(certPem, ['CERTIFICATE']));
      const life = info.notAfter.getTime() - info.notBefore.getTime();
      const due = new Date(info.notBefore.getTime() + (life * 2) / 3);
      if (!o.force && Date.now() < due.getTime()) {
        out(g(), `Nothing to do: ${info.serial} is due for renewal at ${due.toISOString()}.\n`, { renewed: false, due });
        return;
      }
      const rootFile = o.root ?? path.join(path.dirname(certFile), 'root.pem');
      if (!fs.existsSync(rootFile)) throw new MutualError('CA_UNTRUSTED', { detail: `no trusted root: pass --root (looked for ${rootFile})` });
      const { renew } = await import('../sdk/index.ts');
      const r = await renew({ caUrl: o.caUrl, certificate: certPem, key: fs.readFileSync(keyFile, 'utf8'), root: fs.readFileSync(rootFile, 'utf8'), newKey: o.newKey });
      // New key first (if any), then the certificate: each replaced atomically.
      if (r.key) writeFileAtomic(keyFile, r.key.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
      writeFileAtomic(certFile, r.certificate);
      const dir = path.dirname(certFile);
      if (fs.existsSync(path.join(dir, 'fullchain.pem'))) writeFileAtomic(path.join(dir, 'fullchain.pem'), r.fullchain);
      if (fs.existsSync(path.join(dir, 'chain.pem'))) writeFileAtomic(path.join(dir, 'chain.pem'), r.chain);
      out(g(), `Renewed: ${info.serial} -> ${r.serial}, valid until ${r.notAfter}\n`, { renewed: true, serial: r.serial, previous: info.serial, notAfter: r.notAfter });
    });

  const adminOpts = (c: Command) => c
    .requiredOption('--ca-url <url>', 'the CA server')
    .option('--cert <file>', 'admin certificate (default: <home>/admin/cert.pem)')
    .option('--key <file>', 'admin key, 0600 in a 0700 folder, encrypted or not (default: <home>/admin/key.pem)')
    .option('--admin-passphrase-file <file>', 'passphrase of an encrypted admin key (else $MUTUAL_ADMIN_PASSPHRASE, else the CA passphrase sources, else a prompt)')
    .addOption(new Option('--p12 <file>', 'admin certificate and key as a PKCS#12 bundle (e.g. <home>/admin/bundle.p12), instead of --cert/--key').conflicts(['cert', 'key']))
    .option('--p12-password-file <file>', 'the bundle\'s password (else $MUTUAL_P12_PASSWORD, else a prompt)')
    .option('--root <file>', 'trusted root (default: <home>/ca/root.pem)');
  const adminCreds = async (o: { cert?: string; key?: string; root?: string; adminPassphraseFile?: string; p12?: string; p12PasswordFile?: string }) => {
    const l = homeLayout(resolveHome(g().home));
    const [{ adminPassphrase, readAdminPkcs12 }, { readPrivateKeyFile }] = await Promise.all([import('./admin-key.ts'), import('../keys/index.ts')]);
    if (o.p12) return { ...(await readAdminPkcs12(o.p12, { p12PasswordFile: o.p12PasswordFile })), root: fs.readFileSync(o.root ?? l.rootCert, 'utf8') };
    // The same custody check as the CA keys: a key others can read is refused, encrypted or not.
    const key = await readPrivateKeyFile(o.key ?? path.join(l.adminDir, 'key.pem'), () => adminPassphrase({ adminPassphraseFile: o.adminPassphraseFile, caPassphraseFile: g().passphraseFile }));
    return {
      cert: fs.readFileSync(o.cert ?? path.join(l.adminDir, 'cert.pem'), 'utf8'),
      // In memory only, for the TLS handshake (Node's TLS options take PEM, not a KeyObject).
      key: key.export({ type: 'pkcs8', format: 'pem' }) as string,
      root: fs.readFileSync(o.root ?? l.rootCert, 'utf8'),
    };
  };
  adminOpts(client.command('revoke').description('revoke a certificate through the CA server').argument('<serial>'))
    .addOption(new Option('--reason <reason>').choices(Object.keys(REVOCATION_REASONS)).default('unspecified'))
    .action(async (serial: string, o) => {
      const { adminCall } = await import('../sdk/index.ts');
      const r = (await adminCall({ caUrl: o.caUrl, path: '/v1/revoke', body: { serial, reason: o.reason }, ...(await adminCreds(o)) })) as { serial: string; reason: string; covered?: string[] };
      out(g(), `Revoked ${r.serial} (${r.reason}).${(r.covered ?? []).map((c) => `\n  also revoked ${c} (renewed from it)`).join('')}\n`, r);
    });
  adminOpts(client.command('list').description('list the CA server\'s inventory'))
    .option('--expiring <duration>', 'only certificates expiring within this time: 30d, 12h (a bare number is days)', expiringOption)
    .action(async (o) => {
      // The API takes days; a duration of hours is a fraction of one.
      const q = o.expiring ? `?expiringDays=${parseDuration(o.expiring) / 86_400_000}` : '';
      const { adminCall } = await import('../sdk/index.ts');
      const r = (await adminCall({ caUrl: o.caUrl, path: `/v1/certificates${q}`, ...(await adminCreds(o)) })) as { items: { serial: string; role: string; status: string; notAfter: string; identity?: string; names: { dns: string[] } }[] };
      out(g(), r.items.map((i) => `${i.serial}  ${i.role.padEnd(6)}  ${i.status.padEnd(7)}  ${i.notAfter}  ${i.identity ?? i.names.dns.join(',')}`).join('\n') + '\n', r);
    });
}

function splitHostPort(v: string): [string, string] {
  if (v.startsWith('[')) return [v.slice(1, v.indexOf(']')), v.slice(v.indexOf(']') + 2)];
  const i = v.lastIndexOf(':');
  if (i < 0) throw new MutualError('CONFIG_INVALID', { detail: `${v}: use host:port` });
  return [v.slice(0, i), v.slice(i + 1)];
}

/** The demo passphrase kept beside the state folder (npm start only; real CAs use MUTUAL_CA_PASSPHRASE). */
export function demoPassphrase(home: string): string {
  const file = demoPassphraseFile(home);
  if (!fs.existsSync(file)) writeFileAtomic(file, crypto.randomBytes(24).toString('base64url') + '\n', { mode: 0o600 });
  return fs.readFileSync(file, 'utf8').trim();
}

/** Where npm start keeps the demo passphrase: beside the state folder, never inside it. */
export function demoPassphraseFile(home: string): string {
  return path.join(path.dirname(home), `${path.basename(home)}-demo-passphrase`);
}
