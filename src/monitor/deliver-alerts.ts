/**
 * Alert channels (email over SMTP with nodemailer; webhooks with JSON or a Slack-compatible
 * payload) and the delivery of one run's alerts with dedupe (alert-state.ts) and the daily digest.
 * Every send is bounded by a timeout; a failed channel is reported and retried on the next run.
 */
import fs from 'node:fs';
import nodemailer from 'nodemailer';
import { parseDuration } from '../core/duration.ts';
import { MutualError } from '../core/errors.ts';
import { createFetchBytes } from '../sdk/index.ts';
import { applyPlan, planChannel, type AlertState, type ChannelPlan, type SentEntry } from './alert-state.ts';
import type { Finding, Severity } from './finding.ts';
import type { EmailConfig, MonitorConfig, WebhookConfig } from './monitor-config.ts';

/** Most findings written out one by one in a message; the rest are counted. */
export const MAX_FINDINGS_PER_MESSAGE = 200;
/** Most Slack blocks (Slack accepts 50 per message). */
export const MAX_SLACK_BLOCKS = 45;
/** Largest webhook answer read (it is drained, not used). */
export const MAX_WEBHOOK_RESPONSE_BYTES = 64 * 1024;

/** One message to the channels. */
export interface AlertMessage {
  type: 'alert' | 'digest';
  at: Date;
  findings: Finding[];
  resolved: (SentEntry & { id: string })[];
  /** Counts over the whole scan (for the digest and the subject). */
  counts: Record<Severity, number>;
}

/** A place alerts go. */
export interface AlertChannel {
  /** Key in the state file (email, webhook-0, or the webhook's name). */
  id: string;
  send(message: AlertMessage): Promise<void>;
}

const line = (f: Finding): string => `${f.severity.toUpperCase().padEnd(8)} ${f.kind.padEnd(18)} ${f.subject}`;

/** The subject and plain-text body of a message. */
export function renderAlertText(m: AlertMessage, prefix = '[mutual]'): { subject: string; text: string } {
  const crit = m.findings.filter((f) => f.severity === 'critical').length;
  const warn = m.findings.filter((f) => f.severity === 'warning').length;
  const first = m.findings[0];
  let subject: string;
  if (m.type === 'digest') {
    subject = `${prefix} daily digest: ${m.counts.critical} critical, ${m.counts.warning} warning`;
  } else if (first) {
    subject = `${prefix} ${crit ? 'CRITICAL' : 'WARNING'}: ${first.message}${m.findings.length > 1 ? ` (+${m.findings.length - 1} more)` : ''}`;
  } else {
    subject = `${prefix} resolved: ${m.resolved.length} problem${m.resolved.length === 1 ? '' : 's'} gone`;
  }
  if (subject.length > 200) subject = subject.slice(0, 197) + '...';
  const out: string[] = [];
  out.push(m.type === 'digest'
    ? `mutual monitor daily digest, ${m.at.toISOString()}: ${m.findings.length ? `${m.findings.length} open problem(s)` : 'no open problems'}.`
    : `mutual monitor, ${m.at.toISOString()}: ${m.findings.length} new or worse problem(s) (${crit} critical, ${warn} warning).`);
  out.push('');
  for (const f of m.findings.slice(0, MAX_FINDINGS_PER_MESSAGE)) {
    out.push(line(f));
    out.push(`  ${f.message}`);
    const facts = [f.serial && `serial ${f.serial}`, f.issuer && `issuer ${f.issuer}`, `source ${f.source}`, `code ${f.code}`].filter(Boolean).join(', ');
    out.push(`  ${facts}`);
    out.push(`  fix: ${f.fix}`);
    out.push('');
  }
  if (m.findings.length > MAX_FINDINGS_PER_MESSAGE) out.push(`... and ${m.findings.length - MAX_FINDINGS_PER_MESSAGE} more (see \`mutual monitor once --json\`).`, '');
  if (m.resolved.length) {
    out.push('Resolved since the last alert:');
    for (const r of m.resolved.slice(0, MAX_FINDINGS_PER_MESSAGE)) out.push(`  ${r.kind.padEnd(18)} ${r.subject}`);
    out.push('');
  }
  return { subject, text: out.join('\n') };
}

