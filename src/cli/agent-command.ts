/**
 * CLI wiring for `mutual agent run|once|status|rotate|validate` (docs/agent.md). The commands
 * end with the agent's own exit codes (src/agent/exit-codes.ts) and report their failures here
 * rather than through the program's generic handler; main.ts reads the code with
 * {@link agentExitCode} after parsing. The agent itself is imported by the action that runs it
 * ({@link loadAgent}), so `mutual --help` does not load it (see main.ts).
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { isMutualError } from '../core/errors.ts';
import type { CycleReport, AgentManifest } from '../agent/index.ts';
import { AGENT_EXIT, exitCodeOf } from '../agent/exit-codes.ts';

/** Where agent.yaml is looked for without -c: $MUTUAL_AGENT_CONFIG, else this. */
export const DEFAULT_AGENT_CONFIG = '/etc/mutual/agent.yaml';

interface AgentCliOptions {
  config?: string;
  logLevel?: string;
  json?: boolean;
}

/** Options of {@link registerAgentCommand}. */
export interface RegisterAgentOptions {
  /** Receives a command's exit code; default: kept for {@link agentExitCode}. */
  exit?: (code: number) => void;
}

const exitCodes = new WeakMap<Command, number>();

/** The exit code the agent command that ran on `program` ended with, if one ran. */
export function agentExitCode(program: Command): number | undefined {
  return exitCodes.get(program);
}

/** The agent and its logger, imported when an agent command runs. */
async function loadAgent() {
  const [{ Agent, agentStatus, formatStatus, discoverTemplates, loadManifest, runDaemon }, { pino }] = await Promise.all([import('../agent/index.ts'), import('pino')]);
  return { Agent, agentStatus, formatStatus, discoverTemplates, loadManifest, runDaemon, pino };
}
type AgentModules = Awaited<ReturnType<typeof loadAgent>>;

/** The options every agent subcommand takes. */
const common = (c: Command, level: string) => c
  .option('-c, --config <file>', `agent.yaml (default: $MUTUAL_AGENT_CONFIG, else ${DEFAULT_AGENT_CONFIG})`)
  .addOption(new Option('--log-level <level>', 'JSON log lines on stderr at this level and above').choices(['debug', 'info', 'warn', 'error', 'silent']).default(level))
  .option('--json', 'machine-readable output on stdout');

const opts = (cmd: Command): AgentCliOptions => cmd.optsWithGlobals<AgentCliOptions>();
const manifestOf = (m: AgentModules, c: AgentCliOptions): AgentManifest => m.loadManifest(c.config ?? process.env.MUTUAL_AGENT_CONFIG ?? DEFAULT_AGENT_CONFIG);
const loggerOf = (m: AgentModules, c: AgentCliOptions) => m.pino({ level: c.logLevel ?? 'info', base: { component: 'mutual-agent' } }, m.pino.destination({ dest: 2, sync: true }));

/** Prints a cycle's report: JSON with --json, else a line per certificate, trust file and deployment file. */
function printReport(c: AgentCliOptions, r: CycleReport): void {
  if (c.json) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return;
  }
  const lines: string[] = [];
  for (const x of r.certificates) {
    if (!x.ok) lines.push(`${x.name}: error[${x.code}]: ${x.message}`);
    else if (x.action === 'none') lines.push(`${x.name}: nothing to do (${x.serial ?? '-'}, renews at ${x.renewAt ?? '-'})`);
    else lines.push(`${x.name}: ${x.action} ${x.previousSerial && x.previousSerial !== x.serial ? `${x.previousSerial} -> ` : ''}${x.serial}, valid until ${x.notAfter}`);
  }
  if (!r.trust.ok) lines.push(`trust: error[${r.trust.code}]: ${r.trust.message}`);
  for (const f of r.trust.changed) lines.push(`trust: updated ${f}`);
  for (const t of r.templates) {
    if (!t.ok) lines.push(`${t.file}: error[${t.code}]: ${t.message}`);
    else if (t.action === 'written') lines.push(`${t.file}: wrote ${t.target}`);
  }
  for (const w of r.warnings) lines.push(`warning[${w.code}]: ${w.message}`);
  lines.push(r.exitCode === 0 ? 'ok' : `exit ${r.exitCode} (see docs/agent.md, "Exit codes")`);
  process.stdout.write(lines.join('\n') + '\n');
}

