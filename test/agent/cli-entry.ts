/**
 * `mutual` for the agent's CLI tests. Once src/cli/main.ts registers the agent command, this is
 * main.ts's own `run()`; until then, the program with the agent command wired the way main.ts is
 * asked to wire it (registerAgentCommand after the other commands, agentExitCode after parsing).
 */
import { CommanderError } from 'commander';
import { buildProgram, run } from '../../src/cli/main.ts';
import { agentExitCode, registerAgentCommand } from '../../src/cli/agent-command.ts';
import { EXIT, reportError } from '../../src/cli/output.ts';

const argv = process.argv.slice(2);
if (buildProgram().commands.some((c) => c.name() === 'agent')) {
  process.exitCode = await run(argv);
} else {
  const program = buildProgram();
  registerAgentCommand(program);
  try {
    await program.parseAsync(argv, { from: 'user' });
    process.exitCode = agentExitCode(program) ?? EXIT.OK;
  } catch (e) {
    process.exitCode = e instanceof CommanderError ? (e.exitCode === 0 ? EXIT.OK : EXIT.USAGE) : reportError(e, Boolean(program.opts().json));
  }
}
