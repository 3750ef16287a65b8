/**
 * The monitor commands (`monitor`, `doctor`) run in this process, as `mutual` wires them, with
 * their output captured: for tests that need the CLI's exit code and text without a child process.
 */
import { Command } from 'commander';
import { commandExitCode, registerMonitorCommands } from '../../src/cli/monitor-command.ts';

/** Runs `mutual <args>` for the monitor commands; resolves with what they wrote and their exit code. */
export async function runMonitorCli(args: string[]): Promise<{ out: string; code: number | undefined }> {
  let out = '';
  const program = new Command('mutual').option('--home <dir>').option('--json').exitOverride();
  registerMonitorCommands(program, { stdout: (s) => (out += s), stderr: (s) => (out += s) });
  await program.parseAsync(args, { from: 'user' });
  return { out, code: commandExitCode(program) };
}
