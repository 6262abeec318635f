import fs from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync, inflateSync } from 'node:zlib';
import { expectedFrame, type Corpus, type CorpusInstance } from './corpus.js';
import { multipartParts, request, stowBody, type Reply } from './http.js';
import { throughput, type Throughput } from './limits.js';
import { cpuSeconds, cpuSecondsByThread, latency, resetPeakRss, sampleRss, syncDisks, watchMachineCpu, type Latency, type MachineCpu } from './measure.js';
import { checkInterrupted } from './interrupt.js';
import type { Scenario } from './scenario.js';
import type { RunningServer } from './server-process.js';

/** As the issue states the ingest target: 10 instances per STOW request, 4 requests in flight. */
export const INSTANCES_PER_REQUEST = 10;
export const REQUESTS_IN_FLIGHT = 4;

export type IngestResult = Throughput & {
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
export async function ingest(server: RunningServer, corpus: Corpus, log: (line: string) => void): Promise<IngestResult> {
  const batches: CorpusInstance[][] = [];
  for (let i = 0; i < corpus.instances.length; i += INSTANCES_PER_REQUEST) batches.push(corpus.instances.slice(i, i + INSTANCES_PER_REQUEST));
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
    await Promise.all(Array.from({ length: REQUESTS_IN_FLIGHT }, worker));
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

const STOW_TIMEOUT_MS = 10 * 60_000;

async function stowBatch(server: RunningServer, corpus: Corpus, batch: CorpusInstance[]): Promise<void> {
  const files = await Promise.all(batch.map((i) => fs.readFile(path.join(corpus.dir, i.file))));
  const { pieces, contentType } = stowBody(files);
  const reply = await request(`${server.dicomweb}/studies`, {
    method: 'POST',
    headers: { 'Content-Type': contentType, Accept: 'application/dicom+json' },
    body: pieces,
    timeoutMs: STOW_TIMEOUT_MS,
  });
  const answer = expectOk(reply, `STOW of ${batch[0]!.file}…`) as Record<string, { Value?: unknown[] } | undefined>;
  const stored = answer['00081199']?.Value?.length ?? 0;
  const failed = answer['00081198']?.Value?.length ?? 0;
  if (stored !== batch.length || failed !== 0) {
    throw new Error(`${server.name} stored ${stored} and refused ${failed} of ${batch.length} instances from ${batch[0]!.file}…: ${reply.body.toString('utf8', 0, 600)}`);
  }
}

/** One read line: what to request on the i-th call, and what a correct answer must hold. */
type ReadProbe = { key: string; once(server: RunningServer, i: number): Promise<number> };

/** OHIF runs in a browser, which always offers gzip. */
const BROWSER = { 'Accept-Encoding': 'gzip' };
const FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';

export function readProbes(corpus: Corpus, scenario: Scenario): ReadProbe[] {
  const { series } = scenario;
  const seriesUrl = (server: RunningServer) => `${server.dicomweb}/studies/${series.studyUid}/series/${series.seriesUid}`;
  const frameProbe = (key: string, instances: CorpusInstance[], frame: number): ReadProbe => ({
    key,
    async once(server, i) {
      // A stride through the instances, as when scrolling: each call asks for another file.
      const instance = instances[(i * 37) % instances.length]!;
      const url = `${server.dicomweb}/studies/${instance.studyUid}/series/${instance.seriesUid}/instances/${instance.sopUid}/frames/${frame}`;
      const reply = await request(url, { headers: { ...BROWSER, Accept: FRAME_ACCEPT } });
      await expectFrame(reply, corpus, instance, frame, `frame ${frame} of ${instance.file}`);
      return reply.ms;
    },
  });
  const described = new Set(corpus.studies.filter((s) => s.studyDescription).map((s) => s.studyUid));
  const queryProbe = (key: string, query: Scenario['studyList']): ReadProbe => ({
    key,
    async once(server) {
      const reply = await request(`${server.dicomweb}/studies?${query.query}`, { headers: { ...BROWSER, Accept: 'application/dicom+json' } });
      const studies = expectOk(reply, query.label) as Array<Record<string, unknown>>;
      if (studies.length !== query.expected) throw new Error(`${query.label}: expected ${query.expected} studies, got ${studies.length}`);
      // includefield asks for StudyDescription: an answer without it did less than was asked.
      const uidOf = (s: Record<string, unknown>) => (s['0020000D'] as { Value?: string[] } | undefined)?.Value?.[0] ?? '';
      const incomplete = studies.filter((s) => !uidOf(s) || (described.has(uidOf(s)) && !s['00081030']));
      if (incomplete.length) throw new Error(`${query.label}: ${incomplete.length} studies answered without StudyInstanceUID or the StudyDescription asked for`);
      return reply.ms;
    },
  });
  const probes: ReadProbe[] = [
    {
      key: 'seriesMetadata',
      async once(server) {
        const reply = await request(`${seriesUrl(server)}/metadata`, { headers: { ...BROWSER, Accept: 'application/dicom+json' } });
        const instances = expectOk(reply, 'series metadata') as unknown[];
        if (instances.length !== series.instances.length) throw new Error(`series metadata lists ${instances.length} instances, not ${series.instances.length}`);
        return reply.ms;
      },
    },
    frameProbe('seriesFrame', series.instances, 1),
    queryProbe('studyList', scenario.studyList),
    queryProbe('filteredStudyList', scenario.filteredStudyList),
  ];
  if (scenario.multiFrame) probes.splice(2, 0, frameProbe('deepFrame', scenario.multiFrame.instances, scenario.multiFrame.frame));
  return probes;
}

export type ReadResult = Latency | { error: string };

/** Runs every read line against one server; a line that fails is reported as failed and the others still run. */
export async function measureReads(server: RunningServer, probes: ReadProbe[], reps: number, seconds: number, log: (line: string) => void): Promise<Record<string, ReadResult>> {
  const results: Record<string, ReadResult> = {};
  for (const probe of probes) {
    try {
      results[probe.key] = await latency((i) => probe.once(server, i), reps, seconds);
    } catch (e) {
      checkInterrupted();
      results[probe.key] = { error: (e as Error).message };
      log(`  ${server.name} ${probe.key} failed: ${(e as Error).message}`);
    }
  }
  return results;
}

/** The decoded JSON of a 200 answer; anything else is an error that names the request. */
function expectOk(reply: Reply, what: string): unknown {
  if (reply.status !== 200) throw new Error(`${what}: HTTP ${reply.status} ${decoded(reply).toString('utf8', 0, 300)}`);
  return JSON.parse(decoded(reply).toString('utf8'));
}

function decoded(reply: Reply): Buffer {
  const encoding = reply.headers['content-encoding'];
  if (encoding === 'gzip') return gunzipSync(reply.body);
  if (encoding === 'deflate') return inflateSync(reply.body);
  return reply.body;
}

async function expectFrame(reply: Reply, corpus: Corpus, instance: CorpusInstance, frame: number, what: string): Promise<void> {
  if (reply.status !== 200) throw new Error(`${what}: HTTP ${reply.status} ${decoded(reply).toString('utf8', 0, 300)}`);
  const parts = multipartParts({ ...reply, body: decoded(reply) });
  if (parts.length !== 1) throw new Error(`${what}: expected one part, got ${parts.length}`);
  const expected = await expectedFrame(corpus, instance, frame);
  if (expected ? !parts[0]!.equals(expected) : parts[0]!.length === 0) {
    throw new Error(`${what}: the ${parts[0]!.length} bytes answered are not the ${expected?.length ?? 'stored'} bytes of the frame`);
  }
}
