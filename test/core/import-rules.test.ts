/**
 * The import rules of docs/ARCHITECTURE.md are the ones enforced: this test parses the table
 * between `<!-- import-rules:begin -->` and `<!-- import-rules:end -->` and checks every import
 * of src/ against it (issue 15). A part's row lists the parts it may import (`ca/store.ts`: that
 * file only; `store` (from `ca/open-ca-store.ts`): only in that file) and the Node built-ins it
 * may use (`any`, or a list). Imports are read from the code with comments removed: static
 * `import`/`export ... from`, side-effect `import '...'` and dynamic `import('...')`, type-only
 * imports included.
 *
 * The faces table of the same page (between `<!-- faces:begin -->` and `<!-- faces:end -->`) is
 * checked here too: an import that leaves a part names the target part's `index.ts` or a face the
 * table lists for it (`every file` for core).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SRC = path.join(ROOT, 'src');
const DOC = path.join(ROOT, 'docs/ARCHITECTURE.md');

interface Allowed {
  /** The part, or a file of it (`ca/store.ts`). */
  target: string;
  /** Only this importing file may use it, when set. */
  from?: string;
}
interface Rule {
  allowed: Allowed[];
  /** Node built-ins allowed; undefined: any. */
  builtins?: string[];
}

/** The rules table of ARCHITECTURE.md: part -> rule. */
export function parseRules(doc: string): Map<string, Rule> {
  const m = /<!-- import-rules:begin -->([\s\S]*?)<!-- import-rules:end -->/.exec(doc);
  if (!m) throw new Error('docs/ARCHITECTURE.md has no import-rules table');
  const rules = new Map<string, Rule>();
  for (const line of m[1].split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (cells.length !== 3 || cells[0] === 'part' || /^-+$/.test(cells[0])) continue;
    const part = /^`([^`]+)`$/.exec(cells[0])?.[1];
    if (!part) throw new Error(`import-rules: bad part cell ${cells[0]}`);
    const allowed = [...cells[1].matchAll(/`([^`]+)`(?:\s*\(from\s*`([^`]+)`\))?/g)].map((a) => ({ target: a[1], ...(a[2] ? { from: a[2] } : {}) }));
    const builtins = cells[2] === 'any' ? undefined : [...cells[2].matchAll(/`([^`]+)`/g)].map((b) => b[1]);
    rules.set(part, { allowed, ...(builtins ? { builtins } : {}) });
  }
  return rules;
}

/** The import specifiers of a source text (comments removed). */
export function importsOf(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const re = /^\s*(?:import|export)\b[^;'"`]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;
  return [...code.matchAll(re)].map((m) => m[1] ?? m[2] ?? m[3]);
}

/** The part of a file path relative to src/: its first folder, or the file itself at the top. */
const partOf = (rel: string): string => (rel.includes('/') ? rel.split('/')[0] : rel);

/** The imports of `files` (path relative to src/ -> text) that `rules` do not allow. */
export function violations(files: Map<string, string>, rules: Map<string, Rule>): string[] {
  const out: string[] = [];
  for (const [file, text] of files) {
    const part = partOf(file);
    const rule = rules.get(part);
    if (!rule) {
      out.push(`${file}: the part "${part}" has no row in the import-rules table`);
      continue;
    }
    for (const spec of importsOf(text)) {
      if (spec.startsWith('node:')) {
        if (rule.builtins && !rule.builtins.includes(spec)) out.push(`${file}: ${spec} (${part} may use ${rule.builtins.join(', ')} only)`);
        continue;
      }
      if (!spec.startsWith('.')) continue;
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
      const targetPart = partOf(target);
      if (targetPart === part) continue;
      const ok = rule.allowed.some((a) => (a.target === targetPart || a.target === target) && (!a.from || a.from === file));
      if (!ok) out.push(`${file}: ${spec} (${part} may not import ${target})`);
    }
  }
  return out;
}

/** The faces table of ARCHITECTURE.md: part -> its faces (file names in the part), or 'all'. */
export function parseFaces(doc: string): Map<string, string[] | 'all'> {
  const m = /<!-- faces:begin -->([\s\S]*?)<!-- faces:end -->/.exec(doc);
  if (!m) throw new Error('docs/ARCHITECTURE.md has no faces table');
  const faces = new Map<string, string[] | 'all'>();
  for (const line of m[1].split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (cells.length !== 3 || cells[0] === 'part' || /^-+$/.test(cells[0])) continue;
    const files = cells[1] === 'every file' ? 'all' : [...cells[1].matchAll(/`([^`]+)`/g)].map((f) => f[1]);
    for (const part of cells[0].matchAll(/`([^`]+)`/g)) faces.set(part[1], files);
  }
  return faces;
}

/** The imports of `files` that leave their part for a file that is not one of the target part's faces. */
export function faceViolations(files: Map<string, string>, faces: Map<string, string[] | 'all'>): string[] {
  const out: string[] = [];
  for (const [file, text] of files) {
    for (const spec of importsOf(text)) {
      if (!spec.startsWith('.')) continue;
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
      const targetPart = partOf(target);
      if (targetPart === partOf(file) || targetPart === target) continue;
      const face = faces.get(targetPart);
      if (face === 'all') continue;
      const name = target.slice(targetPart.length + 1);
      if (!face?.includes(name)) out.push(`${file}: ${spec} (${targetPart}'s faces are ${face?.join(', ') ?? 'not in the table'})`);
    }
  }
  return out;
}

function sources(dir = SRC): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) for (const [k, v] of sources(full)) out.set(k, v);
    else if (e.name.endsWith('.ts')) out.set(path.relative(SRC, full).split(path.sep).join('/'), fs.readFileSync(full, 'utf8'));
  }
  return out;
}

