import fs from 'node:fs/promises';
import path from 'node:path';

type ProfileNode = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] };
type CpuProfile = { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };

/**
 * Where the server spent its CPU time, from the .cpuprofile V8 wrote on exit (`--cpu-prof`):
 * self time by function, and by source file, the biggest first.
 */
export async function summarizeProfile(dir: string, root: string, top = 15): Promise<string> {
  const file = (await fs.readdir(dir)).find((f) => f.endsWith('.cpuprofile'));
  if (!file) return `no CPU profile was written to ${dir}`;
  const profile = JSON.parse(await fs.readFile(path.join(dir, file), 'utf8')) as CpuProfile;
  const byNode = new Map(profile.nodes.map((n) => [n.id, n]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    const frame = byNode.get(id)!.callFrame;
    const where = frame.url ? shortUrl(frame.url, root) : '(native)';
    const name = `${frame.functionName || '(anonymous)'} ${where}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    byFile.set(where, (byFile.get(where) ?? 0) + us);
    total += us;
  });
  const ranked = (m: Map<string, number>) =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => `  ${((us / total) * 100).toFixed(1).padStart(5)}%  ${(us / 1e6).toFixed(1).padStart(6)} s  ${k}`);
  return [
    `CPU profile of PACS-lite (${path.join(dir, file)}), ${(total / 1e6).toFixed(1)} s sampled over the server's life`,
    'self time by function:',
    ...ranked(byFunction),
    'self time by file:',
    ...ranked(byFile),
  ].join('\n');
}

function shortUrl(url: string, root: string): string {
  const local = url.replace(/^file:\/\//, '');
  return local.startsWith(root) ? path.relative(root, local) : local;
}
