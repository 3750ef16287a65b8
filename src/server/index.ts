/** `mutual serve`: the CA's HTTPS transport. Exports by name only. */
export { startCaServer, type CaServerOptions, type CaServer } from './ca-server.ts';
