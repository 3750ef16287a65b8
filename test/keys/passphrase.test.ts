import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { resolvePassphrase, PASSPHRASE_ENV } from '../../src/keys/index.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mutual-passphrase-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let counter = 0;
/** Writes a passphrase file in the temporary folder and returns its path. */
function passphraseFile(content: string | Buffer, mode = 0o600): string {
  const file = path.join(root, `pass-${++counter}`);
  fs.writeFileSync(file, content, { mode });
  fs.chmodSync(file, mode);
  return file;
}

const rejectsWith = (p: Promise<unknown>, code: ErrorCode) =>
  assert.rejects(p, (e: unknown) => {
    assert.ok(isMutualError(e), `expected MutualError ${code}, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });

const purpose = 'the test CA';

test('ok/from a file', async (t) => {
  const cases = [
    { name: 'ok/trailing newline removed', content: 'file passphrase\n', want: 'file passphrase' },
    { name: 'ok/trailing CRLF removed', content: 'file passphrase\r\n', want: 'file passphrase' },
    { name: 'ok/no trailing newline', content: 'file passphrase', want: 'file passphrase' },
    { name: 'ok/only one newline removed', content: 'file passphrase\n\n', want: 'file passphrase\n' },
    { name: 'ok/spaces kept', content: ' file passphrase \n', want: ' file passphrase ' },
    { name: 'ok/UTF-8', content: 'pässwörd 🔑\n', want: 'pässwörd 🔑' },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      assert.equal(await resolvePassphrase({ passphraseFile: passphraseFile(c.content), env: {}, prompt: false, purpose }), c.want);
    });
  }
  await t.test('ok/mode 0400', async () => {
    assert.equal(await resolvePassphrase({ passphraseFile: passphraseFile('read only\n', 0o400), env: {}, prompt: false, purpose }), 'read only');
  });
  await t.test('ok/the file wins over the environment', async () => {
    const env = { [PASSPHRASE_ENV]: 'from the environment' };
    assert.equal(await resolvePassphrase({ passphraseFile: passphraseFile('from the file\n'), env, prompt: false, purpose }), 'from the file');
  });
});

test('ok/from the environment', async () => {
  assert.equal(await resolvePassphrase({ env: { [PASSPHRASE_ENV]: 'from the environment' }, prompt: false, purpose }), 'from the environment');
});

test('fail/passphrase file', async (t) => {
  for (const mode of [0o644, 0o640, 0o604, 0o660, 0o606, 0o620]) {
    await t.test(`fail/mode 0${mode.toString(8)}`, () =>
      rejectsWith(resolvePassphrase({ passphraseFile: passphraseFile('secret passphrase\n', mode), env: {}, prompt: false, purpose }), 'KEY_FILE_INSECURE'),
    );
  }
  await t.test('fail/missing, and no fallback to the environment', () =>
    rejectsWith(
      resolvePassphrase({ passphraseFile: path.join(root, 'no-such-file'), env: { [PASSPHRASE_ENV]: 'from the environment' }, prompt: false, purpose }),
      'KEY_PASSPHRASE_MISSING',
    ),
  );
  await t.test('fail/empty', () => rejectsWith(resolvePassphrase({ passphraseFile: passphraseFile('\n'), env: {}, prompt: false, purpose }), 'KEY_PASSPHRASE_MISSING'));
  await t.test('fail/a folder', () => rejectsWith(resolvePassphrase({ passphraseFile: root, env: {}, prompt: false, purpose }), 'KEY_PASSPHRASE_MISSING'));
  await t.test('fail/too large', () =>
    rejectsWith(resolvePassphrase({ passphraseFile: passphraseFile(Buffer.alloc(8192, 0x61)), env: {}, prompt: false, purpose }), 'INPUT_TOO_LARGE'),
  );
});

test('fail/no source', async (t) => {
  await t.test('fail/nothing, prompt off', () => rejectsWith(resolvePassphrase({ env: {}, prompt: false, purpose }), 'KEY_PASSPHRASE_MISSING'));
  await t.test('fail/empty variable counts as unset', () =>
    rejectsWith(resolvePassphrase({ env: { [PASSPHRASE_ENV]: '' }, prompt: false, purpose }), 'KEY_PASSPHRASE_MISSING'),
  );
});

// --- The prompt, in subprocesses ------------------------------------------------------------

/** A script the subprocesses run: resolves a passphrase and prints the outcome on one line. */
const child = path.join(root, 'child.mjs');
fs.writeFileSync(
  child,
  `import { resolvePassphrase } from ${JSON.stringify(pathToFileURL(path.resolve('src/keys/passphrase.ts')).href)};
try {
  const p = await resolvePassphrase({ env: {}, purpose: ${JSON.stringify(purpose)}, confirm: process.argv[2] === 'confirm' });
  // Hex, so the typed passphrase itself never shows in the output unless it was echoed.
  console.log('RESULT ' + JSON.stringify({ hex: Buffer.from(p).toString('hex') }));
} catch (e) {
  console.log('RESULT ' + JSON.stringify({ code: e.code, cancelled: e.fields?.cancelled === true }));
}
`,
);

interface ChildResult {
  hex?: string;
  code?: string;
  cancelled?: boolean;
}

const parseResult = (output: string): ChildResult => {
  const m = /RESULT (\{.*\})/.exec(output);
  assert.ok(m, `no RESULT line in ${JSON.stringify(output)}`);
  return JSON.parse(m[1]) as ChildResult;
};

const hex = (s: string): string => Buffer.from(s).toString('hex');

test('fail/no terminal: KEY_PASSPHRASE_MISSING even with prompting on', async (t) => {
  for (const stdin of ['ignore', 'pipe'] as const) {
    await t.test(`fail/stdin ${stdin}`, async () => {
      // detached: a new session, so /dev/tty cannot be opened even when the tests run in a terminal.
      const proc = spawn(process.execPath, [child], { detached: true, stdio: [stdin, 'pipe', 'inherit'], timeout: 20_000 });
      let out = '';
      proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const status = await new Promise((resolve) => proc.on('close', resolve));
      assert.equal(status, 0);
      assert.deepEqual(parseResult(out), { code: 'KEY_PASSPHRASE_MISSING', cancelled: false });
    });
  }
});

/**
 * One step of a prompt session: wait until `prompt` has appeared `times` times on the terminal,
 * then type `keys`.
 */
interface Step {
  prompt: string;
  times: number;
  keys: string;
}

const FIRST = 'Passphrase for the test CA: ';
const REPEAT = 'Repeat the passphrase for the test CA: ';
const GOOD = 'correct horse battery';

/**
 * Runs the child on a pseudo-terminal made by util-linux `script`, plays `steps`, and returns the
 * child's result and everything it showed on the terminal.
 */
async function promptSession(mode: 'plain' | 'confirm', steps: Step[], setsid = false): Promise<{ result: ChildResult; screen: string }> {
  const env = { ...process.env };
  delete env[PASSPHRASE_ENV];
  // With setsid the child has no controlling terminal, so /dev/tty fails and stdin (still the
  // pseudo-terminal) is used instead.
  const argv = [...(setsid ? ['setsid', '-w'] : []), process.execPath, child, mode];
  const command = argv.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ');
  const proc = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'], env, timeout: 20_000 });
  let screen = '';
  let onOutput = (): void => {};
  proc.stdout.on('data', (d: Buffer) => {
    screen += d.toString();
    onOutput();
  });
  const closed = new Promise<number | null>((resolve) => proc.on('close', resolve));
  const count = (s: string): number => screen.split(s).length - 1;
  for (const step of steps) {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${JSON.stringify(step.prompt)} x${step.times}; screen: ${JSON.stringify(screen)}`)), 10_000);
      onOutput = () => {
        if (count(step.prompt) >= step.times) {
          clearTimeout(timer);
          resolve();
        }
      };
      onOutput();
    });
    proc.stdin.write(step.keys);
  }
  const status = await closed;
  proc.stdin.end();
  assert.equal(status, 0, screen);
  return { result: parseResult(screen), screen };
}