const rules = parseRules(fs.readFileSync(DOC, 'utf8'));

test('ok/the table names every part of src/, and only those', () => {
  const parts = new Set([...sources().keys()].map(partOf));
  assert.deepEqual([...rules.keys()].sort(), [...parts].sort());
});

test('ok/nothing may import cli', () => {
  const importers = [...rules].filter(([, r]) => r.allowed.some((a) => partOf(a.target) === 'cli')).map(([p]) => p);
  assert.deepEqual(importers, []);
});

test('ok/the checker reads the forms of import and applies each kind of rule', () => {
  const table = parseRules([
    '<!-- import-rules:begin -->',
    '| part | may import | Node built-ins |',
    '|---|---|---|',
    '| `core` | (none) | `node:crypto` |',
    '| `ca` | `core`, `store` (from `ca/open.ts`) | any |',
    '| `store` | `core`, `ca/store.ts` | any |',
    '<!-- import-rules:end -->',
  ].join('\n'));
  const files = new Map([
    ['core/a.ts', "import crypto from 'node:crypto';\nimport fs from 'node:fs';\n// import x from '../ca/b.ts'\n"],
    ['core/b.ts', "export { x } from '../ca/x.ts';\n"],
    ['ca/open.ts', "import {\n  openStore,\n} from '../store/open.ts';\n"],
    ['ca/other.ts', "const { openStore } = await import('../store/open.ts');\nimport type { C } from '../core/c.ts';\n"],
    ['store/s.ts', "import type { CaStore } from '../ca/store.ts';\nimport '../ca/authority.ts';\n"],
  ]);
  assert.deepEqual(violations(files, table), [
    'core/a.ts: node:fs (core may use node:crypto only)',
    'core/b.ts: ../ca/x.ts (core may not import ca/x.ts)',
    'ca/other.ts: ../store/open.ts (ca may not import store/open.ts)',
    'store/s.ts: ../ca/authority.ts (store may not import ca/authority.ts)',
  ]);
});

test('fail/an import the table of docs/ARCHITECTURE.md does not allow', () => {
  assert.deepEqual(violations(sources(), rules), [], 'change the code, or the table in docs/ARCHITECTURE.md in review');
});

const faces = parseFaces(fs.readFileSync(DOC, 'utf8'));

test('ok/every part but the CLI and the top-level entry has a face, and each face is a file of its part', () => {
  const files = new Set(sources().keys());
  const parts = new Set([...files].map(partOf).filter((p) => p.includes('.') === false && p !== 'cli'));
  assert.deepEqual([...faces.keys()].sort(), [...parts].sort());
  for (const [part, list] of faces) {
    if (list === 'all') continue;
    assert.ok(list.includes('index.ts'), `${part}: index.ts is its face`);
    for (const f of list) assert.ok(files.has(`${part}/${f}`), `${part}/${f} exists`);
  }
});

test('ok/the faces checker lets imports in a part, to an index, to a listed face and into core pass', () => {
  const table = new Map<string, string[] | 'all'>([['core', 'all'], ['ca', ['index.ts', 'limits.ts']], ['store', ['index.ts']]]);
  const files = new Map([
    ['ca/a.ts', "import { b } from './b.ts';\nimport { der } from '../core/der.ts';\nimport { openStore } from '../store/index.ts';\n"],
    ['cli/x.ts', "import { MIN } from '../ca/limits.ts';\nconst { issue } = await import('../ca/authority.ts');\nimport type { S } from '../store/sqlite.ts';\n"],
    ['index.ts', "export { openStore } from './store/index.ts';\nexport { x } from './ca/x.ts';\n"],
  ]);
  assert.deepEqual(faceViolations(files, table), [
    "cli/x.ts: ../ca/authority.ts (ca's faces are index.ts, limits.ts)",
    "cli/x.ts: ../store/sqlite.ts (store's faces are index.ts)",
    "index.ts: ./ca/x.ts (ca's faces are index.ts, limits.ts)",
  ]);
});

test('fail/an import past a part\'s face (docs/ARCHITECTURE.md, "Faces")', () => {
  assert.deepEqual(faceViolations(sources(), faces), [], 'import the part\'s index.ts (export the name there), or add a face to the table in review');
});
