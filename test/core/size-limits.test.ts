/**
 * "No file over ~500 lines and no function over ~120 without a reason written at its top" (issue 15).
 * A source scan of src/: a file over {@link MAX_FILE_LINES} lines, or holding a function over
 * {@link MAX_FUNCTION_LINES} lines, fails unless the file's top comment carries a line
 * `size: <reason>` (the reason is for the reader; the scan only checks it is there).
 *
 * How functions are measured (the project's TypeScript is 7, whose package ships the native `tsgo`
 * binary and no JavaScript compiler API, so this is a line scan, not a parse). The code is
 * formatted with two-space indentation and one statement per line, which the scan relies on:
 * - comments are blanked first (block comments line by line, so line numbers stay);
 * - a function starts on a line whose code ends with `{` and that holds `function`, ends with
 *   `=> {`, or is a method/constructor/accessor header (`name(...) {`, `async #name(...): T {`,
 *   `get name() {`: a `)` before the `{`), not a control statement (`if`, `for`, `switch`, ...);
 *   a `function` header may also end in `(` or `,` (its parameters on the next lines);
 * - it ends at the first later line with the same indentation that starts with `}`; a function
 *   without one (less indented code comes first) fails the test, since the measure is then wrong;
 * - its length is end - start + 1 lines, signature and closing brace included.
 * Nested functions are measured on their own as well; the outer one counts them in its length.
 * A class body is not a function: its length is bounded by the file limit.
 *
 * Files still being split (issue 15 phase 2) are listed in {@link PENDING}; the test also fails
 * when a listed file no longer needs its entry, so the list only shrinks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const SRC = path.resolve(import.meta.dirname, '../../src');
/** The "~500 lines" per file. */
const MAX_FILE_LINES = 500;
/** The "~120 lines" per function. */
const MAX_FUNCTION_LINES = 120;

/**
 * Files over a limit whose split is under way, with what is over. Empty since the issue 15 splits
 * landed; adding one is a decision for review, not a way to pass.
 */
const PENDING: Record<string, string> = {};

const CONTROL = new Set(['if', 'for', 'while', 'switch', 'catch', 'with', 'do', 'else', 'try', 'finally', 'return', 'await', 'yield', 'new', 'typeof', 'throw', 'case']);
const MODIFIERS = /^(?:(?:export|default|public|private|protected|static|async|override|readonly|abstract|get|set|declare)\s+)*/;

function sources(dir = SRC): { file: string; text: string }[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') ? [{ file: path.relative(SRC, full).split(path.sep).join('/'), text: fs.readFileSync(full, 'utf8') }] : [];
  });
}

