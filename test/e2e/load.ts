/**
 * Request loops for the rollover test: each loop holds one client credential and sends requests
 * back to back, one new connection each, through every relying party in turn, with curl or with
 * Node's TLS client. Every answer other than 200 and every connection error is a failure, kept
 * with its party and message. Steps wait on counts (so many more successes through every party),
 * never on time: a loaded machine answers fewer per second.
 */
import https from 'node:https';
import { runAsync } from '../helpers/tools.ts';
import { EVENT_WAIT_MS, until } from '../agent/harness.ts';
import type { PartyName } from './relying-parties.ts';

/** A client credential on disk: the certificate followed by the chain it sends, and its key. */
export interface ClientCredential {
  name: string;
  fullchainFile: string;
  keyFile: string;
  fullchain: string;
  key: string;
}

/** Where the loops send requests. */
export interface Target {
  party: PartyName;
  port: number;
}

/** One loop's tally. */
export interface LoopTally {
  name: string;
  ok: Record<string, number>;
  failures: string[];
}

/** The loops of a test and their tallies. */
export class Load {
  readonly #targets: Target[];
  readonly #trust: () => { file: string; pem: string };
  readonly #loops: { tally: LoopTally; done: Promise<void>; stop: boolean }[] = [];

  /** `trust` is read at each request: the roots the clients trust for the servers' certificates. */
  constructor(targets: Target[], trust: () => { file: string; pem: string }) {
    this.#targets = targets;
    this.#trust = trust;
  }

  /** Starts a loop with `cred`, by curl or by Node. */
  start(cred: ClientCredential, via: 'curl' | 'node'): LoopTally {
    const tally: LoopTally = { name: `${via}:${cred.name}`, ok: {}, failures: [] };
    const loop = { tally, stop: false, done: Promise.resolve() };
    loop.done = (async () => {
      for (let i = 0; !loop.stop; i++) {
        const t = this.#targets[i % this.#targets.length];
        const r = via === 'curl' ? await this.#curl(cred, t) : await this.#node(cred, t);
        if (r === 200) tally.ok[t.party] = (tally.ok[t.party] ?? 0) + 1;
        else tally.failures.push(`${t.party}: ${r}`);
      }
    })();
    this.#loops.push(loop);
    return tally;
  }

  /** The tallies of every loop started. */
  get tallies(): LoopTally[] {
    return this.#loops.map((l) => l.tally);
  }

  /** Every failure so far, named by loop. */
  failures(): string[] {
    return this.#loops.flatMap((l) => l.tally.failures.map((f) => `${l.tally.name} -> ${f}`));
  }

  /** Waits until every running loop got `n` more successes through every party (or one failed). */
  async more(n: number, what: string): Promise<void> {
    const running = this.#loops.filter((l) => !l.stop);
    const targets = running.map((l) => Object.fromEntries(this.#targets.map((t) => [t.party, (l.tally.ok[t.party] ?? 0) + n])));
    await until(() => this.failures().length > 0 || running.every((l, i) => this.#targets.every((t) => (l.tally.ok[t.party] ?? 0) >= targets[i][t.party])), EVENT_WAIT_MS, `${n} more requests through every party (${what})`);
  }

  /** Stops the loops using `cred` (by name), or every loop. */
  async stop(name?: string): Promise<void> {
    const which = this.#loops.filter((l) => !l.stop && (name === undefined || l.tally.name.endsWith(`:${name}`)));
    for (const l of which) l.stop = true;
    await Promise.all(which.map((l) => l.done));
  }

  async #curl(cred: ClientCredential, t: Target): Promise<number | string> {
    // --max-time only guards against a hang: on a loaded machine a handshake can take seconds.
    const r = await runAsync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '60', '--cacert', this.#trust().file, '--cert', cred.fullchainFile, '--key', cred.keyFile,
      '--resolve', `localhost:${t.port}:127.0.0.1`, `https://localhost:${t.port}/`]);
    const code = Number(r.stdout.trim());
    return code === 200 ? 200 : `${r.stdout.trim()} ${r.stderr.trim()}`;
  }

  #node(cred: ClientCredential, t: Target): Promise<number | string> {
    return new Promise((resolve) => {
      const req = https.request({ host: '127.0.0.1', port: t.port, path: '/', servername: 'localhost', ca: this.#trust().pem, cert: cred.fullchain, key: cred.key, agent: false, timeout: 60_000 }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve(res.statusCode === 200 ? 200 : `${res.statusCode} ${Buffer.concat(parts).toString('utf8').slice(0, 300)}`));
        res.on('error', (e) => resolve(e.message));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => resolve(e.message));
      req.end();
    });
  }
}

/** One request with `cred` through `t` by curl: the HTTP status, or 0 when the TLS handshake failed. */
export async function curlOnce(cred: ClientCredential, t: Target, trustFile: string): Promise<number> {
  const r = await runAsync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '60', '--cacert', trustFile, '--cert', cred.fullchainFile, '--key', cred.keyFile,
    '--resolve', `localhost:${t.port}:127.0.0.1`, `https://localhost:${t.port}/`]);
  return Number(r.stdout.trim()) || 0;
}

/** Waits (bounded, on events) until `cred` is refused by `t`: a TLS alert or a 4xx answer. */
export async function untilRefused(cred: ClientCredential, t: Target, trustFile: string, what: string): Promise<number> {
  let last = 0;
  await until(async () => {
    last = await curlOnce(cred, t, trustFile);
    return last === 0 || (last >= 400 && last < 500);
  }, EVENT_WAIT_MS, what);
  return last;
}
