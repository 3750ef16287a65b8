/**
 * The watched folder's deployment files in a cycle: each is rendered (from the certificates in
 * place, or from a certificate's new generation when it is deployed in this cycle, and from the
 * trust cache), and the ones that differ from their target become changes to deploy.
 */
import fs from 'node:fs';
import path from 'node:path';
import { MutualError } from '../core/errors.ts';
import { asError, codeOf, type AgentContext, type Cycle, type TemplateOutcome } from './cycle-report.ts';
import type { Change, FileChange } from './deploy.ts';
import { discoverTemplates, renderTemplate, templateOwnership, type DeployTemplate } from './deploy-templates.ts';
import { GENERATION_FILES, targetsOf } from './generation-store.ts';
import { DEFAULT_COMMAND_TIMEOUT_MS } from './manifest.ts';
import { isSame, readPrevious } from './owned-file.ts';

/** A certificate deployed in this cycle: its new generation's folder and the one a rollback returns to. */
export interface Planned {
  to: string;
  from?: string;
}

/** Renders the watched folder's deployment files; those that changed are added to `changes`. */
export function templateChanges(ctx: AgentContext, cx: Cycle, changes: Change[], planned: Map<string, Planned>): TemplateOutcome[] {
  const m = ctx.manifest;
  const dir = m.templatesDir;
  if (!dir) return [];
  const { templates, errors } = discoverTemplates(dir);
  const out: TemplateOutcome[] = [];
  for (const e of errors) {
    cx.errors.push(e);
    out.push({ file: String(e.fields.detail ?? '').split(':')[0], action: 'failed', ok: false, code: e.code, message: e.message });
    ctx.log.error({ code: e.code, err: e.message }, 'invalid deployment file');
  }
  const claimed = new Set<string>([
    ...m.certificates.flatMap((c) => targetsOf(c.files).map((t) => t.path)),
    ...m.trust.bundles.map((b) => b.path), ...m.trust.crls.map((c) => c.path),
  ]);
  const names = new Set(m.certificates.map((c) => c.name));
  for (const t of templates) {
    const o: TemplateOutcome = { file: t.file, target: t.target, action: 'none', ok: true };
    out.push(o);
    try {
      const change = templateChange(ctx, cx, t, o, claimed, names, planned);
      if (change) changes.push(change);
      else cx.state.templates[t.file] = { ok: true, at: cx.now.toISOString(), action: o.action };
    } catch (e) {
      recordTemplateResult(ctx, cx, o, e);
    }
  }
  return out;
}

/** Records a deployment file's result once its unit is deployed (`error` undefined) or failed. */
export function recordTemplateResult(ctx: AgentContext, cx: Cycle, t: TemplateOutcome, error: unknown): void {
  if (!error) {
    t.action = 'written';
    cx.state.templates[t.file] = { ok: true, at: cx.now.toISOString(), action: 'written' };
    ctx.log.info({ file: t.file, target: t.target }, 'deployed a file from the watched folder');
    return;
  }
  cx.errors.push(error);
  Object.assign(t, { action: 'failed', ok: false, code: codeOf(error), message: asError(error).message });
  cx.state.templates[t.file] = { ok: false, at: cx.now.toISOString(), action: 'failed', code: codeOf(error), message: asError(error).message };
  ctx.log.error({ file: t.file, code: codeOf(error), err: asError(error).message }, 'could not deploy a file from the watched folder; the file in place was kept');
}

function templateChange(ctx: AgentContext, cx: Cycle, t: DeployTemplate, out: TemplateOutcome, claimed: Set<string>, names: Set<string>, planned: Map<string, Planned>): FileChange | undefined {
  if (claimed.has(t.target)) throw new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${t.file}: deploy-target ${t.target} is already managed by agent.yaml` });
  const stateDir = ctx.manifest.stateDir;
  if (t.target === stateDir || t.target.startsWith(stateDir + path.sep)) throw new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${t.file}: deploy-target ${t.target} is inside the agent's state folder` });
  for (const p of t.placeholders) {
    if ('certificate' in p && !names.has(p.certificate)) throw new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${t.file}: {{${p.kind} ${p.certificate}}}: no certificate named ${p.certificate} in agent.yaml` });
  }
  const renders = new Set<string>();
  const render = (side: 'to' | 'from') => renderTemplate(t, {
    certificate: (name, kind) => {
      // A certificate deployed in this cycle is rendered from its new generation (and this file
      // is then deployed and rolled back with it).
      const p = planned.get(name);
      let dir = p?.[side];
      if (p) renders.add(name);
      else {
        const store = ctx.store(name);
        const gen = store.current();
        if (!gen || !store.has(gen)) return undefined;
        dir = path.join(store.dir, gen);
      }
      if (!dir) return undefined;
      try {
        return fs.readFileSync(path.join(dir, GENERATION_FILES[kind]), 'utf8');
      } catch {
        return undefined;
      }
    },
    bundle: (parts) => cx.cache.bundle(parts, cx.now),
    crls: (issuers) => cx.cache.crls(issuers, 'pem', cx.now)?.toString('utf8'),
  });
  const text = render('to');
  if (text === undefined) {
    Object.assign(out, { action: 'waiting', message: 'waiting for the material it names (first enrollment or trust refresh)' });
    return undefined;
  }
  const data = Buffer.from(text);
  const ownership = templateOwnership(t);
  const hooks = { check: t.check, reload: t.reload, timeoutMs: t.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS };
  let prev = readPrevious(t.target);
  if (isSame(prev, data, ownership)) {
    // Already what this cycle deploys: a run stopped after writing it (crash) is being resumed.
    // It still goes with its certificates, so a rollback puts back what the generation they
    // return to renders.
    const back = renders.size ? render('from') : undefined;
    if (back === undefined || back === text) return undefined;
    prev = { path: t.target, data: Buffer.from(back), ownership: prev.ownership };
  }
  return { kind: 'file', path: t.target, data, ownership, prev, hooks, owner: out, renders: [...renders] };
}
