import fs from 'node:fs/promises';
import { request } from './http.js';
import { percentile, resetPeakRss, sampleRss, statusField } from './measure.js';

/** What a server's process and its health check did over a phase (load.ts). */
export type ServerWatch = {
  seconds: number;
  /** The kernel's high-water mark (VmHWM, reset at the start) or the highest sample, whichever is higher. */
  peakRssMB: number;
  sampledPeakRssMB: number;
  /** Entries of /proc/<pid>/fd: sockets, files, pipes and the event loop's own. */
  peakFds: number;
  medianFds: number;
  /** GET /healthz one after another, a new one 100 ms after the last was sent or as soon as it answers. */
  healthz: { calls: number; p50Ms: number; p99Ms: number; maxMs: number; notOk: number; samplesMs: number[] };
  /** Every 100 ms: seconds since the start, RSS in MB and open descriptors. */
  timeline: Array<[seconds: number, rssMB: number, fds: number]>;
};

const EVERY_MS = 100;
/** A /healthz call longer than this is cut and counted at this length: it missed any target by then. */
const HEALTHZ_TIMEOUT_MS = 60_000;

/**
 * Starts watching a server's process (RSS, open file descriptors) and its `/healthz` every 100 ms, until stop().
 * A stall shows as one long /healthz call, so the longest call is the longest the server kept a probe waiting.
 */
export async function watchServer(pid: number, healthzUrl: string): Promise<{ stop(): Promise<ServerWatch> }> {
  await resetPeakRss(pid);
  const started = performance.now();
  const rss = sampleRss(pid, EVERY_MS);
  const timeline: ServerWatch['timeline'] = [];
  const fdSamples: number[] = [];
  const timer = setInterval(() => {
    void Promise.all([statusField(pid, 'VmRSS'), fs.readdir(`/proc/${pid}/fd`)]).then(
      ([kb, fds]) => {
        fdSamples.push(fds.length);
        timeline.push([Math.round(performance.now() - started) / 1000, Math.round(kb / 1024), fds.length]);
      },
      () => undefined, // the process is gone: its absence shows in the answers
    );
  }, EVERY_MS);

  let stopping = false;
  const healthMs: number[] = [];
  let notOk = 0;
  const probe = (async () => {
    while (!stopping) {
      const sent = performance.now();
      try {
        const reply = await request(healthzUrl, { timeoutMs: HEALTHZ_TIMEOUT_MS });
        healthMs.push(reply.ms);
        if (reply.status !== 200) notOk++;
      } catch {
        healthMs.push(performance.now() - sent);
        notOk++;
      }
      const wait = sent + EVERY_MS - performance.now();
      if (wait > 0 && !stopping) await new Promise((r) => setTimeout(r, wait));
    }
  })();

  return {
    async stop() {
      stopping = true;
      clearInterval(timer);
      await probe;
      const memory = await rss.stop();
      return {
        seconds: (performance.now() - started) / 1000,
        peakRssMB: memory.peakMB,
        sampledPeakRssMB: memory.sampledPeakMB,
        peakFds: Math.max(0, ...fdSamples),
        medianFds: percentile(fdSamples, 0.5),
        healthz: {
          calls: healthMs.length,
          p50Ms: percentile(healthMs, 0.5),
          p99Ms: percentile(healthMs, 0.99),
          maxMs: Math.max(0, ...healthMs),
          notOk,
          samplesMs: healthMs.map((ms) => Math.round(ms * 100) / 100),
        },
        timeline,
      };
    },
  };
}
