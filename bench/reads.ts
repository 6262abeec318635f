import { expectedFrame, type Corpus, type CorpusInstance } from './corpus.js';
import { decodedBody, expectJson, multipartParts, request, type Reply } from './http.js';
import { checkInterrupted } from './interrupt.js';
import { latency, syncDisks, type Latency } from './measure.js';
import type { Scenario } from './scenario.js';
import type { RunningServer } from './server-process.js';

/** One read line: what to request on the i-th call, and what a correct answer must hold. */
export type ReadProbe = {
  key: string;
  once(server: RunningServer, i: number): Promise<number>;
  /** Calls the line may make, the untimed first included: a line that asks for another file each time has only so many. */
  maxCalls?: number;
  /** Once the timed calls are done (`calls` made in all): what else to record with the line (rendered.ts). */
  after?(server: RunningServer, calls: number): Promise<Record<string, unknown>>;
  /** Frame lines: frames answered so far and their bytes, to set against what the object store served (backends.ts). */
  payload?: { frames: number; bytes: number };
};

/** OHIF runs in a browser, which always offers gzip. */
export const BROWSER = { 'Accept-Encoding': 'gzip' };

/** The instance the i-th call of the frame line asks for: a stride through them, as when scrolling, each call another file. */
export function scrolled<T>(instances: T[], i: number): T {
  return instances[(i * 37) % instances.length]!;
}
const FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';

export function readProbes(corpus: Corpus, scenario: Scenario): ReadProbe[] {
  const { series } = scenario;
  const frameProbe = (key: string, instances: CorpusInstance[], frame: number): ReadProbe => {
    const payload = { frames: 0, bytes: 0 };
    return {
      key,
      payload,
      async once(server, i) {
        const instance = scrolled(instances, i);
        const url = `${server.dicomweb}/studies/${instance.studyUid}/series/${instance.seriesUid}/instances/${instance.sopUid}/frames/${frame}`;
        const reply = await request(url, { headers: { ...server.auth, ...BROWSER, Accept: FRAME_ACCEPT } });
        payload.bytes += await expectFrame(reply, corpus, instance, frame, `frame ${frame} of ${instance.file}`);
        payload.frames++;
        return reply.ms;
      },
    };
  };
  const described = new Set(corpus.studies.filter((s) => s.studyDescription).map((s) => s.studyUid));
  const queryProbe = (key: string, query: Scenario['studyList']): ReadProbe => ({
    key,
    async once(server) {
      const reply = await request(`${server.dicomweb}/studies?${query.query}`, { headers: { ...server.auth, ...BROWSER, Accept: 'application/dicom+json' } });
      const studies = expectJson(reply, query.label) as Array<Record<string, unknown>>;
      if (studies.length !== query.expected) throw new Error(`${query.label}: expected ${query.expected} studies, got ${studies.length}`);
      // includefield asks for StudyDescription: an answer without it did less than was asked.
      const uidOf = (s: Record<string, unknown>) => (s['0020000D'] as { Value?: string[] } | undefined)?.Value?.[0] ?? '';
      const incomplete = studies.filter((s) => !uidOf(s) || (described.has(uidOf(s)) && !s['00081030']));
      if (incomplete.length) throw new Error(`${query.label}: ${incomplete.length} studies answered without StudyInstanceUID or the StudyDescription asked for`);
      return reply.ms;
    },
  });
  const metadataProbe: ReadProbe = {
    key: 'seriesMetadata',
    async once(server) {
      const url = `${server.dicomweb}/studies/${series.studyUid}/series/${series.seriesUid}/metadata`;
      const reply = await request(url, { headers: { ...server.auth, ...BROWSER, Accept: 'application/dicom+json' } });
      const instances = expectJson(reply, 'series metadata') as unknown[];
      if (instances.length !== series.instances.length) throw new Error(`series metadata lists ${instances.length} instances, not ${series.instances.length}`);
      return reply.ms;
    },
  };
  return [
    metadataProbe,
    frameProbe('seriesFrame', series.instances, 1),
    ...(scenario.multiFrame ? [frameProbe('deepFrame', scenario.multiFrame.instances, scenario.multiFrame.frame)] : []),
    queryProbe('studyList', scenario.studyList),
    queryProbe('filteredStudyList', scenario.filteredStudyList),
  ];
}

/** A line's latencies, and what its probe's `after` recorded; or why it failed. */
export type ReadResult = (Latency & { detail?: Record<string, unknown> }) | { error: string };

/** Runs every read line against one server; a line that fails is reported as failed and the others still run. */
export async function measureReads(server: RunningServer, probes: ReadProbe[], reps: number, seconds: number, log: (line: string) => void): Promise<Record<string, ReadResult>> {
  // The ingest's dirty pages are written back first, so reads are not timed against that writeback.
  syncDisks();
  const results: Record<string, ReadResult> = {};
  for (const probe of probes) {
    try {
      const measured = await latency((i) => probe.once(server, i), reps, seconds, probe.maxCalls);
      results[probe.key] = probe.after ? { ...measured, detail: await probe.after(server, measured.n + 1) } : measured;
    } catch (e) {
      checkInterrupted();
      results[probe.key] = { error: (e as Error).message };
      log(`  ${server.name} ${probe.key} failed: ${(e as Error).message}`);
    }
  }
  return results;
}

/** Checks a frame answer; returns the frame's size in bytes. */
async function expectFrame(reply: Reply, corpus: Corpus, instance: CorpusInstance, frame: number, what: string): Promise<number> {
  if (reply.status !== 200) throw new Error(`${what}: HTTP ${reply.status} ${decodedBody(reply).toString('utf8', 0, 300)}`);
  const parts = multipartParts({ ...reply, body: decodedBody(reply) });
  if (parts.length !== 1) throw new Error(`${what}: expected one part, got ${parts.length}`);
  const expected = await expectedFrame(corpus, instance, frame);
  if (expected ? !parts[0]!.equals(expected) : parts[0]!.length === 0) {
    throw new Error(`${what}: the ${parts[0]!.length} bytes answered are not the ${expected?.length ?? 'stored'} bytes of the frame`);
  }
  return parts[0]!.length;
}
