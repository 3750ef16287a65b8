/**
 * Runs one CLI command in this fresh process (cli/main.ts's run), then prints whether the PKCS#11
 * module given as the first argument is still initialized: `module-up: true|false`, last line.
 */
import { run } from '../../src/cli/main.ts';
import { moduleFor } from '../../src/keys/pkcs11/module.ts';

const [modulePath, ...args] = process.argv.slice(2);
const code = await run(args);
process.stdout.write(`\nexit: ${code}\nmodule-up: ${moduleFor(modulePath).isUp}\n`);
