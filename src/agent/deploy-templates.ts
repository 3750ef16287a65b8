/**
 * Metadata-driven deployment: files in a watched folder declare their own target in a header, and
 * their body, with placeholders filled from the managed material, is written there. Adding a file
 * adds a deployment; agent.yaml does not change.
 *
 * ```
 * # deploy-target: /etc/haproxy/certs/api.pem
 * # owner: haproxy
 * # mode: 0600
 * # check: haproxy -c -f /etc/haproxy/haproxy.cfg
 * # reload: systemctl reload haproxy
 * {{fullchain api}}
 * {{key api}}
 * ```
 *
 * Header lines come first, one `# key: value` each (keys below; `#` lines without a `key:` are
 * comments). The body starts at the first line that does not begin with `#`. Placeholders:
 * `{{cert NAME}}`, `{{key NAME}}`, `{{chain NAME}}`, `{{fullchain NAME}}` (a certificate of
 * agent.yaml), `{{bundle root,client-ca}}` (CA certificates), `{{crl root,client}}` (CRLs as PEM).
 */
import fs from 'node:fs';
import path from 'node:path';
import { MutualError } from '../core/errors.ts';
import { resolveId, type CommandSpec, type Ownership, type ReloadSpec, type BundlePart, type CrlIssuer } from './manifest.ts';

/** Largest deployment file read. */
export const MAX_TEMPLATE_BYTES = 256 * 1024;
/** Most deployment files in the watched folder. */
export const MAX_TEMPLATES = 256;
/** Most header lines. */
export const MAX_HEADER_LINES = 32;
/** Most placeholders in one file. */
export const MAX_PLACEHOLDERS = 64;

/** Header keys a deployment file may use. */
export const HEADER_KEYS = ['deploy-target', 'owner', 'group', 'mode', 'check', 'reload', 'reload-signal', 'pid-file', 'command-timeout'] as const;

/** A placeholder found in a body. */
export type Placeholder =
  | { kind: 'cert' | 'key' | 'chain' | 'fullchain'; certificate: string }
  | { kind: 'bundle'; parts: BundlePart[] }
  | { kind: 'crl'; issuers: CrlIssuer[] };

/** A parsed deployment file. */
export interface DeployTemplate {
  /** The file in the watched folder. */
  file: string;
  target: string;
  ownership: { uid?: number; gid?: number; mode?: number };
  check?: CommandSpec;
  reload?: ReloadSpec;
  timeoutMs?: number;
  body: string;
  placeholders: Placeholder[];
}

const PLACEHOLDER_RE = /\{\{\s*([a-z]+)\s+([A-Za-z0-9._,-]+)\s*\}\}/g;
const CERT_KINDS = new Set(['cert', 'key', 'chain', 'fullchain']);
const BUNDLE_PARTS = new Set<string>(['root', 'server-ca', 'client-ca']);
const CRL_ISSUERS = new Set<string>(['root', 'server', 'client']);

