/**
 * The one loader of mutual's YAML config files (the CA's config.yaml, agent.yaml, the monitor's
 * and the gateway's configs): a bounded read, YAML with limits, a zod schema, and every refusal a
 * CONFIG_INVALID that names the file, the field and the line, e.g.
 * `/etc/mutual/agent.yaml: certificates[0] (api).files.key: the key must go somewhere (line 12)`.
 * Four loaders did this each their own way before (one read the whole file before checking its
 * size, one let YAML aliases expand without a bound, none said which line).
 */
import fs from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { MutualError, isMutualError } from '../core/errors.ts';

/**
 * YAML aliases allowed in a config: a bound against alias-expansion ("billion laughs") bombs,
 * generous for the anchors a person writes by hand.
 */
export const MAX_YAML_ALIASES = 50;

/** A config's YAML, parsed, with where each value was written (for messages). */
export interface ConfigYaml {
  /** The file it came from, as given (absent for text that came from elsewhere). */
  file?: string;
  /** The plain value (mappings, lists, scalars). */
  value: unknown;
  /** The 1-based line a field was written on (or its nearest written parent), if known. */
  lineOf(field: readonly PropertyKey[]): number | undefined;
}

/** Options of {@link readConfigFile}. */
export interface ReadConfigFileOptions {
  /** Largest file read, in bytes; a larger one is CONFIG_INVALID before it is read. */
  maxBytes: number;
  /**
   * The error for a file that does not exist (default: CONFIG_INVALID "no such file"). The CA
   * keeps the system error: its callers turn it into CA_NOT_INITIALIZED.
   */
  missing?: (cause: NodeJS.ErrnoException) => Error;
}

/**
 * Reads a config file's text, at most `maxBytes`. The file is opened once and checked through
 * its descriptor (a regular file, not too large), so what is checked is what is read; opened
 * non-blocking so a FIFO put in its place cannot hang the reader. Symlinks are followed (Kubernetes
 * mounts ConfigMaps as symlinks). Throws CONFIG_INVALID naming the file.
 */
