/**
 * `npm run build` renders `mutual --help` once into dist/cli/help.txt, as commander prints it to a
 * pipe (80 columns, no colours), so the installed launcher can answer `mutual --help` on a pipe
 * without loading commander and the CLI (bin/mutual.mjs; test/package/pack.test.ts checks that
 * the two are the same text). Run from dist only: `node dist/cli/render-help.js`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { buildProgram } from './main.ts';

/** The root help text as commander writes it to a pipe. */
export function renderHelp(): string {
  return buildProgram().configureOutput({ getOutHelpWidth: () => 80, getOutHasColors: () => false }).helpInformation();
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) {
  fs.writeFileSync(path.join(import.meta.dirname, 'help.txt'), renderHelp());
}
