/**
 * CLI wiring for `mutual gateway --config gateway.yaml`: start, reload on SIGHUP, drain and stop
 * on SIGTERM/SIGINT. The gateway is imported by the action, so `mutual --help` does not load it.
 */
import type { Command } from 'commander';

/** Adds `mutual gateway` to the program. */
export function registerGatewayCommand(program: Command): void {
  program
    .command('gateway')
    .description('Run the mTLS gateway: verify callers, authorize by identity, forward identity upstream')
    .requiredOption('-c, --config <file>', 'gateway.yaml (see docs/gateway.md)')
    .option('--no-watch', 'do not reload when the config, certificates, trust bundles or CRLs change (SIGHUP still reloads)')
    .action(async (o: { config: string; watch: boolean }) => {
      const { startGateway } = await import('../gateway/index.ts');
      const gw = await startGateway({ configFile: o.config, watch: o.watch });
      process.stdout.write(`mutual gateway listening on ${gw.url}${gw.adminUrl ? ` (metrics: ${gw.adminUrl}/metrics)` : ''}\n`);
      process.on('SIGHUP', () => void gw.reload());
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          void gw.close().then(resolve);
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
    });
}
