/**
 * The challenge answers of agent.yaml's `acme.challenge`, as the SDK's ACME client asks for them:
 * http-01 from a responder the agent listens with for the duration of an order, or from a file in a
 * web server's webroot; dns-01 through the operator's hook command.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { MutualError } from '../core/errors.ts';
import type { AcmeChallenge, AcmeChallengeSolver } from '../sdk/index.ts';
import { MAX_COMMAND_OUTPUT } from './hooks.ts';
import type { AcmeChallengeSpec } from './manifest.ts';

/** Time the dns-01 hook may take for one `set` or `clear`. */
export const DNS_HOOK_TIMEOUT_MS = 120_000;
/** The http-01 path (RFC 8555 8.3); tokens are base64url. */
const CHALLENGE_PATH = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/;

/** The solver for a certificate's challenge settings. */
export function challengeSolver(spec: AcmeChallengeSpec): AcmeChallengeSolver {
  if (spec.type === 'dns-01') return dnsHookSolver(spec.hook);
  if ('webroot' in spec) return webrootSolver(spec.webroot);
  return responderSolver(spec.listen.host, spec.listen.port);
}

/** http-01 from a node:http server on host:port, listening from the first challenge to the last cleanup. */
function responderSolver(host: string, port: number): AcmeChallengeSolver {
  const answers = new Map<string, string>();
  let server: http.Server | undefined;
  return {
    type: 'http-01',
    async present(c: AcmeChallenge) {
      answers.set(c.token, c.keyAuthorization);
      if (server) return;
      const s = http.createServer((req, res) => {
        const token = CHALLENGE_PATH.exec(req.url ?? '')?.[1];
        const body = token ? answers.get(token) : undefined;
        res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/octet-stream' }).end(body ?? 'not found');
      });
      await new Promise<void>((resolve, reject) => {
        s.once('error', (e) => reject(new MutualError('ACME_CLIENT_FAILED', { detail: `cannot listen on ${host}:${port} for http-01 (${e.message}); free the port or use acme.challenge.webroot` })));
        s.listen(port, host, () => resolve());
      });
      server = s;
    },
    async cleanup(c: AcmeChallenge) {
      answers.delete(c.token);
      if (answers.size || !server) return;
      const s = server;
      server = undefined;
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
}

/** http-01 from `<webroot>/.well-known/acme-challenge/<token>`, served by the host's web server. */
function webrootSolver(webroot: string): AcmeChallengeSolver {
  const fileOf = (c: AcmeChallenge) => path.join(webroot, '.well-known', 'acme-challenge', c.token);
  return {
    type: 'http-01',
    async present(c) {
      try {
        fs.mkdirSync(path.dirname(fileOf(c)), { recursive: true, mode: 0o755 });
        fs.writeFileSync(fileOf(c), c.keyAuthorization, { mode: 0o644 });
      } catch (e) {
        throw new MutualError('AGENT_WRITE_FAILED', { detail: `http-01 webroot ${webroot}: ${(e as Error).message}` });
      }
    },
    async cleanup(c) {
      fs.rmSync(fileOf(c), { force: true });
    },
  };
}

/**
 * dns-01 through `<hook> set` and `<hook> clear`, with MUTUAL_ACME_NAME (`_acme-challenge.<domain>`),
 * MUTUAL_ACME_VALUE (the TXT value) and MUTUAL_ACME_DOMAIN in the environment. `set` returns once
 * the record is published where the CA looks.
 */
function dnsHookSolver(hook: string): AcmeChallengeSolver {
  const run = (verb: 'set' | 'clear', c: AcmeChallenge) => new Promise<void>((resolve, reject) => {
    const env = { ...process.env, MUTUAL_ACME_NAME: c.dnsName, MUTUAL_ACME_VALUE: c.dnsValue, MUTUAL_ACME_DOMAIN: c.identifier };
    execFile(hook, [verb], { env, timeout: DNS_HOOK_TIMEOUT_MS, maxBuffer: MAX_COMMAND_OUTPUT * 4 }, (e, stdout, stderr) => {
      if (!e) return resolve();
      const out = `${stdout}${stderr}`.slice(-MAX_COMMAND_OUTPUT).trim();
      reject(new MutualError('ACME_CLIENT_FAILED', { detail: `dns-01 hook \`${hook} ${verb}\` for ${c.dnsName} failed (${e.message.split('\n')[0]})${out ? `: ${out}` : ''}` }));
    });
  });
  return { type: 'dns-01', present: (c) => run('set', c), cleanup: (c) => run('clear', c) };
}
