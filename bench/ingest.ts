import fs from 'node:fs/promises';
import path from 'node:path';
import type { Corpus, CorpusInstance } from './corpus.js';
import { expectJson, request, stowBody, type Reply } from './http.js';
import { throughput, type Throughput } from './limits.js';
import { cpuSeconds, cpuSecondsByThread, resetPeakRss, sampleRss, syncDisks, watchMachineCpu, type MachineCpu } from './measure.js';
import type { RunningServer } from './server-process.js';

/** As the issue states the ingest target: 10 instances per STOW request, 4 requests in flight. */
export const INSTANCES_PER_REQUEST = 10;
export const REQUESTS_IN_FLIGHT = 4;

/** How the instances are sent: so many per STOW request, so many requests at once. */
export type StowShape = { instancesPerRequest: number; requestsInFlight: number };
export const MAIN_SHAPE: StowShape = { instancesPerRequest: INSTANCES_PER_REQUEST, requestsInFlight: REQUESTS_IN_FLIGHT };
/** A modality sending one image at a time, waiting for each answer (the second ingest target). */
export const ONE_AT_A_TIME: StowShape = { instancesPerRequest: 1, requestsInFlight: 1 };
/** The one-at-a-time line sends every n-th instance: the corpus's mix of sizes in a fraction of the time. */
const ONE_AT_A_TIME_STRIDE = 8;

export type IngestResult = Throughput & StowShape & {
  instances: number;
  instancesPerSecond: number;
  requests: number;
  peakRssMB: number;
  sampledPeakRssMB: number;
  rssSamples: number;
  serverCpuSeconds: number;
  /** The server's CPU seconds by thread name, largest first (threads that ended during ingest are missed). */
  serverCpuByThread: Record<string, number>;
  /** The benchmark's own share of the machine: reading files and sending requests. */
  clientCpuSeconds: number;
  machine: MachineCpu;
};

/** Sends the whole corpus by STOW-RS while watching the server's memory and CPU. Every answer is checked. */
export async function ingest(server: RunningServer, corpus: Corpus, log: (line: string) => void, shape = MAIN_SHAPE): Promise<IngestResult> {
  const batches = stowBatches(corpus, shape.instancesPerRequest);
  syncDisks();
  await resetPeakRss(server.pid);
  const rss = sampleRss(server.pid);
  const cpuBefore = await cpuSeconds(server.pid);
  const threadsBefore = await cpuSecondsByThread(server.pid);
  const clientBefore = process.cpuUsage();
  const machine = await watchMachineCpu();
  const started = performance.now();
  let next = 0;
  let done = 0;
  const progress = setInterval(() => log(`  ${server.name}: ${done}/${batches.length} requests after ${((performance.now() - started) / 1000).toFixed(0)} s`), 10_000);
  try {
    const worker = async () => {
      for (let i = next++; i < batches.length; i = next++) {
        await stowBatch(server, corpus, batches[i]!);
        done++;
      }
    };
    await Promise.all(Array.from({ length: shape.requestsInFlight }, worker));
  } finally {
    clearInterval(progress);
  }
  const elapsedMs = performance.now() - started;
  const serverCpu = (await cpuSeconds(server.pid)) - cpuBefore;
  const threadsAfter = await cpuSecondsByThread(server.pid);
  const client = process.cpuUsage(clientBefore);
  const machineCpu = await machine.stop();
  const memory = await rss.stop();
  const result = throughput(corpus.bytes, elapsedMs);
  return {
    ...result,
    ...shape,
    instances: corpus.instances.length,
    instancesPerSecond: corpus.instances.length / result.seconds,
    requests: batches.length,
    peakRssMB: memory.peakMB,
    sampledPeakRssMB: memory.sampledPeakMB,
    rssSamples: memory.samples,
    serverCpuSeconds: serverCpu,
    serverCpuByThread: Object.fromEntries(
      Object.entries(threadsAfter)
        .map(([name, seconds]) => [name, seconds - (threadsBefore[name] ?? 0)] as const)
        .sort((a, b) => b[1] - a[1]),
    ),
    clientCpuSeconds: (client.user + client.system) / 1e6,
    machine: machineCpu,
  };
}

/** The STOW requests of the ingest, in corpus order. */
export function stowBatches(corpus: Corpus, perRequest = INSTANCES_PER_REQUEST): CorpusInstance[][] {
  const batches: CorpusInstance[][] = [];
  for (let i = 0; i < corpus.instances.length; i += perRequest) batches.push(corpus.instances.slice(i, i + perRequest));
  return batches;
}

/** What the one-at-a-time line sends: every ONE_AT_A_TIME_STRIDE-th instance, the same for every server. */
export function oneAtATimeSample(corpus: Corpus): Corpus {
  const instances = corpus.instances.filter((_, i) => i % ONE_AT_A_TIME_STRIDE === 0);
  return { ...corpus, instances, bytes: instances.reduce((sum, i) => sum + i.size, 0) };
}

const STOW_TIMEOUT_MS = 10 * 60_000;

async function stowBatch(server: RunningServer, corpus: Corpus, batch: CorpusInstance[]): Promise<void> {
  expectAllStored(server, batch, await sendStow(server, corpus, batch));
}

/** One STOW-RS request of `batch`, read from the corpus; the answer as it came. */
export async function sendStow(server: RunningServer, corpus: Corpus, batch: CorpusInstance[], timeoutMs = STOW_TIMEOUT_MS): Promise<Reply> {
  const files = await Promise.all(batch.map((i) => fs.readFile(path.join(corpus.dir, i.file))));
  const { pieces, contentType } = stowBody(files);
  return request(`${server.dicomweb}/studies`, {
    method: 'POST',
    headers: { ...server.auth, 'Content-Type': contentType, Accept: 'application/dicom+json' },
    body: pieces,
    timeoutMs,
  });
}

/** Throws unless the answer is a 200 saying that every instance of `batch` was stored (a duplicate counts as stored). */
export function expectAllStored(server: RunningServer, batch: CorpusInstance[], reply: Reply): void {
  const answer = expectJson(reply, `STOW of ${batch[0]!.file}…`) as Record<string, { Value?: unknown[] } | undefined>;
  const stored = answer['00081199']?.Value?.length ?? 0;
  const failed = answer['00081198']?.Value?.length ?? 0;
  if (stored !== batch.length || failed !== 0) {
    throw new Error(`${server.name} stored ${stored} and refused ${failed} of ${batch.length} instances from ${batch[0]!.file}…: ${reply.body.toString('utf8', 0, 600)}`);
  }
}
