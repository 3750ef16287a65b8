/**
 * The CA server of bench/agent-fleet.ts, in its own process so its CPU can be read from
 * /proc/<pid>/stat. Usage: agent-fleet-server.ts <home>  (passphrase in MUTUAL_CA_PASSPHRASE).
 * Prints one JSON line {url} when listening; stops on SIGTERM.
 */
import { pino } from 'pino';
import { startCaServer } from '../src/server/ca-server.ts';
import { openAuthority } from '../src/ca/open-authority.ts';

const home = process.argv[2];
const passphrase = process.env.MUTUAL_CA_PASSPHRASE ?? '';
const ca = await openAuthority({ home, passphrase });
// One client address stands for the whole fleet here: the per-address rate limit is off.
const srv = await startCaServer({ ca, passphrase, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), rateLimit: false });
process.stdout.write(JSON.stringify({ url: srv.url }) + '\n');
process.on('SIGTERM', async () => {
  await srv.close();
  await ca.close();
  process.exit(0);
});
