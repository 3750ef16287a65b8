/**
 * What runs around a deployment: the check command, the reload (a command, or a signal to the pid
 * in a pid file), and the verify step (connect and read the serial the service presents).
 */
import fs from 'node:fs';
import tls from 'node:tls';
import { spawn } from 'node:child_process';
import { MutualError, isMutualError } from '../core/errors.ts';
import type { CommandSpec, ReloadSpec, VerifySpec } from './manifest.ts';

/** Output of a failed command kept for the error message (its tail). */
export const MAX_COMMAND_OUTPUT = 4096;
/** Largest pid file read. */
export const MAX_PID_FILE_BYTES = 64;
/** Pause between connection attempts of the verify step. */
export const VERIFY_RETRY_MS = 200;
/** Time allowed for one TLS handshake of the verify step. */
export const VERIFY_HANDSHAKE_MS = 5000;
/**
 * Handshakes in a row that must present the new serial. Right after a reload the old workers
 * may still accept for a moment (nginx starts the new ones before it stops the old), so one
 * lucky handshake is not proof.
 */
export const VERIFY_CONSECUTIVE = 3;

/** A printable form of a command, for logs and messages. */
export function describeCommand(c: CommandSpec | ReloadSpec): string {
  if ('shell' in c) return c.shell;
  if ('argv' in c) return c.argv.join(' ');
  return `kill -${c.signal.replace(/^SIG/, '')} $(cat ${c.pidFile})`;
}

/** Runs a command; resolves on exit 0, else rejects with `code` and the tail of its output. */
export function runCommand(c: CommandSpec, timeoutMs: number, code: 'AGENT_CHECK_FAILED' | 'AGENT_RELOAD_FAILED'): Promise<void> {
  const [file, args] = 'shell' in c ? ['/bin/sh', ['-c', c.shell]] : [c.argv[0], c.argv.slice(1)];
  return new Promise((resolve, reject) => {
    let out = '';
    const keep = (b: Buffer) => {
      out = (out + b.toString('utf8')).slice(-MAX_COMMAND_OUTPUT);
    };
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (e) => reject(new MutualError(code, { detail: `${describeCommand(c)}: ${e.message}` })));
    child.on('close', (status, signal) => {
      if (status === 0) return resolve();
      const how = signal ? `killed by ${signal}${signal === 'SIGKILL' ? ` (over ${timeoutMs} ms?)` : ''}` : `exit ${status}`;
      reject(new MutualError(code, { detail: `${describeCommand(c)}: ${how}${out.trim() ? `: ${out.trim().split('\n').slice(-5).join(' | ')}` : ''}` }));
    });
  });
}

/** Reloads a service: runs the command, or sends the signal to the pid in the pid file. */
export async function reloadService(r: ReloadSpec, timeoutMs: number): Promise<void> {
  if ('signal' in r) {
    let text: string;
    try {
      text = fs.readFileSync(r.pidFile, 'utf8').slice(0, MAX_PID_FILE_BYTES).trim();
    } catch (e) {
      throw new MutualError('AGENT_RELOAD_FAILED', { detail: `pid file ${r.pidFile}: ${(e as Error).message}` });
    }
    const pid = Number(text);
    if (!/^\d+$/.test(text) || pid <= 1) throw new MutualError('AGENT_RELOAD_FAILED', { detail: `pid file ${r.pidFile}: ${JSON.stringify(text.slice(0, 20))} is not a pid` });
    try {
      process.kill(pid, r.signal);
    } catch (e) {
      throw new MutualError('AGENT_RELOAD_FAILED', { detail: `${r.signal} to pid ${pid} (${r.pidFile}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
    }
    return;
  }
  await runCommand(r, timeoutMs, 'AGENT_RELOAD_FAILED');
}

/** Normalizes a hex serial for comparison (lowercase, no leading zeros or colons). */
export function normalizeSerial(s: string): string {
  return s.replace(/:/g, '').toLowerCase().replace(/^0+(?=.)/, '');
}

/** Reads the serial of the certificate a TLS service presents (no trust decision: only the serial is compared). Rejects with AGENT_VERIFY_FAILED or a socket error. */
export function servedSerial(v: { host: string; port: number; serverName?: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: v.host, port: v.port, servername: v.serverName, rejectUnauthorized: false, timeout: VERIFY_HANDSHAKE_MS });
    socket.once('secureConnect', () => {
      const serial = socket.getPeerCertificate()?.serialNumber;
      socket.destroy();
      if (serial) resolve(normalizeSerial(serial));
      else reject(new MutualError('AGENT_VERIFY_FAILED', { detail: 'no certificate presented' }));
    });
    socket.once('timeout', () => socket.destroy(new MutualError('AGENT_VERIFY_FAILED', { detail: `the TLS handshake did not finish within ${VERIFY_HANDSHAKE_MS} ms` })));
    socket.once('error', reject);
  });
}

/**
 * Waits until the service presents `serial` (a reload is asynchronous: old workers finish while
 * new ones start). Rejects with AGENT_VERIFY_FAILED after `timeoutMs`.
 */
export async function verifyServed(v: VerifySpec, serial: string, sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms))): Promise<void> {
  const want = normalizeSerial(serial);
  const deadline = Date.now() + v.timeoutMs;
  let last = 'nothing yet';
  let inRow = 0;
  for (;;) {
    try {
      const got = await servedSerial(v);
      if (got === want) {
        if (++inRow >= VERIFY_CONSECUTIVE) return;
        continue;
      }
      last = `serves ${got}`;
    } catch (e) {
      last = isMutualError(e) ? e.fields.detail ?? e.message : (e as Error).message;
    }
    inRow = 0;
    if (Date.now() >= deadline) throw new MutualError('AGENT_VERIFY_FAILED', { detail: `${v.host}:${v.port} did not present ${want} within ${v.timeoutMs} ms (last: ${last})` });
    await sleep(VERIFY_RETRY_MS);
  }
}
