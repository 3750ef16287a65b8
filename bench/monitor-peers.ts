/**
 * Child of bench/monitor.ts: many TLS endpoints on loopback for the probe benchmark. Makes a CA in
 * a temp folder, one server certificate (localhost, sent with its intermediate), and N TLS servers,
 * each on its own port. Prints one JSON line with the ports and the
 * root (PEM), then serves until stdin closes.
 *
 *   node bench/monitor-peers.ts N
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { initCa } from '../src/ca/init-ca.ts';
import { openAuthority } from '../src/ca/open-authority.ts';

const n = Number(process.argv[2] ?? 1000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-bench-peers-'));
const passphrase = 'bench-passphrase-0123456789';
const home = path.join(dir, 'home');
await initCa({ home, offlineDir: path.join(dir, 'offline'), trustDomain: 'acme.internal', name: 'Bench', passphrase });
const ca = await openAuthority({ home, passphrase });
const issued = await ca.issue({ role: 'server', names: { dns: ['localhost'], ip: [], uri: [] } });
await ca.close();
const cert = issued.fullchainPem;
const key = issued.privateKey!.export({ type: 'pkcs8', format: 'pem' }) as string;
const servers: tls.Server[] = [];
for (let i = 0; i < n; i++) {
  // Like a service waiting for a request: the probe's verdict comes from the session ticket.
  const s = tls.createServer({ cert, key }, (sock) => sock.on('error', () => {}));
  s.on('tlsClientError', () => {});
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
}
process.stdout.write(JSON.stringify({ ports: servers.map((s) => (s.address() as AddressInfo).port), root: ca.rootPem }) + '\n');
process.stdin.resume();
process.stdin.on('end', () => {
  for (const s of servers) s.close();
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(0);
});