/** Adds `agent` and its subcommands to the program (the root `mutual` command). */
export function registerAgentCommand(program: Command, o: RegisterAgentOptions = {}): void {
  const exit = o.exit ?? ((code: number) => void exitCodes.set(program, code));
  const agent = program.command('agent').description('keep this host\'s certificates, keys, trust bundles and CRLs fresh and reload its services (docs/agent.md)');

  /** Prints a failure that stopped a command before any cycle, and exits with its code. */
  const fail = (c: AgentCliOptions, e: unknown): void => {
    if (isMutualError(e)) {
      if (c.json) process.stdout.write(JSON.stringify({ error: e.toJSON() }) + '\n');
      else process.stderr.write(`error[${e.code}]: ${e.message}\n  hint: ${e.hint}\n`);
    } else process.stderr.write(`error: ${(e as Error)?.stack ?? String(e)}\n`);
    exit(exitCodeOf(e));
  };

  common(agent.command('once'), 'warn')
    .description('do what is due now (renew, enroll, refresh CRLs, redeploy) and exit: 0 when all is in place, 10-15 per failure kind')
    .action(async (_o, cmd: Command) => {
      const c = opts(cmd);
      const m = await loadAgent();
      try {
        const r = await new m.Agent({ manifest: manifestOf(m, c), logger: loggerOf(m, c) }).cycle({ ignoreBackoff: true });
        printReport(c, r);
        exit(r.exitCode);
      } catch (e) {
        fail(c, e);
      }
    });

  common(agent.command('rotate'), 'warn')
    .description('renew a certificate now (a new key unless newKey: false) and deploy it')
    .argument('<name>', 'the certificate\'s name in agent.yaml')
    .action(async (name: string, _o, cmd: Command) => {
      const c = opts(cmd);
      const m = await loadAgent();
      try {
        const r = await new m.Agent({ manifest: manifestOf(m, c), logger: loggerOf(m, c) }).cycle({ ignoreBackoff: true, force: [name] });
        printReport(c, r);
        exit(r.exitCode);
      } catch (e) {
        fail(c, e);
      }
    });

  common(agent.command('status'), 'warn')
    .description('what the agent manages: expiry and renewal time of each certificate, last results, trust files')
    .action(async (_o, cmd: Command) => {
      const c = opts(cmd);
      const m = await loadAgent();
      try {
        const s = m.agentStatus(manifestOf(m, c));
        process.stdout.write(c.json ? JSON.stringify(s, null, 2) + '\n' : m.formatStatus(s));
      } catch (e) {
        fail(c, e);
      }
    });

  common(agent.command('validate'), 'warn')
    .description('check agent.yaml and the watched folder\'s deployment files; changes nothing')
    .action(async (_o, cmd: Command) => {
      const c = opts(cmd);
      const m = await loadAgent();
      try {
        const man = manifestOf(m, c);
        const t = man.templatesDir ? m.discoverTemplates(man.templatesDir) : { templates: [], errors: [] };
        if (t.errors.length) throw t.errors[0];
        const summary = { manifest: man.file, certificates: man.certificates.map((x) => x.name), bundles: man.trust.bundles.map((b) => b.path), crls: man.trust.crls.map((x) => x.path), templates: t.templates.map((x) => ({ file: x.file, target: x.target })) };
        process.stdout.write(c.json ? JSON.stringify(summary, null, 2) + '\n' : `${man.file} is valid: ${summary.certificates.length} certificate(s), ${summary.bundles.length + summary.crls.length} trust file(s), ${summary.templates.length} deployment file(s)\n`);
      } catch (e) {
        fail(c, e);
      }
    });

  common(agent.command('run'), 'info')
    .description('the daemon: renew, refresh and redeploy when due; SIGHUP re-reads agent.yaml; SIGTERM stops after the current step')
    .action(async (_o, cmd: Command) => {
      const c = opts(cmd);
      const m = await loadAgent();
      let manifest: AgentManifest;
      try {
        manifest = manifestOf(m, c);
      } catch (e) {
        fail(c, e);
        return;
      }
      const log = loggerOf(m, c);
      const a = new m.Agent({ manifest, logger: log });
      const stop = new AbortController();
      const daemon = m.runDaemon({
        agent: a, signal: stop.signal, logger: log,
        onCycle: (r) => {
          if (c.json) process.stdout.write(JSON.stringify(r) + '\n');
        },
      });
      const onStop = (sig: string) => {
        log.info({ signal: sig }, 'stopping after the current step');
        stop.abort();
      };
      const onHup = () => {
        try {
          a.setManifest(manifestOf(m, c));
          log.info({ manifest: a.manifest.file }, 're-read agent.yaml');
        } catch (e) {
          log.error({ code: isMutualError(e) ? e.code : undefined, err: (e as Error).message }, 'agent.yaml is invalid; keeping the previous one');
        }
        daemon.wake();
      };
      process.on('SIGTERM', onStop);
      process.on('SIGINT', onStop);
      process.on('SIGHUP', onHup);
      await daemon.done;
      process.off('SIGTERM', onStop);
      process.off('SIGINT', onStop);
      process.off('SIGHUP', onHup);
      exit(AGENT_EXIT.OK);
    });
}
