/**
 * Every registered code maps to a CLI exit status (3 refused input, 4 CA-side failure) and, for
 * the agent, to one of its documented exit codes; the codes added for what used to be plain
 * Errors land where docs/cli.md and docs/agent.md say.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERRORS, MutualError, type ErrorCode } from '../../src/core/errors.ts';
import { EXIT, reportError } from '../../src/cli/output.ts';
import { AGENT_EXIT, exitCodeOf } from '../../src/agent/exit-codes.ts';

/** reportError's exit status, with its output swallowed. */
function cliExit(code: ErrorCode): number {
  const write = process.stdout.write;
  process.stdout.write = () => true;
  try {
    return reportError(new MutualError(code, { detail: 'test' }), true);
  } finally {
    process.stdout.write = write;
  }
}

test('ok/every code gives exit 3 or 4', () => {
  for (const code of Object.keys(ERRORS) as ErrorCode[]) assert.ok([EXIT.REJECTED, EXIT.CA_ERROR].includes(cliExit(code) as 3 | 4), code);
});

const cases: [ErrorCode, number, number][] = [
  ['FETCH_FAILED', EXIT.CA_ERROR, AGENT_EXIT.CA_UNAVAILABLE],
  ['OCSP_RESPONSE_INVALID', EXIT.CA_ERROR, AGENT_EXIT.CA_UNAVAILABLE],
  ['CA_ANSWER_INVALID', EXIT.CA_ERROR, AGENT_EXIT.CA_UNAVAILABLE],
];
for (const [code, cli, agent] of cases) {
  test(`ok/${code} exits ${cli} (cli) and ${agent} (agent)`, () => {
    assert.equal(cliExit(code), cli);
    assert.equal(exitCodeOf(new MutualError(code)), agent);
  });
}
