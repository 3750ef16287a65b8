#!/usr/bin/env node
// In a checkout mutual runs its TypeScript sources directly (Node >= 24 strips types). Node does not
// strip types under node_modules, so an installed package runs the JavaScript that `npm run build`
// compiled into dist/ (`npm pack` builds it; the package ships no src/).
import fs from 'node:fs';
import module from 'node:module';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`mutual needs Node.js 24 or newer (this is ${process.version}). Install Node.js 24; in a checkout of mutual, npx mutual uses the Node it pins.\n`);
  process.exit(1);
}
// `mutual --version` alone is answered here, before any of mutual is loaded: scripts and agents that
// check the version pay for Node's start only. So is `mutual --help` on a pipe when installed: the
// build rendered it from the same sources (src/cli/render-help.ts).
const argv = process.argv.slice(2);
const installedHelp = new URL('../dist/cli/help.txt', import.meta.url);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  process.stdout.write(JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version + '\n');
} else if (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h') && isInstalled() && !process.stdout.isTTY && !colourForced() && fs.existsSync(installedHelp)) {
  // The help text the build rendered from the same sources, as commander writes it to a pipe
  // (a terminal gets commander's own, fitted to its width and colours).
  process.stdout.write(fs.readFileSync(installedHelp, 'utf8'));
} else {
  // V8's code cache for mutual and its dependencies (in the OS temp folder; NODE_COMPILE_CACHE moves
  // it, NODE_DISABLE_COMPILE_CACHE=1 turns it off): it roughly halves the start-up of every later run.
  module.enableCompileCache?.();
  const { run } = await import(isInstalled() ? '../dist/cli/main.js' : '../src/cli/main.ts');
  process.exitCode = await run(argv);
}

/** Installed (under node_modules, or shipped without src/): run the compiled dist/, not the sources. */
function isInstalled() {
  return import.meta.filename.split(/[\\/]/).includes('node_modules') || !fs.existsSync(new URL('../src/cli/main.ts', import.meta.url));
}

/** Colours asked for in the environment, as commander reads it (its help would then differ). */
function colourForced() {
  const e = process.env;
  return Boolean(e.FORCE_COLOR && e.FORCE_COLOR !== '0' && e.FORCE_COLOR !== 'false') || e.CLICOLOR_FORCE !== undefined;
}
