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
// check the version pay for Node's start only.
const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  process.stdout.write(JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version + '\n');
} else {
  // V8's code cache for mutual and its dependencies (in the OS temp folder; NODE_COMPILE_CACHE moves
  // it, NODE_DISABLE_COMPILE_CACHE=1 turns it off): it roughly halves the start-up of every later run.
  module.enableCompileCache?.();
  const source = new URL('../src/cli/main.ts', import.meta.url);
  const installed = import.meta.filename.split(/[\\/]/).includes('node_modules') || !fs.existsSync(source);
  const { run } = await import(installed ? '../dist/cli/main.js' : '../src/cli/main.ts');
  process.exitCode = await run(argv);
}
