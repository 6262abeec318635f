/**
 * dcmtk's command-line tools, run as a user runs them (a process each), for the cases that compare against them or
 * drive a server with them (transcode.ts, dimse.ts).
 */
import { spawn, spawnSync } from 'node:child_process';

/** What a tool said; dcmtk logs to stderr, answers included (findscu's responses). */
export type ToolOutput = { stdout: string; stderr: string };
type ToolOptions = { cwd?: string; env?: NodeJS.ProcessEnv };

/** Runs a tool to its end; throws unless it exits 0, with the end of what it said. */
export function runTool(tool: string, args: string[], opts: ToolOptions = {}): ToolOutput {
  const r = spawnSync(tool, args, { ...opts, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 * 1024 ** 2 });
  const output = { stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  if (r.error) throw toolError(tool, r.error, output);
  if (r.status !== 0) throw toolError(tool, new Error(`exit ${r.status ?? r.signal}`), output);
  return output;
}

/** Wall time of one run of a tool, from spawn to exit: its process start included, as a user of it pays. */
export function timedRun(tool: string, args: string[], opts: ToolOptions = {}): { ms: number } & ToolOutput {
  const started = performance.now();
  const output = runTool(tool, args, opts);
  return { ms: performance.now() - started, ...output };
}

/** Starts a tool without waiting: `done` resolves once it exits 0 and rejects otherwise; `kill` ends it early. */
export function startTool(tool: string, args: string[], opts: ToolOptions = {}): { done: Promise<ToolOutput>; kill(): void } {
  const child = spawn(tool, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  const done = new Promise<ToolOutput>((resolve, reject) => {
    child.once('error', (e) => reject(toolError(tool, e, { stdout: '', stderr: '' })));
    child.once('close', (status, signal) => {
      const output = { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
      if (status === 0) resolve(output);
      else reject(toolError(tool, new Error(`exit ${status ?? signal}`), output));
    });
  });
  return { done, kill: () => void (child.exitCode === null && child.signalCode === null && child.kill('SIGTERM')) };
}

function toolError(tool: string, e: Error, said: ToolOutput): Error {
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Error(`${tool} is not installed (Debian: apt install dcmtk)`);
  const tail = `${said.stderr}${said.stdout}`.trim().split('\n').slice(-8).join('\n    ');
  return new Error(`${tool} failed (${e.message})${tail ? `:\n    ${tail}` : ''}`);
}
