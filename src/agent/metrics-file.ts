/**
 * The agent's Prometheus text file (for node_exporter's textfile collector): per certificate its
 * expiry, renewal time, consecutive failures and last success; per CRL its nextUpdate; the last
 * cycle's time and exit code. Written atomically after every cycle.
 */
import type { CertificateInfo } from '../core/certificate.ts';
import type { AgentState } from './agent-state.ts';
import type { AgentManifest } from './manifest.ts';
import { renewAt } from './renewal-decision.ts';
import type { TrustCache } from './trust-cache.ts';

const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const secs = (d: Date | string): string => String(Math.floor(new Date(d).getTime() / 1000));

/** Renders the metrics text. */
export function renderMetrics(m: AgentManifest, s: AgentState, current: (name: string) => CertificateInfo | undefined, cache: TrustCache, now: Date): string {
  const lines: string[] = [];
  const metric = (name: string, help: string, rows: [Record<string, string>, string][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [labels, value] of rows) {
      const l = Object.entries(labels).map(([k, v]) => `${k}="${esc(v)}"`).join(',');
      lines.push(`${name}${l ? `{${l}}` : ''} ${value}`);
    }
  };
  const certs = m.certificates.map((c) => ({ c, info: current(c.name), st: s.certificates[c.name] }));
  metric('mutual_agent_certificate_expiry_timestamp_seconds', 'notAfter of the deployed certificate.', certs.filter((x) => x.info).map((x) => [{ name: x.c.name, serial: x.info!.serial }, secs(x.info!.notAfter)]));
  metric('mutual_agent_certificate_renewal_timestamp_seconds', 'When the agent renews the deployed certificate.', certs.filter((x) => x.info).map((x) => [{ name: x.c.name }, secs(renewAt(x.info!, x.st?.obtained ?? {}, m.renewal, x.st?.ari))]));
  metric('mutual_agent_certificate_failures', 'Consecutive failed attempts (0 when the last one succeeded).', certs.map((x) => [{ name: x.c.name, code: x.st?.lastResult?.ok === false ? x.st.lastResult.code ?? '' : '' }, String(x.st?.failures ?? 0)]));
  metric('mutual_agent_certificate_last_success_timestamp_seconds', 'Last successful enrollment, renewal or deployment.', certs.filter((x) => x.st?.lastSuccessAt).map((x) => [{ name: x.c.name }, secs(x.st!.lastSuccessAt!)]));
  metric('mutual_agent_crl_next_update_timestamp_seconds', 'nextUpdate of the CRL in use.', Object.entries(s.trust.crls).filter(([i, c]) => c.nextUpdate && cache.crl(i as 'root')).map(([i, c]) => [{ issuer: i }, secs(c.nextUpdate!)]));
  metric('mutual_agent_trust_failures', 'Consecutive failed refreshes of CA certificates and CRLs.', [[{}, String(s.trust.failures)]]);
  metric('mutual_agent_last_cycle_timestamp_seconds', 'When the last cycle ran.', [[{}, secs(now)]]);
  metric('mutual_agent_last_cycle_exit_code', 'Exit code of the last cycle (0 = all in place; see docs/agent.md).', [[{}, String(s.lastCycle?.exitCode ?? 0)]]);
  return lines.join('\n') + '\n';
}