/** The lines of `text` with comments blanked (strings are left alone: a `//` inside one is rare and only shortens the line's code). */
function codeLines(text: string): string[] {
  const blanked = text.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' '));
  return blanked.split('\n').map((l) => l.replace(/(^|[^:'"`\\])\/\/.*$/, '$1').replace(/\s+$/, ''));
}

/** True when a line of code opens a function body (see the file's top comment). */
function opensFunction(code: string): boolean {
  const t = code.trim();
  if (/\bfunction\b/.test(t) && /[{(,]$/.test(t)) return true;
  if (!t.endsWith('{')) return false;
  if (/=>\s*\{$/.test(t)) return true;
  const rest = t.replace(MODIFIERS, '').replace(/^\*\s*/, '');
  const m = /^([#$\w]+)\s*(?:<[^(]*>)?\s*\(/.exec(rest);
  // A header closes its parameters before the body (`) {`, `): T {`); a call such as `send(res, {` does not.
  return m !== null && !CONTROL.has(m[1]) && /\)(\s*:.*)?\s*\{$/.test(rest);
}

const indentOf = (line: string): number => /^\s*/.exec(line)![0].length;

/** A function found by the scan. */
interface Measured {
  /** Its first line, 1-based. */
  line: number;
  /** Its length in lines. */
  lines: number;
  header: string;
  /** False when no `}` at its indentation closed it (the scan's assumption about formatting failed). */
  closed: boolean;
}

/** Every function of a source text: its first line (1-based) and its length in lines. */
export function measureFunctions(text: string): Measured[] {
  const lines = codeLines(text);
  const out: Measured[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!opensFunction(lines[i])) continue;
    const indent = indentOf(lines[i]);
    let end = lines.length - 1;
    let closed = false;
    for (let j = i + 1; j < lines.length; j++) {
      if (lines[j].trim() === '') continue;
      const k = indentOf(lines[j]);
      if (k === indent && lines[j].trim().startsWith('}')) {
        end = j;
        closed = true;
        break;
      }
      if (k < indent) {
        end = j - 1;
        break;
      }
    }
    out.push({ line: i + 1, lines: end - i + 1, header: lines[i].trim().slice(0, 80), closed });
  }
  return out;
}

/** The `size: <reason>` line of a file's top comment, if any. */
export function sizeReason(text: string): string | undefined {
  const top = /^\s*(\/\*[\s\S]*?\*\/|(?:\/\/.*\n)+)/.exec(text)?.[1] ?? '';
  return /^[\s/*]*size:\s*(\S.*)$/m.exec(top)?.[1];
}

/** What is over the limits in a file without a `size:` reason. */
function overLimits(text: string): string[] {
  if (sizeReason(text)) return [];
  const out: string[] = [];
  const n = text.split('\n').length;
  if (n > MAX_FILE_LINES) out.push(`${n} lines`);
  for (const f of measureFunctions(text)) {
    if (f.lines > MAX_FUNCTION_LINES) out.push(`function at line ${f.line} (${f.header}) is ${f.lines} lines`);
  }
  return out;
}

test('ok/the measure finds functions, methods and arrows, and their lengths', () => {
  const text = [
    '/** doc */', //                            1
    'export function a(x: number): number {', // 2
    '  if (x) {', //                            3
    '    return 1;', //                         4
    '  }', //                                   5
    '  return 2;', //                           6
    '}', //                                     7
    'export class C {', //                      8
    '  #m(a: string): { b: string } | undefined {', // 9
    '    const f = (y: number) => {', //        10
    '      return y;', //                       11
    '    };', //                                12
    '    return undefined;', //                 13
    '  }', //                                   14
    '  get g(): number {', //                   15
    '    return 1;', //                         16
    '  }', //                                   17
    '}', //                                     18
    'export async function long(', //           19
    '  a: string,', //                          20
    '): Promise<void> {', //                    21
    '  await x(a, () => {', //                  22
    '    y();', //                              23
    '  });', //                                 24
    '}', //                                     25
    'const s = "// not a comment {";', //       26
    'send(res, 200, {', //                      27: a call, not a function
    '  a: 1,', //                               28
    '});', //                                   29
  ].join('\n');
  const got = measureFunctions(text).map((f) => [f.line, f.lines]);
  assert.deepEqual(got, [[2, 6], [9, 6], [10, 3], [15, 3], [19, 7], [22, 3]]);
  assert.ok(measureFunctions(text).every((f) => f.closed));
});

test('ok/a size: line in the top comment is the reason, elsewhere it is not', () => {
  assert.equal(sizeReason('/**\n * The thing.\n *\n * size: one state machine, read top to bottom\n */\nexport const x = 1;\n'), 'one state machine, read top to bottom');
  assert.equal(sizeReason('// size: generated table\nexport const x = 1;\n'), 'generated table');
  assert.equal(sizeReason('/** The thing. */\nexport const x = 1;\n/** size: not at the top */\n'), undefined);
  assert.equal(sizeReason('export const x = 1;\n'), undefined);
});

test('ok/sources found', () => {
  assert.ok(sources().some((s) => s.file === 'sdk/verifier.ts'), 'the scan reads src/');
});

test('fail/a function the scan cannot close (its formatting breaks the measure)', () => {
  const bad = sources().flatMap((s) => measureFunctions(s.text).filter((f) => !f.closed).map((f) => `${s.file}:${f.line} ${f.header}`));
  assert.deepEqual(bad, [], 'each function ends with a `}` line at the indentation of its first line');
});

test('fail/file or function over the limits without a size: reason', () => {
  const bad = sources().filter((s) => !(s.file in PENDING)).flatMap((s) => overLimits(s.text).map((o) => `${s.file}: ${o}`));
  assert.deepEqual(bad, [], `no file over ${MAX_FILE_LINES} lines and no function over ${MAX_FUNCTION_LINES} lines without a \`size:\` line in the file's top comment`);
});

test('fail/a PENDING entry that is no longer needed', () => {
  const files = new Map(sources().map((s) => [s.file, s.text]));
  const stale = Object.keys(PENDING).filter((f) => !files.has(f) || overLimits(files.get(f)!).length === 0);
  assert.deepEqual(stale, [], 'remove these from PENDING in test/core/size-limits.test.ts: their split landed');
});
