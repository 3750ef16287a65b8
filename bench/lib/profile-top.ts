/**
 * Summarizes a V8 CPU profile (`node --cpu-prof`): self time by function and by file, the top
 * entries, as a share of all samples. `node bench/lib/profile-top.ts file.cpuprofile [top]`.
 */
import fs from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time (microseconds) by function and by file of a profile. */
export function selfTimes(p: Profile): { total: number; byFunction: Map<string, number>; byFile: Map<string, number> } {
  const nodes = new Map(p.nodes.map((n) => [n.id, n]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    const f = nodes.get(id)!.callFrame;
    const file = f.url ? f.url.replace(/^file:\/\/.*?\/(src|bench|test|node_modules)\//, '$1/') : `(${f.functionName || 'native'})`;
    const fn = `${f.functionName || '(anonymous)'} ${file}${f.url ? `:${f.lineNumber + 1}` : ''}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + dt);
    byFile.set(file, (byFile.get(file) ?? 0) + dt);
    total += dt;
  });
  return { total, byFunction, byFile };
}

if (import.meta.main) {
  const [file, topText] = process.argv.slice(2);
  const top = Number(topText ?? 25);
  const t = selfTimes(JSON.parse(fs.readFileSync(file, 'utf8')) as Profile);
  const show = (title: string, m: Map<string, number>) => {
    process.stdout.write(`\n${title} (self time, of ${(t.total / 1000).toFixed(0)} ms)\n`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${((v / t.total) * 100).toFixed(1).padStart(5)}%  ${k}\n`);
  };
  show('by function', t.byFunction);
  show('by file', t.byFile);
}
