/**
 * Runs one mutual gateway for bench/gateway.ts in its own process (so its CPU can be read from
 * /proc/PID/stat): `node bench/gateway-server.ts gateway.yaml`. Prints `ready <port>`; stops on SIGTERM.
 */
import { pino } from 'pino';
import { startGateway } from '../src/gateway/index.ts';

const gw = await startGateway({ configFile: process.argv[2], watch: false, logger: pino({ level: 'warn' }), accessLogger: false });
process.stdout.write(`ready ${gw.port}\n`);
process.on('SIGTERM', () => void gw.close().then(() => process.exit(0)));