const findingJson = (f: Finding) => ({ ...f, notAfter: f.notAfter?.toISOString() });

/** mutual's JSON webhook payload. */
export function jsonPayload(m: AlertMessage): Record<string, unknown> {
  return {
    type: `mutual.monitor.${m.type}`, at: m.at.toISOString(), counts: m.counts,
    findings: m.findings.slice(0, MAX_FINDINGS_PER_MESSAGE).map(findingJson), truncated: Math.max(0, m.findings.length - MAX_FINDINGS_PER_MESSAGE),
    resolved: m.resolved.map((r) => ({ id: r.id, kind: r.kind, subject: r.subject, level: r.level })),
  };
}

/** A Slack incoming-webhook payload (`text` plus mrkdwn section blocks). */
export function slackPayload(m: AlertMessage): Record<string, unknown> {
  const { subject } = renderAlertText(m, 'mutual:');
  const blocks: Record<string, unknown>[] = [{ type: 'header', text: { type: 'plain_text', text: subject.slice(0, 150) } }];
  for (const f of m.findings.slice(0, MAX_SLACK_BLOCKS - 3)) {
    const icon = f.severity === 'critical' ? ':red_circle:' : ':large_yellow_circle:';
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `${icon} *${f.kind}* \`${f.subject}\`\n${f.message}\n_fix:_ ${f.fix}`.slice(0, 3000) } });
  }
  if (m.findings.length > MAX_SLACK_BLOCKS - 3) blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `... and ${m.findings.length - (MAX_SLACK_BLOCKS - 3)} more` }] });
  if (m.resolved.length) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `:white_check_mark: resolved: ${m.resolved.map((r) => `\`${r.subject}\` (${r.kind})`).join(', ')}`.slice(0, 3000) } });
  return { text: subject, blocks };
}

function smtpPassword(auth: NonNullable<EmailConfig['auth']>, env: NodeJS.ProcessEnv): string {
  if (auth.passwordFile) return fs.readFileSync(auth.passwordFile, 'utf8').replace(/\r?\n$/, '');
  const v = env[auth.passwordEnv];
  if (v) return v;
  throw new MutualError('CONFIG_INVALID', { detail: `alerts.email.auth: no password (set passwordFile, or $${auth.passwordEnv})` });
}

/** An email channel. */
export function emailChannel(cfg: EmailConfig, env: NodeJS.ProcessEnv = process.env): AlertChannel {
  return {
    id: 'email',
    async send(m) {
      const timeout = parseDuration(cfg.timeout);
      const transport = nodemailer.createTransport({
        host: cfg.host, port: cfg.port, secure: cfg.tls === 'implicit', requireTLS: cfg.tls === 'starttls', ignoreTLS: cfg.tls === 'none',
        auth: cfg.auth ? { user: cfg.auth.user, pass: smtpPassword(cfg.auth, env) } : undefined,
        tls: { ca: cfg.ca ? fs.readFileSync(cfg.ca) : undefined, rejectUnauthorized: cfg.rejectUnauthorized, servername: cfg.host },
        connectionTimeout: timeout, greetingTimeout: timeout, socketTimeout: timeout,
      });
      try {
        const { subject, text } = renderAlertText(m, cfg.subjectPrefix);
        await transport.sendMail({ from: cfg.from, to: cfg.to, subject, text });
      } finally {
        transport.close();
      }
    },
  };
}

/** POSTs JSON; resolves on a 2xx answer (the SDK's bounded fetcher: one deadline, a size limit). */
export async function postJson(url: string, body: unknown, o: { timeoutMs: number; headers?: Record<string, string>; ca?: Buffer }): Promise<void> {
  const fetchBytes = createFetchBytes({ ca: o.ca, timeoutMs: o.timeoutMs, userAgent: 'mutual-monitor' });
  const r = await fetchBytes(url, {
    method: 'POST', body: Buffer.from(JSON.stringify(body)), contentType: 'application/json', headers: o.headers, maxBytes: MAX_WEBHOOK_RESPONSE_BYTES,
  });
  if (r.status < 200 || r.status >= 300) throw new MutualError('MONITOR_ALERT_FAILED', { detail: `HTTP ${r.status} from ${new URL(url).host}` });
}

/** A webhook channel. */
export function webhookChannel(cfg: WebhookConfig, index: number, env: NodeJS.ProcessEnv = process.env): AlertChannel {
  return {
    id: cfg.name ?? `webhook-${index}`,
    async send(m) {
      const url = cfg.url ?? env[cfg.urlEnv!];
      if (!url) throw new MutualError('CONFIG_INVALID', { detail: `alerts.webhooks[${index}]: $${cfg.urlEnv} is not set` });
      await postJson(url, cfg.format === 'slack' ? slackPayload(m) : jsonPayload(m), {
        timeoutMs: parseDuration(cfg.timeout), headers: cfg.headers, ca: cfg.ca ? fs.readFileSync(cfg.ca) : undefined,
      });
    },
  };
}

/** The channels of a config. */
export function createChannels(alerts: MonitorConfig['alerts'], env: NodeJS.ProcessEnv = process.env): AlertChannel[] {
  const out: AlertChannel[] = [];
  if (alerts.email) out.push(emailChannel(alerts.email, env));
  alerts.webhooks.forEach((w, i) => out.push(webhookChannel(w, i, env)));
  return out;
}

/** How one channel fared. */
export interface DeliveryResult {
  channel: string;
  type: 'alert' | 'digest';
  ok: boolean;
  /** Findings alerted, and resolved notices. */
  sent: number;
  resolved: number;
  error?: string;
}

/** Options of {@link deliverAlerts}. */
export interface DeliverAlertsOptions {
  findings: Finding[];
  counts: Record<Severity, number>;
  alerts: MonitorConfig['alerts'];
  channels: readonly AlertChannel[];
  state: AlertState;
  now: Date;
}

/** True when the daily digest is due at `now`. */
export function digestDue(at: string, lastDigest: string | undefined, now: Date): boolean {
  const today = now.toISOString().slice(0, 10);
  return lastDigest !== today && now.toISOString().slice(11, 16) >= at;
}

/**
 * Sends what each channel has not been told yet, and the digest when it is due. Returns the new
 * state (to be written by the caller) and how each channel fared; never throws for a channel.
 */
export async function deliverAlerts(o: DeliverAlertsOptions): Promise<{ state: AlertState; results: DeliveryResult[] }> {
  const state: AlertState = { ...o.state, channels: { ...o.state.channels } };
  const results: DeliveryResult[] = [];
  const min = o.alerts.minSeverity;
  await Promise.all(o.channels.map(async (ch) => {
    const plan: ChannelPlan = planChannel(o.findings, state.channels[ch.id], min);
    const resolved = o.alerts.resolved ? plan.resolved : [];
    if (plan.alert.length === 0 && resolved.length === 0) {
      // Forget what has gone even when nobody is told.
      state.channels[ch.id] = applyPlan(state.channels[ch.id], { alert: [], resolved: plan.resolved }, o.now);
      return;
    }
    try {
      await ch.send({ type: 'alert', at: o.now, findings: plan.alert, resolved, counts: o.counts });
      state.channels[ch.id] = applyPlan(state.channels[ch.id], plan, o.now);
      results.push({ channel: ch.id, type: 'alert', ok: true, sent: plan.alert.length, resolved: resolved.length });
    } catch (e) {
      results.push({ channel: ch.id, type: 'alert', ok: false, sent: 0, resolved: 0, error: (e as Error).message });
    }
  }));
  const digest = o.alerts.digest;
  if (digest && o.channels.length && digestDue(digest.at, state.lastDigest, o.now)) {
    const open = o.findings.filter((f) => f.severity !== 'info');
    if (open.length || digest.whenHealthy) {
      let allOk = true;
      await Promise.all(o.channels.map(async (ch) => {
        try {
          await ch.send({ type: 'digest', at: o.now, findings: open, resolved: [], counts: o.counts });
          results.push({ channel: ch.id, type: 'digest', ok: true, sent: open.length, resolved: 0 });
        } catch (e) {
          allOk = false;
          results.push({ channel: ch.id, type: 'digest', ok: false, sent: 0, resolved: 0, error: (e as Error).message });
        }
      }));
      if (allOk) state.lastDigest = o.now.toISOString().slice(0, 10);
    }
  }
  return { state, results };
}
