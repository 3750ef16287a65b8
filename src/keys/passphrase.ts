/**
 * Where CA passphrases come from: a file, the environment, or a prompt on the terminal, never the
 * config or the repository (DESIGN.md, Trust model / Secrets).
 */
import fs from 'node:fs';
import tty from 'node:tty';
import { StringDecoder } from 'node:string_decoder';
import { MutualError } from '../core/errors.ts';
import { MIN_PASSPHRASE_LENGTH } from './encrypted-key-file.ts';

/** The environment variable {@link resolvePassphrase} reads. */
export const PASSPHRASE_ENV = 'MUTUAL_CA_PASSPHRASE';

/** Largest passphrase or PIN file read; a bigger one is the wrong file (a key, a log), not a passphrase. */
const MAX_PASSPHRASE_FILE_BYTES = 4096;

/** Prompts (or prompt-and-repeat rounds) before giving up on an empty, short or mistyped entry. */
const MAX_PROMPT_ATTEMPTS = 3;

/** Options of {@link resolvePassphrase}. */
export interface ResolvePassphraseOptions {
  /**
   * A file holding the passphrase (`--passphrase-file`). It must be a regular file with no
   * group/other permission bits (0600 or 0400); one trailing newline is removed. When given, it is
   * the only source tried. Default: none.
   */
  passphraseFile?: string;
  /** Where `MUTUAL_CA_PASSPHRASE` is looked up. Default: `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Whether to prompt on the terminal when neither file nor variable gives a passphrase. Default: true. */
  prompt?: boolean;
  /**
   * Ask twice and require both entries to match, and at least {@link MIN_PASSPHRASE_LENGTH}
   * characters: for a passphrase that will encrypt a new key. Only affects the prompt. Default: false.
   */
  confirm?: boolean;
  /** What the passphrase unlocks, shown in the prompt, e.g. "the root CA key". */
  purpose: string;
}

/**
 * Finds the CA passphrase, trying in order: `passphraseFile`, the `MUTUAL_CA_PASSPHRASE`
 * variable (an empty value counts as unset), then a prompt without echo on the controlling
 * terminal (`/dev/tty`, so it works while stdin is a pipe) or, failing that, on stdin if it is a
 * terminal. The prompt goes to the terminal (or stderr), never stdout.
 *
 * At the prompt, Backspace deletes a character, Ctrl-U the whole entry, and Ctrl-C (or Ctrl-D on
 * an empty entry) cancels: the promise rejects with `KEY_PASSPHRASE_MISSING` and field
 * `cancelled: true`, and the terminal is restored.
 *
 * @throws MutualError `KEY_PASSPHRASE_MISSING` when there is no source, the file does not exist or
 *   is empty, or the prompt was cancelled or failed {@link MAX_PROMPT_ATTEMPTS} times;
 *   `KEY_FILE_INSECURE` when the passphrase file is accessible to group or others;
 *   `INPUT_TOO_LARGE` when it is over 4 KiB.
 */
export async function resolvePassphrase(options: ResolvePassphraseOptions): Promise<string> {
  const { passphraseFile, env = process.env, prompt = true, confirm = false, purpose } = options;
  // An explicit file that fails must not fall back to other sources: that would hide the mistake.
  if (passphraseFile !== undefined) return readSecretText(passphraseFile, 'passphrase file', 'KEY_PASSPHRASE_MISSING');
  const fromEnv = env[PASSPHRASE_ENV];
  if (fromEnv) return fromEnv;
  const terminal = prompt ? openTerminal() : undefined;
  if (terminal) return promptPassphrase(terminal, purpose, confirm);
  throw new MutualError('KEY_PASSPHRASE_MISSING', {
    detail: `for ${purpose}: no passphrase file, ${PASSPHRASE_ENV} is not set, and ${prompt ? 'there is no terminal to prompt on' : 'prompting is off'}`,
  });
}

/**
 * Reads a small secret from a file (a CA passphrase, a token PIN): a regular file with no
 * group/other permission bits, at most 4 KiB, one trailing newline removed, not empty.
 * @throws MutualError `missing` when the file does not exist, is not a regular file or is empty;
 *   `KEY_FILE_INSECURE` for group/other bits; `INPUT_TOO_LARGE` over 4 KiB.
 */
export function readSecretText(file: string, what: string, missing: 'KEY_PASSPHRASE_MISSING' | 'HSM_PIN_MISSING'): string {
  let fd: number;
  try {
    // O_NONBLOCK so a FIFO fails the regular-file check instead of hanging open().
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new MutualError(missing, { detail: `${what} ${file} does not exist`, path: file });
    }
    throw e;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new MutualError(missing, { detail: `${what} ${file} is not a regular file`, path: file });
    if (st.mode & 0o077) {
      const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
      throw new MutualError('KEY_FILE_INSECURE', { detail: `${what} ${file} has mode 0${mode}; it must be 0600 or 0400`, path: file });
    }
    if (st.size > MAX_PASSPHRASE_FILE_BYTES) {
      throw new MutualError('INPUT_TOO_LARGE', { detail: `${what} ${file} has ${st.size} bytes; the limit is ${MAX_PASSPHRASE_FILE_BYTES}`, path: file });
    }
    // `echo secret > file` adds a newline that is not part of the secret.
    const secret = fs.readFileSync(fd, 'utf8').replace(/\r?\n$/, '');
    if (secret === '') throw new MutualError(missing, { detail: `${what} ${file} is empty`, path: file });
    return secret;
  } finally {
    fs.closeSync(fd);
  }
}

/** A terminal to prompt on: raw-mode input, prompt output, and how to let go of both. */
interface Terminal {
  input: tty.ReadStream;
  write(text: string): void;
  close(): void;
}