export function readConfigFile(file: string, o: ReadConfigFileOptions): string {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw o.missing ? o.missing(err) : invalidAt(file, undefined, 'no such file');
    throw invalidAt(file, undefined, err.message, err);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw invalidAt(file, undefined, 'not a regular file');
    if (st.size > o.maxBytes) throw invalidAt(file, undefined, `larger than ${o.maxBytes} bytes`);
    // The file may grow between fstat and read: read one byte more than allowed to notice.
    const buf = Buffer.alloc(o.maxBytes + 1);
    let n = 0;
    for (let r; n < buf.length && (r = fs.readSync(fd, buf, n, buf.length - n, null)) > 0;) n += r;
    if (n > o.maxBytes) throw invalidAt(file, undefined, `larger than ${o.maxBytes} bytes`);
    return buf.toString('utf8', 0, n);
  } catch (e) {
    if (isMutualError(e)) throw e;
    throw invalidAt(file, undefined, (e as Error).message, e);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Parses a config's YAML: at most {@link MAX_YAML_ALIASES} aliases, duplicate keys refused.
 * Throws CONFIG_INVALID "not valid YAML" naming the file and the line.
 */
export function parseConfigYaml(text: string, file?: string): ConfigYaml {
  const lines = new LineCounter();
  let doc: Document;
  let value: unknown;
  try {
    doc = parseDocument(text, { uniqueKeys: true, lineCounter: lines, prettyErrors: false });
    const bad = doc.errors[0];
    if (bad) {
      throw invalidAt(file, lines.linePos(bad.pos[0]).line, `not valid YAML: ${bad.message.split('\n')[0]}`);
    }
    value = doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (e) {
    if (isMutualError(e)) throw e;
    throw invalidAt(file, undefined, `not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  return {
    file,
    value,
    lineOf(field) {
      // A field that is absent (a required key left out) is reported at its nearest written parent.
      for (let n = field.length; n >= 0; n--) {
        const node = n === 0 ? doc.contents : doc.getIn(field.slice(0, n) as unknown[], true);
        const at = (node as { range?: [number, number, number] } | null | undefined)?.range?.[0];
        if (typeof at === 'number') return lines.linePos(at).line;
      }
      return undefined;
    },
  };
}

/**
 * Validates a config value against a zod schema. The first issue becomes CONFIG_INVALID
 * `<file>: <field>: <why> (line N)`; the file and line only when `yaml` says where the value came
 * from (an object given in code has neither). A value that matched no branch of a union is
 * reported by the branch that got furthest.
 */
export function parseConfigValue<S extends z.ZodType>(schema: S, value: unknown, yaml?: ConfigYaml): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = precise(r.error.issues[0] as Issue);
  throw configInvalid(yaml, issue.path, issue.message, value);
}

/**
 * A CONFIG_INVALID for `field` of a config, naming the file and line when `yaml` is given. Field
 * paths read like the YAML: `routes[0].upstream`, with a list entry's `name` when it has one
 * (`certificates[0] (api).files.key`). `value` is the config value the names are looked up in
 * (default `yaml.value`).
 */
export function configInvalid(yaml: ConfigYaml | undefined, field: readonly PropertyKey[], why: string, value: unknown = yaml?.value): MutualError {
  const detail = `${configFieldPath(field, value)}: ${why}`;
  return invalidAt(yaml?.file, yaml?.lineOf(field), detail);
}

/** Options of {@link loadConfigFile}. */
export interface LoadConfigFileOptions<T> extends ReadConfigFileOptions {
  /**
   * Turns the parsed YAML into the config: a zod parse through {@link parseConfigValue} with
   * `yaml`, then whatever checks and path resolution the config needs. CONFIG_INVALID errors it
   * throws without the file name get it.
   */
  validate: (value: unknown, yaml: ConfigYaml) => T;
}

/** Reads, parses and validates a YAML config file: {@link readConfigFile}, {@link parseConfigYaml}, then `validate`. */
export function loadConfigFile<T>(file: string, o: LoadConfigFileOptions<T>): T {
  const yaml = parseConfigYaml(readConfigFile(file, o), file);
  try {
    return o.validate(yaml.value, yaml);
  } catch (e) {
    if (isMutualError(e) && e.code === 'CONFIG_INVALID' && !(e.fields.detail ?? '').startsWith(`${file}:`)) {
      throw new MutualError('CONFIG_INVALID', { ...e.fields, detail: `${file}: ${e.fields.detail ?? e.message}` }, { cause: e });
    }
    throw e;
  }
}

/** The folder relative paths in a config file are resolved against. */
export function configDir(file: string): string {
  return path.dirname(path.resolve(file));
}

function invalidAt(file: string | undefined, line: number | undefined, detail: string, cause?: unknown): MutualError {
  const where = file === undefined ? '' : `${file}: `;
  const at = line === undefined ? '' : ` (line ${line})`;
  return new MutualError('CONFIG_INVALID', { detail: `${where}${detail}${at}` }, cause === undefined ? undefined : { cause });
}

/**
 * A field's path as a person reads it in the YAML: `routes[0].upstream`, with a list entry's
 * `name` when it has one (`certificates[0] (api).files.key`); `(top level)` for the whole config.
 */
export function configFieldPath(p: readonly PropertyKey[], value: unknown): string {
  let out = '';
  let node: unknown = value;
  for (const k of p) {
    if (typeof k === 'number') {
      out += `[${k}]`;
      node = Array.isArray(node) ? node[k] : undefined;
      const name = (node as { name?: unknown } | undefined)?.name;
      if (typeof name === 'string' && name.length <= 64) out += ` (${name})`;
    } else {
      out += (out ? '.' : '') + String(k);
      node = node && typeof node === 'object' ? (node as Record<string, unknown>)[k as string] : undefined;
    }
  }
  return out || '(top level)';
}

interface Issue {
  code: string;
  path: PropertyKey[];
  message: string;
  errors?: Issue[][];
}

/** For a value that matched no branch of a union, the branch that got furthest says what is wrong. */
function precise(issue: Issue): Issue {
  if (issue.code !== 'invalid_union' || !issue.errors?.length) return issue;
  const branches = issue.errors.map((b) => b[0]).filter((i): i is Issue => i !== undefined).map((i) => precise({ ...i, path: [...issue.path, ...i.path] }));
  // A branch of the wrong type says little ("expected string"); one that got inside the value says what to fix.
  return branches.find((i) => i.code !== 'invalid_type' || i.path.length > issue.path.length) ?? branches[0] ?? issue;
}