const scriptIsUtilLinux = /util-linux/.test(spawnSync('script', ['--version'], { encoding: 'utf8' }).stdout ?? '');

test('prompt on a terminal', { skip: scriptIsUtilLinux ? false : 'needs util-linux `script` to make a pseudo-terminal' }, async (t) => {
  const cases: Array<{ name: string; mode: 'plain' | 'confirm'; steps: Step[]; want: ChildResult; typed: string[]; setsid?: boolean }> = [
    { name: 'ok/typed', mode: 'plain', steps: [{ prompt: FIRST, times: 1, keys: `${GOOD}\r` }], want: { hex: hex(GOOD) }, typed: [GOOD] },
    {
      name: 'ok/no controlling terminal: prompts on stdin',
      mode: 'confirm',
      steps: [
        { prompt: FIRST, times: 1, keys: `${GOOD}\r` },
        { prompt: REPEAT, times: 1, keys: `${GOOD}\r` },
      ],
      want: { hex: hex(GOOD) },
      typed: [GOOD],
      setsid: true,
    },
    {
      name: 'ok/Backspace and Ctrl-U edit the entry',
      mode: 'plain',
      steps: [{ prompt: FIRST, times: 1, keys: `junk\x15correct horsx\x7fe battery\r` }],
      want: { hex: hex(GOOD) },
      typed: ['correct hors'],
    },
    {
      name: 'ok/Backspace removes a whole multi-byte character',
      mode: 'plain',
      steps: [{ prompt: FIRST, times: 1, keys: 'pässwörd 🔑\x7f!\r' }],
      want: { hex: hex('pässwörd !') },
      typed: ['pässwörd'],
    },
    {
      name: 'ok/escape sequences (arrows, F1, Alt+key, paste brackets) ignored',
      mode: 'plain',
      steps: [{ prompt: FIRST, times: 1, keys: `\x1b[200~correct\x1b[201~ \x1b[Dhorse\x1bOP \x1b[1;5Cbattery\x1bx\r` }],
      want: { hex: hex(GOOD) },
      typed: ['correct', 'horse', 'battery'],
    },
    { name: 'ok/empty entry asks again', mode: 'plain', steps: [{ prompt: FIRST, times: 1, keys: '\r' }, { prompt: FIRST, times: 2, keys: `${GOOD}\r` }], want: { hex: hex(GOOD) }, typed: [GOOD] },
    {
      name: 'ok/confirm',
      mode: 'confirm',
      steps: [
        { prompt: FIRST, times: 1, keys: `${GOOD}\r` },
        { prompt: REPEAT, times: 1, keys: `${GOOD}\r` },
      ],
      want: { hex: hex(GOOD) },
      typed: [GOOD],
    },
    {
      name: 'ok/confirm: CRLF is one Enter',
      mode: 'confirm',
      steps: [{ prompt: FIRST, times: 1, keys: `${GOOD}\r\n${GOOD}\r\n` }],
      want: { hex: hex(GOOD) },
      typed: [GOOD],
    },
    {
      name: 'ok/confirm: entries differ, then match',
      mode: 'confirm',
      steps: [
        { prompt: FIRST, times: 1, keys: `${GOOD}\r` },
        { prompt: REPEAT, times: 1, keys: 'a different passphrase\r' },
        { prompt: FIRST, times: 2, keys: `${GOOD}\r` },
        { prompt: REPEAT, times: 2, keys: `${GOOD}\r` },
      ],
      want: { hex: hex(GOOD) },
      typed: [GOOD, 'a different passphrase'],
    },
    {
      name: 'ok/confirm: too short, asked again',
      mode: 'confirm',
      steps: [
        { prompt: FIRST, times: 1, keys: 'short\r' },
        { prompt: FIRST, times: 2, keys: `${GOOD}\r` },
        { prompt: REPEAT, times: 1, keys: `${GOOD}\r` },
      ],
      want: { hex: hex(GOOD) },
      typed: [GOOD, 'short'],
    },
    {
      name: 'fail/confirm: entries differ three times',
      mode: 'confirm',
      steps: [1, 2, 3].flatMap((n) => [
        { prompt: FIRST, times: n, keys: `${GOOD}\r` },
        { prompt: REPEAT, times: n, keys: `mismatch number ${n}\r` },
      ]),
      want: { code: 'KEY_PASSPHRASE_MISSING', cancelled: false },
      typed: [GOOD, 'mismatch number'],
    },
    { name: 'fail/Ctrl-C cancels', mode: 'plain', steps: [{ prompt: FIRST, times: 1, keys: 'half typed\x03' }], want: { code: 'KEY_PASSPHRASE_MISSING', cancelled: true }, typed: ['half typed'] },
    { name: 'fail/Ctrl-D on an empty entry cancels', mode: 'confirm', steps: [{ prompt: FIRST, times: 1, keys: '\x04' }], want: { code: 'KEY_PASSPHRASE_MISSING', cancelled: true }, typed: [] },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const { result, screen } = await promptSession(c.mode, c.steps, c.setsid);
      assert.deepEqual(result, c.want);
      for (const s of c.typed) assert.ok(!screen.includes(s), `${JSON.stringify(s)} was echoed: ${JSON.stringify(screen)}`);
    });
  }
});
