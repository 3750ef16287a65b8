/**
 * `npm start` / `mutual demo`: a CA on the embedded default, a live mTLS server, a call with a
 * client certificate, a revocation, and the same call refused. Short output that teaches.
 */
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { initCa } from '../ca/index.ts';
import { defaultOfflineDir, homeLayout } from '../ca/home.ts';
import { toPem } from '../core/pem.ts';
import { parseCertificate, certificateIdentity } from '../core/certificate.ts';
import { OID } from '../core/oids.ts';
import { demoPassphrase, demoPassphraseFile } from './server-commands.ts';
import { openAuthority } from './compose.ts';
import { createFetchBytes } from '../sdk/index.ts';
import { resolveStoreLocation } from '../ca/open-ca-store.ts';

const TRUST_DOMAIN = 'demo.internal';

function say(step: string, text: string) {
  process.stdout.write(`${step.padEnd(3)} ${text}\n`);
}


/** Largest answer the demo prints (the demo server says one line). */
const MAX_DEMO_ANSWER_BYTES = 64 * 1024;

/** One call to the demo server through the project's bounded fetcher; a refusal is described, not thrown. */
async function call(port: number, ca: string, client?: { cert: string; key: string }): Promise<string> {
  try {
    const r = await createFetchBytes({ ca, ...client, httpsOnly: true, timeoutMs: 5000 })(`https://127.0.0.1:${port}/`, { maxBytes: MAX_DEMO_ANSWER_BYTES });
    return `${r.status} ${r.body.toString('utf8').trim()}`;
  } catch (e) {
    return `refused: ${explainTlsError(e as Error)}`;
  }
}

function explainTlsError(e: Error): string {
  const m = e.message;
  if (/certificate revoked/i.test(m)) return 'the server says our certificate is revoked (TLS alert 44)';
  if (/certificate required|handshake failure|alert number 116/i.test(m)) return 'the server requires a client certificate (TLS alert 116)';
  return m;
}

/** Runs the demo against the CA in `home`, creating it on first run. */
export async function runDemo(o: { home: string; /** Print the "try next" lines (default true). */ trailer?: boolean }): Promise<void> {
  const home = path.resolve(o.home);
  const layout = homeLayout(home);
  const fromEnv = process.env.MUTUAL_CA_PASSPHRASE;
  const passphrase = fromEnv || demoPassphrase(home);
  process.stdout.write(`mutual demo: state folder ${path.relative(process.cwd(), home) || home}\n\n`);
  if (!fs.existsSync(layout.config)) {
    // The admin key is encrypted with the same passphrase, as `mutual init` does by default.
    const at = resolveStoreLocation({ home, env: process.env });
    await initCa({ home, trustDomain: TRUST_DOMAIN, name: 'mutual demo', passphrase, adminKeyPassphrase: passphrase, ...(at.kind === 'postgres' ? { databaseUrl: at.url, databaseSchema: at.schema } : {}) });
    say('1.', `Created a CA for trust domain ${TRUST_DOMAIN}: root (key in ${path.relative(process.cwd(), defaultOfflineDir(home))}/, encrypted),`);
    say('', 'a server CA and a client CA. Roles never mix: each leaf comes from its own intermediate.');
  } else {
    say('1.', `Using the existing CA in ${path.relative(process.cwd(), home)}.`);
  }
  const ca = await openAuthority({ home, passphrase });
  const server = await ca.issue({ role: 'server', names: { dns: ['localhost'], ip: ['127.0.0.1'], uri: [] }, days: 1, actor: 'demo' });
  say('2.', `Issued a server certificate for localhost, 127.0.0.1 (serial ${server.serial.slice(0, 12)}..).`);
  const identity = `spiffe://${ca.config.trustDomain}/dev/payments`;
  const client = await ca.issue({ role: 'client', names: { dns: [], ip: [], uri: [identity] }, days: 1, actor: 'demo' });
  say('3.', `Issued a client certificate for ${identity}.`);

  const crls = () => [fs.readFileSync(layout.rootCrl), fs.readFileSync(path.join(layout.caDir, 'client.crl'))].map((d) => toPem(d, 'X509 CRL'));
  const tlsOptions = () => ({
    key: server.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string,
    cert: server.fullchainPem,
    // Only the client CA (and its root) are trusted for callers, with both CRLs.
    ca: [ca.rootPem, ca.client.pem],
    crl: crls(),
    requestCert: true,
    // The handshake completes so the server can answer *why* it refuses (495/496 like nginx).
    rejectUnauthorized: false,
    minVersion: 'TLSv1.3' as const,
  });
  const srv = https.createServer(tlsOptions(), (req, res) => {
    const socket = req.socket as TLSSocket;
    const peer = socket.getPeerCertificate(true);
    if (!peer.raw) {
      res.writeHead(496).end('no client certificate: this server requires one from the client CA\n');
      return;
    }
    if (!socket.authorized) {
      res.writeHead(495).end(`client certificate refused: ${socket.authorizationError}\n`);
      return;
    }
    const info = parseCertificate(peer.raw);
    // OpenSSL checked the chain and the CRLs; the trust boundary is ours to enforce (DESIGN.md):
    // the issuer must be the client CA and the EKU clientAuth.
    if (!info.authorityKeyId?.equals(Buffer.from(ca.client.keyId, 'hex')) || !info.eku.includes(OID.clientAuth)) {
      res.writeHead(495).end('certificate not from the client CA or without clientAuth\n');
      return;
    }
    res.end(`hello ${certificateIdentity(info)}\n`);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  say('4.', `Started an mTLS server on https://localhost:${port} that requires a client certificate.`);
  const creds = { cert: client.fullchainPem, key: client.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string };
  const rootsForServer = ca.rootPem;
  say('5.', `Call with the client certificate:    ${await call(port, rootsForServer, creds)}`);
  say('6.', `Call without a certificate:          ${await call(port, rootsForServer)}`);
  await ca.revoke({ serial: client.serial, reason: 'keyCompromise', actor: 'demo' });
  srv.setSecureContext(tlsOptions());
  say('7.', 'Revoked the client certificate (keyCompromise); the client CA\'s CRL was regenerated and the');
  say('', 'server reloaded it without a restart.');
  say('8.', `Call again with the revoked cert:    ${await call(port, rootsForServer, creds)}`);
  srv.close();
  const trustDomain = ca.config.trustDomain;
  await ca.close();
  if (o.trailer === false) return;
  // Commands that work as printed, in this shell: the passphrase from where the demo took it (a
  // command without a terminal to prompt on would stop at KEY_PASSPHRASE_MISSING), and a name
  // under the CA's own trust domain (an existing CA may not be demo.internal's).
  const rel = path.relative(process.cwd(), home) || home;
  const cli = `npx mutual --home ${rel}${fromEnv ? '' : ` --passphrase-file ${path.relative(process.cwd(), demoPassphraseFile(home))}`}`;
  process.stdout.write([
    '',
    'Try next:',
    `  ${cli} list --all`,
    `  ${cli} issue server api.${trustDomain} --out ./api`,
    `  ${cli} audit verify`,
    fromEnv ? '(the CA passphrase comes from MUTUAL_CA_PASSPHRASE)' : '(the demo keeps its passphrase beside the state folder; a real CA takes it from MUTUAL_CA_PASSPHRASE)',
    '',
  ].join('\n'));
}
