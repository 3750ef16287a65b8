/**
 * mutual agent: renewal and deployment of a host's certificates, keys, trust bundles and CRLs.
 */
export { Agent, type AgentOptions, type AgentLogger, type CycleOptions, type CycleReport, type CertificateOutcome, type TrustOutcome, type TemplateOutcome } from './agent.ts';
export { agentStatus, formatStatus, type AgentStatus, type CertificateStatus, type CertificateHealth } from './agent-status.ts';
export { runDaemon, type Daemon, type DaemonOptions } from './run-daemon.ts';
export { loadManifest, parseManifest, type AgentManifest, type CertificateSpec } from './manifest.ts';
export { AGENT_EXIT, exitCodeFor, exitCodeOf } from './exit-codes.ts';
export { DEPLOY_STEPS, type DeployStep } from './generation-store.ts';
export { parseTemplate, discoverTemplates, type DeployTemplate } from './deploy-templates.ts';
