/**
 * A source scan that keeps the readers single: only core/pem.ts tells DER from PEM by sniffing the
 * first byte (0x30, a SEQUENCE), only io/read-config-file.ts parses YAML, only core/duration.ts
 * defines a duration grammar. A second copy of any of them is how the three disagreed before.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const SRC = path.join(import.meta.dirname, '..', '..', 'src');

function sources(dir = SRC): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    return d.isDirectory() ? sources(p) : d.name.endsWith('.ts') ? [p] : [];
  });
}

const files = sources().map((f) => ({ name: path.relative(SRC, f).split(path.sep).join('/'), text: fs.readFileSync(f, 'utf8') }));

/** Lines of `text` that match `re`, as `file:line: code`. */
function hits(name: string, text: string, re: RegExp): string[] {
  return text.split('\n').flatMap((l, i) => (re.test(l) ? [`${name}:${i + 1}: ${l.trim()}`] : []));
}

const rules: { name: string; only: string; re: RegExp }[] = [
  {
    name: 'only core/pem.ts sniffs 0x30 (SEQUENCE) to tell DER from PEM',
    only: 'core/pem.ts',
    // The first byte or character compared with 0x30 / 48 / '0', either way round.
    re: /(\[0\]|\.at\(0\)|charCodeAt\(0\)|readUInt8\(0\)|codePointAt\(0\))\s*[!=]==?\s*(0x30|48\b|'0')|(0x30|\b48)\s*[!=]==?\s*\w+(\[0\]|\.at\(0\)|charCodeAt\(0\)|readUInt8\(0\))/,
  },
  {
    name: 'only io/read-config-file.ts parses YAML',
    only: 'io/read-config-file.ts',
    // Any import from a YAML library other than stringify (rendering a config is fine).
    re: /from\s+'(yaml|js-yaml)'|require\('(yaml|js-yaml)'\)/,
  },
  {
    name: 'only core/duration.ts defines a duration grammar',
    only: 'core/duration.ts',
    // A unit table or a regular expression of a number and duration units.
    re: /\(ms\|s\|m\|h\|d\)|\[smhd\]|\bUNIT_MS\b/,
  },
];

for (const r of rules) {
  test(`scan/${r.name}`, () => {
    const found = files.filter((f) => f.name !== r.only).flatMap((f) => hits(f.name, f.text, r.re))
      // Rendering YAML is not parsing it.
      .filter((h) => !(r.only === 'io/read-config-file.ts' && /import\s+\{\s*stringify(\s+as\s+\w+)?\s*\}\s+from\s+'yaml'/.test(h)));
    assert.deepEqual(found, []);
    // The rule still sees what it forbids, in the one file allowed to do it.
    assert.ok(hits(r.only, files.find((f) => f.name === r.only)!.text, r.re).length > 0, `the rule no longer matches ${r.only}`);
  });
}
