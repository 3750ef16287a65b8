#!/usr/bin/env node
// mutual runs its TypeScript sources directly (Node >= 24 strips types).
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`mutual needs Node.js 24 or newer (this is ${process.version}). Run it through npm (npx mutual), which uses the pinned Node.\n`);
  process.exit(1);
}
const { run } = await import('../src/cli/main.ts');
process.exitCode = await run(process.argv.slice(2));
