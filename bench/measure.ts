import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { checkInterrupted } from './interrupt.js';

export type Latency = {
  /** The first call, before any cache of the server is warm. */
  firstMs: number;
  medianMs: number;
  p95Ms: number;
  /** Timed calls after the first. */
  n: number;
  samplesMs: number[];
};

/**
 * Calls `once` sequentially: first on its own, then up to `reps` times or until `seconds` have passed
 * (at least 3 timed calls), and never more than `maxCalls` calls in all, the first included (a line that
 * must ask for a different file each time has only so many). `once` returns the duration of its request
 * and throws on a wrong answer, so a fast error can never pass for a fast answer.
 */
export async function latency(once: (i: number) => Promise<number>, reps: number, seconds: number, maxCalls = Number.POSITIVE_INFINITY): Promise<Latency> {
  if (maxCalls < 2) throw new Error(`a latency line needs at least 2 calls (one untimed, one timed), and this one may make only ${maxCalls}`);
  const firstMs = await once(0);
  const samplesMs: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  // Back to back, as a viewer's bursts are: a pause between calls would time the wake-up of an idle server too.
  for (let i = 1; i <= reps && i < maxCalls && (samplesMs.length < 3 || performance.now() < deadline); i++) samplesMs.push(await once(i));
  return latencyOf(firstMs, samplesMs);
}

/**
 * Calls each line's `once(i)` in turn for i = 0 … calls − 1, so that the machine's other work falls on every line
 * alike; call 0 of each line is untimed (codec workers starting, the tool's libraries first loaded).
 */
export async function interleaved<K extends string>(calls: number, lines: Record<K, (i: number) => Promise<number>>): Promise<Record<K, Latency>> {
  const keys = Object.keys(lines) as K[];
  const first = new Map<K, number>();
  const samples = new Map<K, number[]>(keys.map((k) => [k, []]));
  for (let i = 0; i < calls; i++) {
    checkInterrupted();
    for (const k of keys) {
      const ms = await lines[k](i);
      if (i === 0) first.set(k, ms);
      else samples.get(k)!.push(ms);
    }
  }
  return Object.fromEntries(keys.map((k) => [k, latencyOf(first.get(k)!, samples.get(k)!)])) as Record<K, Latency>;
}

/** The untimed first call and the timed ones, summarized. */
export function latencyOf(firstMs: number, samplesMs: number[]): Latency {
  return { firstMs, medianMs: percentile(samplesMs, 0.5), p95Ms: percentile(samplesMs, 0.95), n: samplesMs.length, samplesMs };
}

/** Nearest-rank percentile. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN;
}

export type RssReport = { peakMB: number; sampledPeakMB: number; samples: number };

/**
 * Samples a process's resident memory every `everyMs`. The kernel's own high-water mark (VmHWM) is read at
 * the end too, so a peak between two samples is not missed.
 */
export function sampleRss(pid: number, everyMs = 100): { stop(): Promise<RssReport> } {
  let sampledPeakKb = 0;
  let samples = 0;
  const timer = setInterval(() => {
    void statusField(pid, 'VmRSS').then((kb) => {
      sampledPeakKb = Math.max(sampledPeakKb, kb);
      samples++;
    }, () => undefined);
  }, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      const hwmKb = await statusField(pid, 'VmHWM');
      return { peakMB: Math.max(hwmKb, sampledPeakKb) / 1024, sampledPeakMB: sampledPeakKb / 1024, samples };
    },
  };
}

/** Resets the kernel's peak-RSS mark, so that VmHWM covers only what follows (proc(5): clear_refs, value 5). */
export async function resetPeakRss(pid: number): Promise<void> {
  await fs.writeFile(`/proc/${pid}/clear_refs`, '5').catch(() => undefined);
}

/** A field of /proc/<pid>/status in kB (VmRSS, VmHWM). */
export async function statusField(pid: number, field: string): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (!match) throw new Error(`no ${field} for process ${pid}`);
  return Number(match[1]);
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** User + system CPU seconds a process has used so far (proc(5), /proc/pid/stat fields 14 and 15). */
export async function cpuSeconds(pid: number): Promise<number> {
  return statCpuSeconds(await fs.readFile(`/proc/${pid}/stat`, 'utf8'));
}

/**
 * CPU seconds used so far by a process's threads: the main thread apart, the others summed by thread
 * name (Node's file-system pool and V8's helpers are all "node"). Shows which part of a server is busy.
 */
export async function cpuSecondsByThread(pid: number): Promise<Record<string, number>> {
  const byName: Record<string, number> = {};
  for (const task of await fs.readdir(`/proc/${pid}/task`).catch(() => [])) {
    const stat = await fs.readFile(`/proc/${pid}/task/${task}/stat`, 'utf8').catch(() => undefined);
    if (!stat) continue; // the thread ended meanwhile
    const name = task === String(pid) ? 'main thread' : `${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))} threads`;
    byName[name] = (byName[name] ?? 0) + statCpuSeconds(stat);
  }
  return byName;
}

function statCpuSeconds(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

export type MachineCpu = { busyPercent: number; iowaitPercent: number };

/**
 * Starts watching the whole machine's CPU (proc(5), first line of /proc/stat): how busy all cores were,
 * and how much they waited on the disk, over the phase. Tells a saturated machine from a waiting server.
 */
export async function watchMachineCpu(): Promise<{ stop(): Promise<MachineCpu> }> {
  const read = async () => {
    const line = (await fs.readFile('/proc/stat', 'utf8')).split('\n')[0]!;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
    return { total: user! + nice! + system! + idle! + iowait! + irq! + softirq! + steal!, idle: idle!, iowait: iowait! };
  };
  const before = await read();
  return {
    async stop() {
      const after = await read();
      const total = after.total - before.total || 1;
      const idle = after.idle - before.idle;
      const iowait = after.iowait - before.iowait;
      return { busyPercent: (100 * (total - idle - iowait)) / total, iowaitPercent: (100 * iowait) / total };
    },
  };
}

/** Flushes dirty pages left by an earlier phase, so that they are not written back during the next one. */
export function syncDisks(): void {
  execFileSync('sync');
}