/** Parses a deployment file's text. Throws AGENT_TEMPLATE_INVALID naming the file and line. */
export function parseTemplate(text: string, file: string): DeployTemplate {
  const bad = (line: number | undefined, why: string): never => {
    throw new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${file}${line ? `:${line}` : ''}: ${why}` });
  };
  if (text.length > MAX_TEMPLATE_BYTES) bad(undefined, `larger than ${MAX_TEMPLATE_BYTES} bytes`);
  if (text.includes('\0')) bad(undefined, 'binary files cannot carry a header; put the content in agent.yaml instead');
  const lines = text.split('\n');
  const header = new Map<string, { value: string; line: number }>();
  let i = 0;
  for (; i < lines.length && lines[i].startsWith('#'); i++) {
    if (i >= MAX_HEADER_LINES) bad(i + 1, `more than ${MAX_HEADER_LINES} header lines`);
    const m = /^#\s*([A-Za-z][A-Za-z0-9-]*)\s*:\s*(.*?)\s*$/.exec(lines[i].replace(/\r$/, ''));
    if (!m) continue;
    const key = m[1].toLowerCase();
    if (!(HEADER_KEYS as readonly string[]).includes(key)) bad(i + 1, `unknown header key "${key}" (known: ${HEADER_KEYS.join(', ')})`);
    if (header.has(key)) bad(i + 1, `"${key}" is given twice`);
    if (!m[2]) bad(i + 1, `"${key}" has no value`);
    header.set(key, { value: m[2], line: i + 1 });
  }
  const target = header.get('deploy-target');
  if (!target) bad(1, 'no "# deploy-target: /absolute/path" header line');
  if (!path.isAbsolute(target!.value) || target!.value.includes('\0') || target!.value.endsWith('/')) bad(target!.line, 'deploy-target must be an absolute file path');
  const opt = (k: string) => header.get(k);
  const ownership: DeployTemplate['ownership'] = {};
  for (const [k, kind] of [['owner', 'user'], ['group', 'group']] as const) {
    const h = opt(k);
    if (!h) continue;
    try {
      ownership[kind === 'user' ? 'uid' : 'gid'] = resolveId(kind, h.value);
    } catch (e) {
      bad(h.line, (e as MutualError).fields.detail!);
    }
  }
  const mode = opt('mode');
  if (mode) {
    if (!/^0?[0-7]{3,4}$/.test(mode.value) || parseInt(mode.value, 8) & 0o7000) bad(mode.line, `mode must be octal like 0640, without setuid/setgid/sticky bits (got ${mode.value})`);
    ownership.mode = parseInt(mode.value, 8);
  }
  const check = opt('check');
  const reload = opt('reload');
  const signal = opt('reload-signal');
  const pidFile = opt('pid-file');
  if (reload && signal) bad(signal.line, 'give reload (a command) or reload-signal with pid-file, not both');
  if (signal && !pidFile) bad(signal.line, 'reload-signal needs a pid-file line');
  if (pidFile && !signal) bad(pidFile.line, 'pid-file goes with a reload-signal line');
  let reloadSpec: ReloadSpec | undefined = reload && { shell: reload.value };
  if (signal) {
    const name = (signal.value.startsWith('SIG') ? signal.value : `SIG${signal.value}`).toUpperCase();
    if (!['SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGWINCH'].includes(name)) bad(signal.line, `unsupported signal ${signal.value}`);
    if (!path.isAbsolute(pidFile!.value)) bad(pidFile!.line, 'pid-file must be an absolute path');
    reloadSpec = { signal: name as NodeJS.Signals, pidFile: pidFile!.value };
  }
  let timeoutMs: number | undefined;
  const t = opt('command-timeout');
  if (t) {
    const m = /^(\d{1,6})(ms|s|m)$/.exec(t.value);
    if (!m) bad(t.line, 'command-timeout must look like 30s');
    timeoutMs = Number(m![1]) * { ms: 1, s: 1000, m: 60_000 }[m![2] as 'ms' | 's' | 'm'];
  }
  // One blank line may separate the header from the body.
  const start = i < lines.length && lines[i].trim() === '' && header.size > 0 ? i + 1 : i;
  const body = lines.slice(start).join('\n');
  const placeholders: Placeholder[] = [];
  for (const m of body.matchAll(PLACEHOLDER_RE)) {
    if (placeholders.length >= MAX_PLACEHOLDERS) bad(undefined, `more than ${MAX_PLACEHOLDERS} placeholders`);
    const line = start + body.slice(0, m.index).split('\n').length;
    const [kind, arg] = [m[1], m[2]];
    if (CERT_KINDS.has(kind)) placeholders.push({ kind: kind as 'cert', certificate: arg });
    else if (kind === 'bundle') {
      const parts = arg.split(',');
      if (!parts.every((p) => BUNDLE_PARTS.has(p))) bad(line, `{{bundle ${arg}}}: use root, server-ca, client-ca (comma-separated)`);
      placeholders.push({ kind: 'bundle', parts: parts as BundlePart[] });
    } else if (kind === 'crl') {
      const issuers = arg.split(',');
      if (!issuers.every((p) => CRL_ISSUERS.has(p))) bad(line, `{{crl ${arg}}}: use root, server, client (comma-separated)`);
      placeholders.push({ kind: 'crl', issuers: issuers as CrlIssuer[] });
    } else bad(line, `unknown placeholder {{${kind} ...}} (known: cert, key, chain, fullchain, bundle, crl)`);
  }
  // Placeholders hold no newline, so line numbers survive their removal.
  const rest = body.replace(PLACEHOLDER_RE, '');
  const k = rest.indexOf('{{');
  if (k >= 0) bad(start + rest.slice(0, k).split('\n').length, 'malformed placeholder: write {{kind argument}}, e.g. {{fullchain api}}');
  return { file, target: target!.value, ownership, check: check && { shell: check.value }, reload: reloadSpec, timeoutMs, body, placeholders };
}

/** The material placeholders are filled from. Returns undefined when something is not there yet. */
export interface TemplateMaterial {
  certificate(name: string, kind: 'cert' | 'key' | 'chain' | 'fullchain'): string | undefined;
  bundle(parts: BundlePart[]): string | undefined;
  crls(issuers: CrlIssuer[]): string | undefined;
}

/** Fills the placeholders. Returns undefined when some material is not available yet. */
export function renderTemplate(t: DeployTemplate, m: TemplateMaterial): string | undefined {
  let missing = false;
  const value = (kind: string, arg: string): string => {
    let v: string | undefined;
    if (CERT_KINDS.has(kind)) v = m.certificate(arg, kind as 'cert');
    else if (kind === 'bundle') v = m.bundle(arg.split(',') as BundlePart[]);
    else v = m.crls(arg.split(',') as CrlIssuer[]);
    if (v === undefined) missing = true;
    return v ?? '';
  };
  // A placeholder alone on its line takes the line's newline with it: PEM already ends in one.
  const out = t.body
    .replace(/^[ \t]*\{\{\s*([a-z]+)\s+([A-Za-z0-9._,-]+)\s*\}\}[ \t]*\r?\n/gm, (_s, kind: string, arg: string) => value(kind, arg))
    .replace(PLACEHOLDER_RE, (_s, kind: string, arg: string) => value(kind, arg).replace(/\n$/, ''));
  return missing ? undefined : out;
}

/** The default mode of a rendered file: 0600 when it holds a key, else 0644. */
export function templateOwnership(t: DeployTemplate): Ownership {
  const secret = t.placeholders.some((p) => p.kind === 'key');
  return { uid: t.ownership.uid, gid: t.ownership.gid, mode: t.ownership.mode ?? (secret ? 0o600 : 0o644) };
}

/** Lists and parses the deployment files of a folder; a bad file is returned as its error. */
export function discoverTemplates(dir: string): { templates: DeployTemplate[]; errors: MutualError[] } {
  const templates: DeployTemplate[] = [];
  const errors: MutualError[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => !n.startsWith('.') && !n.endsWith('~') && !/\.(swp|dpkg-\w+|rpmnew|rpmsave|bak)$/.test(n)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { templates, errors };
    return { templates, errors: [new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${dir}: ${(e as Error).message}` })] };
  }
  const targets = new Map<string, string>();
  for (const n of names) {
    const file = path.join(dir, n);
    try {
      const st = fs.statSync(file);
      if (!st.isFile()) continue;
      if (templates.length >= MAX_TEMPLATES) throw new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${dir}: more than ${MAX_TEMPLATES} files; the rest are ignored` });
      if (st.size > MAX_TEMPLATE_BYTES) throw new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${file}: larger than ${MAX_TEMPLATE_BYTES} bytes` });
      const t = parseTemplate(fs.readFileSync(file, 'utf8'), file);
      const other = targets.get(t.target);
      if (other) throw new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${file}: deploy-target ${t.target} is already written by ${other}` });
      targets.set(t.target, file);
      templates.push(t);
    } catch (e) {
      if (e instanceof MutualError) errors.push(e);
      else errors.push(new MutualError('AGENT_TEMPLATE_INVALID', { detail: `${file}: ${(e as Error).message}` }));
    }
  }
  return { templates, errors };
}