function openTerminal(): Terminal | undefined {
  let fd: number | undefined;
  try {
    fd = fs.openSync('/dev/tty', 'r+');
  } catch {
    // No controlling terminal (daemon, CI, setsid) or no /dev/tty (Windows): try stdin.
  }
  if (fd !== undefined) {
    const ttyFd = fd;
    if (tty.isatty(ttyFd)) {
      const input = new tty.ReadStream(ttyFd);
      return {
        input,
        write: (text) => void fs.writeSync(ttyFd, text),
        close: () => {
          input.destroy();
          // libuv reopens a terminal for its own handle (dup2-ing the new one over ours), so
          // destroying the stream leaves `ttyFd` open and ours to close. Where it cannot reopen, it
          // closed `ttyFd` itself; EBADF then only confirms that.
          try {
            fs.closeSync(ttyFd);
          } catch {
            // Already closed.
          }
        },
      };
    }
    fs.closeSync(ttyFd);
  }
  if (process.stdin.isTTY) {
    return { input: process.stdin, write: (text) => void process.stderr.write(text), close: () => void process.stdin.pause() };
  }
  return undefined;
}

async function promptPassphrase(terminal: Terminal, purpose: string, confirm: boolean): Promise<string> {
  let lines: ReturnType<typeof hiddenLines> | undefined;
  try {
    lines = hiddenLines(terminal.input);
    const reader = lines;
    const ask = async (question: string): Promise<string> => {
      terminal.write(question);
      try {
        return await reader.next();
      } finally {
        // Enter is not echoed either; move off the prompt line.
        terminal.write('\n');
      }
    };
    for (let attempt = 1; attempt <= MAX_PROMPT_ATTEMPTS; attempt++) {
      const first = await ask(`Passphrase for ${purpose}: `);
      if (first === '') {
        terminal.write('A passphrase is needed.\n');
        continue;
      }
      if (!confirm) return first;
      // Checked here too, so nobody types a new passphrase twice only to have the key write refuse it.
      if ([...first].length < MIN_PASSPHRASE_LENGTH) {
        terminal.write(`Use at least ${MIN_PASSPHRASE_LENGTH} characters.\n`);
        continue;
      }
      if ((await ask(`Repeat the passphrase for ${purpose}: `)) === first) return first;
      terminal.write('The two entries differ.\n');
    }
    throw new MutualError('KEY_PASSPHRASE_MISSING', { detail: `for ${purpose}: no usable passphrase after ${MAX_PROMPT_ATTEMPTS} attempts` });
  } finally {
    lines?.close();
    terminal.close();
  }
}

/**
 * Reads lines from a terminal in raw mode, so nothing is echoed; raw mode also turns Ctrl-C into
 * a byte instead of SIGINT, so it is handled here. Raw mode stays on from the first prompt to the
 * last, so keys typed between two prompts are not echoed either, and input that runs ahead of a
 * prompt is kept for it.
 */
function hiddenLines(input: tty.ReadStream): { next(): Promise<string>; close(): void } {
  const decoder = new StringDecoder('utf8');
  const ready: Array<string | MutualError> = [];
  let current: string[] = [];
  let ended = false;
  let waiting: { resolve(line: string): void; reject(e: Error): void } | undefined;

  const deliver = (): void => {
    if (!waiting || ready.length === 0) return;
    const item = ready.shift();
    const w = waiting;
    waiting = undefined;
    if (typeof item === 'string') w.resolve(item);
    else w.reject(item as MutualError);
  };
  const end = (why: string): void => {
    if (ended) return;
    ended = true;
    ready.push(new MutualError('KEY_PASSPHRASE_MISSING', { detail: why, cancelled: true }));
  };
  // Where we are in a terminal escape sequence (arrow and function keys, Alt+key, paste
  // brackets): ESC, then CSI (ESC [ parameters final-byte) or SS3 (ESC O key). None of it is
  // passphrase text; the state carries over chunks, since a sequence may be split.
  let escape: 'none' | 'esc' | 'csi' | 'ss3' = 'none';
  let previous = '';
  const onData = (chunk: Buffer | string): void => {
    // Iterating a string goes by code point, so Backspace removes a whole character.
    for (const ch of typeof chunk === 'string' ? chunk : decoder.write(chunk)) {
      if (ended) break;
      const crlf = previous === '\r' && ch === '\n';
      previous = ch;
      // Enter sends CR in raw mode, but a pasted line may end in CRLF: that is one Enter, not two.
      if (crlf) continue;
      if (escape === 'esc') escape = ch === '[' ? 'csi' : ch === 'O' ? 'ss3' : 'none';
      else if (escape === 'csi') escape = ch >= '@' && ch <= '~' ? 'none' : 'csi';
      else if (escape === 'ss3') escape = 'none';
      else if (ch === '\x1b') escape = 'esc';
      else if (ch === '\r' || ch === '\n') {
        ready.push(current.join(''));
        current = [];
      } else if (ch === '\x03') end('the prompt was cancelled (Ctrl-C)');
      else if (ch === '\x04') {
        if (current.length === 0) end('end of input at the prompt (Ctrl-D)');
      } else if (ch === '\x7f' || ch === '\b') current.pop();
      else if (ch === '\x15') current = [];
      else if (ch >= ' ') current.push(ch);
    }
    deliver();
  };
  const onEnd = (): void => {
    end('the terminal closed');
    deliver();
  };

  input.setRawMode(true);
  input.on('data', onData);
  input.on('end', onEnd);
  input.on('error', onEnd);
  input.resume();
  return {
    next: () =>
      new Promise<string>((resolve, reject) => {
        waiting = { resolve, reject };
        deliver();
      }),
    close: () => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onEnd);
      input.setRawMode(false);
      input.pause();
    },
  };
}
