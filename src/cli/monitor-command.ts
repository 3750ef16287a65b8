/**
 * CLI wiring for the monitor: `mutual monitor once|run` and `mutual doctor HOST:PORT`. These
 * commands end with an exit code of their own (0 healthy, 5 warnings, 6 critical, 7 an alert
 * could not be delivered); main.ts reads it with {@link commandExitCode} after parsing. The monitor itself is imported by the action that runs it,
 * so `mutual --help` does not load it (see main.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { homeLayout, resolveHome } from '../ca/home.ts';
import type { CaStore } from '../ca/store.ts';
import { parseDuration } from '../core/duration.ts';
import { MutualError } from '../core/errors.ts';
import type { DoctorReport, MonitorConfig } from '../monitor/index.ts';

/** Where the commands write (tests capture it). */
export interface MonitorCommandIo {
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
  /** Resolves when `monitor run` should stop (default: SIGINT or SIGTERM). */
  stopSignal?: () => Promise<void>;
}

const exitCodes = new WeakMap<Command, number>();

/** The exit code a monitor command set on `program`, if one ran. */
export function commandExitCode(program: Command): number | undefined {
  return exitCodes.get(program);
}

interface Globals {
  home?: string;
  json?: boolean;
}

/** The config: --config, else <home>/monitor.yaml, else one that watches the CA in <home>. */
async function loadConfig(file: string | undefined, g: Globals): Promise<MonitorConfig> {
  const { readMonitorConfig, validateMonitorConfig } = await import('../monitor/index.ts');
  if (file) return readMonitorConfig(file);
  const home = resolveHome(g.home);
  const beside = path.join(home, 'monitor.yaml');
  if (fs.existsSync(beside)) return readMonitorConfig(beside);
  if (!fs.existsSync(homeLayout(home).config)) {
    throw new MutualError('CONFIG_INVALID', { detail: `no --config, no ${beside}, and no CA in ${home} to watch` });
  }
  return validateMonitorConfig({ sources: { inventory: { home } }, stateFile: path.join(home, 'monitor-state.json') }, home);
}

/** `--now`: a time to judge as of, or undefined for the clock. */
function parseNow(text: string | undefined): Date | undefined {
  const now = text === undefined ? undefined : new Date(text);
  if (now && Number.isNaN(now.getTime())) throw new MutualError('CONFIG_INVALID', { detail: `--now ${JSON.stringify(text)} is not a time` });
  return now;
}

const signalStop = (): Promise<void> => new Promise((resolve) => {
  const stop = () => {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    resolve();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
});

/** Adds `monitor once`, `monitor run` and `doctor` to the program. */
export function registerMonitorCommands(program: Command, io: MonitorCommandIo = {}): void {
  const stdout = io.stdout ?? ((t: string) => void process.stdout.write(t));
  const stderr = io.stderr ?? ((t: string) => void process.stderr.write(t));
  const g = () => program.opts<Globals>();
  const root = (): Command => {
    let c: Command = program;
    while (c.parent) c = c.parent;
    return c;
  };

  const monitor = program.command('monitor').description('watch certificates, CRLs and endpoints; alert before they expire or break');
  monitor.command('once')
    .description('scan once, alert what is new, and exit 0 (healthy), 5 (warnings), 6 (critical) or 7 (an alert failed): for cron')
    .option('--config <file>', 'monitor config (YAML; default <home>/monitor.yaml, else watch the CA in <home>)')
    .option('--no-alerts', 'scan and report only; send nothing and leave the state file alone')
    .option('--metrics-textfile <file>', 'write Prometheus metrics here (node_exporter textfile collector)')
    .option('--now <iso-time>', 'judge as of this time (e.g. 2027-03-01T00:00:00Z), to see what a date will bring')
    .action(async (o: { config?: string; alerts: boolean; metricsTextfile?: string; now?: string }) => {
      const { runMonitorOnce, formatReport, reportJson } = await import('../monitor/index.ts');
      const config = await loadConfig(o.config, g());
      const now = parseNow(o.now);
      const r = await runMonitorOnce(config, { now, noAlerts: !o.alerts, textfile: o.metricsTextfile });
      if (g().json) stdout(JSON.stringify(reportJson(r.report, { deliveries: r.deliveries, exitCode: r.exitCode }), null, 2) + '\n');
      else {
        stdout(formatReport(r.report));
        for (const d of r.deliveries) if (!d.ok) stderr(`error[MONITOR_ALERT_FAILED]: ${d.type} to ${d.channel} failed: ${d.error}\n  hint: it is retried on the next run.\n`);
      }
      exitCodes.set(root(), r.exitCode);
    });

  monitor.command('run')
    .description('scan on a schedule (schedule.every), alert, and serve /metrics; stops on SIGINT/SIGTERM')
    .option('--config <file>', 'monitor config (YAML; default <home>/monitor.yaml, else watch the CA in <home>)')
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics on http://host:port/metrics')
    .option('--every <duration>', 'override schedule.every (e.g. 15m)')
    .action(async (o: { config?: string; metricsListen?: string; every?: string }) => {
      const { splitAddress, startMonitorDaemon } = await import('../monitor/index.ts');
      const config = await loadConfig(o.config, g());
      if (o.metricsListen) splitAddress(o.metricsListen, true);
      const daemon = await startMonitorDaemon(config, {
        metricsListen: o.metricsListen, everyMs: o.every ? parseDuration(o.every) : undefined,
        onCycle: (r) => stderr(`${new Date().toISOString()} scan: ${r.report.counts.critical} critical, ${r.report.counts.warning} warning in ${(r.report.durationMs / 1000).toFixed(2)} s; alerts ${r.deliveries.map((d) => `${d.channel}:${d.ok ? 'sent' : 'FAILED'}`).join(' ') || 'none new'}\n`),
        onError: (e) => stderr(`${new Date().toISOString()} scan failed: ${(e as Error).message}\n`),
      });
      if (daemon.metricsUrl) stderr(`metrics on ${daemon.metricsUrl}\n`);
      await (io.stopSignal ?? signalStop)();
      await daemon.close();
      exitCodes.set(root(), 0);
    });

  program.command('doctor')
    .description('explain a (failing) TLS or mTLS connection: the chain the server sends, whether it verifies, whether our client certificate is taken, and the fixes')
    .argument('<host:port>', 'the server')
    .option('--cert <file>', 'our client certificate (PEM; may hold the chain)')
    .option('--key <file>', 'its key (PEM)')
    .option('--ca <file>', 'trust bundle for the server (default: the CA\'s root in <home>, else the system\'s)')
    .option('--servername <name>', 'SNI and the name the server\'s certificate must carry (default: the host)')
    .option('--crl <file-or-url>', 'a CRL to check our certificate against (repeatable; the CA\'s CRLs in <home> are used when present)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--timeout <duration>', 'bound on connect + handshake', '5s')
    .option('--no-http', 'do not send an HTTP request after the handshake')
    .option('--now <iso-time>', 'judge validity as of this time (e.g. 2027-03-01T00:00:00Z)')
    .action(async (address: string, o: { cert?: string; key?: string; ca?: string; servername?: string; crl: string[]; timeout: string; http: boolean; now?: string }) => {
      if (Boolean(o.cert) !== Boolean(o.key)) throw new MutualError('CONFIG_INVALID', { detail: '--cert and --key go together' });
      const [{ diagnoseConnection, formatDoctorReport, splitAddress, readBundle, crlFromFile, crlFromUrl }, { openInventory }] = await Promise.all([
        import('../monitor/index.ts'), import('./compose.ts')]);
      const now = parseNow(o.now);
      const { host, port } = splitAddress(address);
      const l = homeLayout(resolveHome(g().home));
      const haveCa = fs.existsSync(l.rootCert);
      const intermediates = haveCa ? [l.serverCaCert, l.clientCaCert].filter((f) => fs.existsSync(f)).flatMap(readBundle) : undefined;
      const crls = o.crl.map((c) => (/^https?:\/\//.test(c) ? crlFromUrl(c, { timeoutMs: 5000 }) : crlFromFile(path.resolve(c))));
      if (haveCa) for (const w of ['root', 'server', 'client']) if (fs.existsSync(`${l.caDir}/${w}.crl`)) crls.push(crlFromFile(`${l.caDir}/${w}.crl`));
      let inventory: CaStore | undefined;
      if (fs.existsSync(l.config)) inventory = await openInventory(l.home, { ifPresent: true });
      let r: DoctorReport;
      try {
        r = await diagnoseConnection({
          host, port, servername: o.servername, cert: o.cert && fs.readFileSync(o.cert, 'utf8'), key: o.key && fs.readFileSync(o.key, 'utf8'),
          anchors: o.ca ? readBundle(o.ca) : haveCa ? readBundle(l.rootCert) : undefined, intermediates, crls, inventory,
          timeoutMs: parseDuration(o.timeout), http: o.http, now,
        });
      } finally {
        await inventory?.close();
      }
      if (g().json) {
        stdout(JSON.stringify({
          target: r.target, servername: r.servername, healthy: r.healthy, exitCode: r.exitCode, clientCertRequired: r.clientCertRequired, requiredBecause: r.requiredBecause,
          tls: { protocol: (r.withCert ?? r.withoutCert).protocol, cipher: (r.withCert ?? r.withoutCert).cipher },
          serverChain: r.server?.path.map((p) => ({ subject: p.info.subject, issuer: p.info.issuer, serial: p.info.serial, notAfter: p.info.notAfter, from: p.from })),
          clientCert: r.client && { label: r.client.label, serial: r.client.info.serial, refused: r.client.refused, refusedBecause: r.client.refusedBecause },
          problems: r.problems.map((f) => ({ ...f, notAfter: f.notAfter?.toISOString() })),
        }, null, 2) + '\n');
      } else stdout(formatDoctorReport(r, now));
      exitCodes.set(root(), r.exitCode);
    });
}
