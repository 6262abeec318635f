/**
 * DIMSE (issue 13's speed targets): dcmtk's storescu sending the whole corpus in 4 parallel associations to PACS-lite and
 * to Orthanc, each with its DICOM service on, beside our own STOW-RS ingest of the same files; then findscu study-level
 * queries against both, a process a query, beside that process's start alone. `npm run bench -- dimse` runs it alone.
 * See bench/README.md.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fixed, renderColumns } from './report.js';
import type { Corpus, CorpusInstance } from './corpus.js';
import { runTool, startTool, timedRun } from './dcmtk.js';
import { dropConnections, expectJson, request } from './http.js';
import { ingest } from './ingest.js';
import { checkInterrupted } from './interrupt.js';
import { throughput, warmCorpus, type Throughput } from './limits.js';
import { cpuSeconds, interleaved, syncDisks, watchMachineCpu, type Latency, type MachineCpu } from './measure.js';
import { runOrthanc } from './orthanc.js';
import { randomAdminKey, serverLogTail, startPacsLite, type PacsLiteServer } from './pacs-lite.js';
import { assertLoopbackOnly, freePort, type RunningServer } from './server-process.js';
import type { Settings } from './settings.js';

/** The issue's targets: storescu ≥ 1.5× Orthanc's C-STORE and within 20% of our STOW; findscu ≥ 5× faster than Orthanc's. */
const STORE_OVER_ORTHANC = 1.5;
const STORE_OF_STOW = 0.8;
const FIND_OVER_ORTHANC = 5;
const ASSOCIATIONS = 4;
/** The bench's own AE title, known to both servers: registered in PACS-lite (store, query), a DicomModality of Orthanc. */
const CALLING_AE = 'BENCHSCU';
const PACS_LITE_AE = 'PACSLITE';
const ORTHANC_AE = 'ORTHANC';
/**
 * dcmtk (Debian's build) leaves Nagle's algorithm on unless TCP_NODELAY=1 is in the environment: each message then waits
 * for the peer's delayed ACK, about 40 ms. The tools get it, and so does Orthanc, whose DICOM service is dcmtk too: without
 * it Orthanc spent about 48 ms an instance on C-STORE and 45 ms more on each association (see bench/README.md).
 */
const NO_NAGLE = { TCP_NODELAY: '1' };
const TOOL_ENV = { ...process.env, ...NO_NAGLE };
const STUDY_KEYS = ['PatientName', 'PatientID', 'StudyDate', 'StudyDescription', 'AccessionNumber', 'StudyInstanceUID'];

export const STORE_LINES = ['stow', 'pacsLite', 'orthanc'] as const;
export const FIND_LINES = ['pacsLite', 'orthanc', 'pacsLiteInAssociation', 'orthancInAssociation', 'processStart', 'echoPacsLite', 'echoOrthanc'] as const;
/**
 * Queries findscu sends in one association (`--repeat`) for the in-association lines: a query's own time is that run's
 * less a single query's run (same process start, association and release), over the queries added.
 */
const REPEATS = 21;

export type StoreLine = Throughput & {
  instances: number;
  instancesPerSecond: number;
  serverCpuSeconds: number;
  machine: MachineCpu;
  /** storescu only: each association's seconds, from its process start to its exit. */
  associationSeconds?: number[];
};

export type DimseResults = {
  pacsLite: string;
  orthanc: string;
  corpus: { instances: number; studies: number; bytes: number; transferSyntaxes: Record<string, number> };
  store: Partial<Record<(typeof STORE_LINES)[number], StoreLine>>;
  /** The patient name prefixes asked for in turn, each with the number of studies both servers answered. */
  queries: Array<{ patientName: string; studies: number }>;
  find: Partial<Record<(typeof FIND_LINES)[number], Latency>>;
  error?: string;
};

/** What failed (as opposed to a figure that missed its target). */
export function dimseFailures(r: DimseResults): string[] {
  return r.error ? [r.error] : [];
}

/** A server's DICOM service as the tools call it. */
type Peer = { aeTitle: string; port: number };

/**
 * STOW of the corpus into a fresh PACS-lite (stopped afterwards), then storescu of the corpus into a fresh PACS-lite and
 * a fresh Orthanc, both kept running for the findscu lines. Every server is stopped whatever happens (also on Ctrl-C, via
 * `running`), every count checked, so that a fast failure never passes for a fast answer.
 */
export async function dimseCase(opts: { settings: Settings; workDir: string; corpus: Corpus; log: (line: string) => void; running: Set<RunningServer> }): Promise<DimseResults> {
  const { settings, corpus, log, running } = opts;
  const dir = path.join(opts.workDir, 'dimse');
  const results: DimseResults = {
    pacsLite: '',
    orthanc: '',
    corpus: { instances: corpus.instances.length, studies: corpus.studies.length, bytes: corpus.bytes, transferSyntaxes: countBy(corpus.instances, (i) => i.transferSyntaxUid) },
    store: {},
    queries: [],
    find: {},
  };
  const started = new Set<RunningServer>();
  const track = <T extends RunningServer>(server: T): T => {
    started.add(server);
    running.add(server);
    return server;
  };
  const stop = async (server: RunningServer) => {
    dropConnections();
    await server.stop();
    started.delete(server);
    running.delete(server);
  };
  let pacsDir: string | undefined;
  try {
    const adminKey = randomAdminKey();
    log('dimse: reading the corpus once so every phase starts from the same page cache');
    await warmCorpus(corpus);

    pacsDir = path.join(dir, 'stow');
    const stowServer = track(await startPacsLite(settings, pacsDir, { adminKey }));
    results.pacsLite = stowServer.version;
    log(`dimse: our STOW-RS ingest of the corpus into a fresh PACS-lite, ${corpus.instances.length} instances`);
    results.store.stow = await ingest(stowServer, corpus, log);
    await expectAllIn('PACS-lite (STOW)', corpus, await countInPacsLite(stowServer));
    // Its files stay until the end: on an ext4 without a journal (this kind of VM), files made within a minute of a
    // mass deletion are slowed (the allocator passes over recently freed inodes): that would be charged to C-STORE.
    await stop(stowServer);

    pacsDir = path.join(dir, 'pacs-lite');
    const pacsPeer = { aeTitle: PACS_LITE_AE, port: await freePort() };
    const pacs = track(await startPacsLite(settings, pacsDir, { adminKey, env: { PACS_DICOM_PORT: String(pacsPeer.port), PACS_DICOM_AE_TITLE: PACS_LITE_AE } }));
    await assertLoopbackOnly(pacsPeer.port);
    await registerCaller(pacs);
    log(`dimse: storescu of the corpus to PACS-lite, ${ASSOCIATIONS} associations at once`);
    results.store.pacsLite = await storeCorpus(corpus, pacsPeer, pacs.pid, log);
    await expectAllIn('PACS-lite (C-STORE)', corpus, await countInPacsLite(pacs));

    const orthancPeer = { aeTitle: ORTHANC_AE, port: await freePort() };
    const orthancDir = path.join(dir, 'orthanc');
    const orthancProcess = await runOrthanc(settings, orthancDir, { dicom: { ...orthancPeer, modalities: { bench: [CALLING_AE, '127.0.0.1', await freePort()] } }, env: NO_NAGLE });
    const orthanc = track<RunningServer>({ name: 'orthanc', version: orthancProcess.version, dicomweb: `${orthancProcess.url}/dicom-web`, auth: {}, pid: orthancProcess.pid, stop: orthancProcess.stop });
    results.orthanc = orthanc.version;
    await assertLoopbackOnly(orthancPeer.port);
    log(`dimse: storescu of the corpus to Orthanc, ${ASSOCIATIONS} associations at once`);
    results.store.orthanc = await storeCorpus(corpus, orthancPeer, orthanc.pid, log);
    await expectAllIn('Orthanc (C-STORE)', corpus, await countInOrthanc(orthancProcess.url));

    checkInterrupted();
    results.queries = patientNamePrefixes(corpus)
      .slice(0, settings.dimseQueries + 1)
      .map((patientName) => ({ patientName, studies: -1 }));
    if (results.queries.length === 0) throw new Error('no patient name of the corpus starts with three ASCII letters to query for');
    const closedPort = await freePort();
    const calls = settings.dimseQueries + 1;
    log(`dimse: findscu at STUDY level, ${calls} queries to each server (the first untimed), in turn with its process start and echoscu`);
    const answered = (server: string, i: number, studies: number) => {
      const query = results.queries[i % results.queries.length]!;
      if (studies === 0) throw new Error(`${server} found no study for PatientName=${query.patientName}`);
      if (query.studies >= 0 && query.studies !== studies) throw new Error(`PatientName=${query.patientName}: ${server} found ${studies} studies where ${query.studies} were found before`);
      query.studies = studies;
    };
    const prefixOf = (i: number) => results.queries[i % results.queries.length]!.patientName;
    Object.assign(
      results.find,
      await interleaved(calls, {
        pacsLite: async (i) => {
          const { ms, studies } = find(pacsPeer, prefixOf(i));
          answered('PACS-lite', i, studies);
          return ms;
        },
        orthanc: async (i) => {
          const { ms, studies } = find(orthancPeer, prefixOf(i));
          answered('Orthanc', i, studies);
          return ms;
        },
        pacsLiteInAssociation: async (i) => findInAssociation(pacsPeer, prefixOf(i), (studies) => answered('PACS-lite', i, studies)),
        orthancInAssociation: async (i) => findInAssociation(orthancPeer, prefixOf(i), (studies) => answered('Orthanc', i, studies)),
        processStart: async (i) => findscuStart({ aeTitle: PACS_LITE_AE, port: closedPort }, prefixOf(i)),
        echoPacsLite: async () => timedRun('echoscu', [...callArgs(pacsPeer)], { env: TOOL_ENV }).ms,
        echoOrthanc: async () => timedRun('echoscu', [...callArgs(orthancPeer)], { env: TOOL_ENV }).ms,
      }),
    );
  } catch (e) {
    checkInterrupted();
    const tail = pacsDir ? await serverLogTail(pacsDir) : '';
    results.error = `${(e as Error).message}${tail ? `\n    end of PACS-lite's log:\n    ${tail}` : ''}`;
    log(`dimse failed: ${results.error}`);
  } finally {
    for (const server of [...started]) await stop(server).catch((e: unknown) => log(`dimse: stopping ${server.name}: ${(e as Error).message}`));
    await fs.rm(dir, { recursive: true, force: true });
  }
  return results;
}

/** The AE titles and address of a call from the bench to `peer`, as dcmtk's tools take them. */
function callArgs(peer: Peer): string[] {
  return ['-aet', CALLING_AE, '-aec', peer.aeTitle, '127.0.0.1', String(peer.port)];
}

/** Makes the bench's AE title known to PACS-lite, as an administrator would: it may store and query, from loopback only. */
async function registerCaller(server: PacsLiteServer): Promise<void> {
  const url = `${server.dicomweb.replace(/\/dicom-web$/, '')}/api/v1/application-entities/${CALLING_AE}`;
  const body = Buffer.from(JSON.stringify({ host: '127.0.0.1', store: true, query: true, retrieve: false, description: 'npm run bench' }));
  const reply = await request(url, { method: 'PUT', headers: { ...server.auth, 'Content-Type': 'application/json' }, body: [body] });
  if (reply.status !== 200 && reply.status !== 201) throw new Error(`PUT ${url}: HTTP ${reply.status} ${reply.body.toString('utf8', 0, 300)}`);
}

/**
 * The corpus in `ASSOCIATIONS` storescu processes at once, every ASSOCIATIONS-th file each (the same mix of sizes, so
 * they end together), timed from the first spawn to the last exit. `-R` proposes, for each SOP class, exactly the
 * transfer syntaxes of its files (storescu adds one fallback context of the uncompressed ones), so every instance goes
 * as stored: a conversion by storescu, or a store not answered Success, fails the line.
 */
async function storeCorpus(corpus: Corpus, peer: Peer, serverPid: number, log: (line: string) => void): Promise<StoreLine> {
  const groups = Array.from({ length: ASSOCIATIONS }, (_, g) => corpus.instances.filter((_, i) => i % ASSOCIATIONS === g));
  syncDisks();
  const cpuBefore = await cpuSeconds(serverPid);
  const machine = await watchMachineCpu();
  const startedAt = performance.now();
  const tools = groups.map((group) => {
    const tool = startTool('storescu', ['-v', '-R', ...callArgs(peer), ...group.map((i) => i.file)], { cwd: corpus.dir, env: TOOL_ENV });
    return { ...tool, done: tool.done.then((output) => ({ output, seconds: (performance.now() - startedAt) / 1000 })) };
  });
  const progress = setInterval(() => log(`  storescu: ${((performance.now() - startedAt) / 1000).toFixed(0)} s`), 10_000);
  let ended: Array<{ output: { stderr: string }; seconds: number }>;
  try {
    ended = await Promise.all(tools.map((t) => t.done));
  } finally {
    clearInterval(progress);
    for (const t of tools) t.kill();
  }
  const elapsedMs = performance.now() - startedAt;
  const serverCpuSeconds = (await cpuSeconds(serverPid)) - cpuBefore;
  const machineCpu = await machine.stop();
  for (const [g, { output }] of ended.entries()) {
    // storescu logs this line for every instance, "X -> X" when it sends it as read.
    const converted = [...output.stderr.matchAll(/^I: Converting transfer syntax: (.*) -> (.*)$/gm)].find(([, from, to]) => from !== to);
    if (converted) throw new Error(`storescu converted an instance rather than send it as stored: ${converted[0]}`);
    const success = output.stderr.match(/^I: Received Store Response \(Success\)/gm)?.length ?? 0;
    if (success !== groups[g]!.length) throw new Error(`association ${g + 1}: ${success} of ${groups[g]!.length} instances answered Success`);
  }
  const result = throughput(corpus.bytes, elapsedMs);
  return {
    ...result,
    instances: corpus.instances.length,
    instancesPerSecond: corpus.instances.length / result.seconds,
    serverCpuSeconds,
    machine: machineCpu,
    associationSeconds: ended.map((e) => e.seconds),
  };
}

/** One findscu study query, a process a query: its wall time and the number of studies it was answered. */
function find(peer: Peer, patientName: string): { ms: number; studies: number } {
  const { ms, stderr } = timedRun('findscu', findArgs(peer, patientName), { env: TOOL_ENV });
  const trouble = /^[WEF]: .*$/m.exec(stderr);
  if (trouble) throw new Error(`findscu to ${peer.aeTitle}, PatientName=${patientName}: ${trouble[0]}`);
  return { ms, studies: stderr.match(/^I: Find Response: \d+ \(Pending\)/gm)?.length ?? 0 };
}

/**
 * One query's time inside an association: findscu asking it REPEATS times over one association, less findscu asking it
 * once, over the REPEATS - 1 queries added. Process start, association and release cancel out: what is left is the
 * server's C-FIND, as a workstation that keeps its association open pays it. Every answer is counted.
 */
function findInAssociation(peer: Peer, patientName: string, answered: (studies: number) => void): number {
  const once = find(peer, patientName);
  answered(once.studies);
  const { ms, stderr } = timedRun('findscu', ['--repeat', String(REPEATS), ...findArgs(peer, patientName)], { env: TOOL_ENV });
  const trouble = /^[WEF]: .*$/m.exec(stderr);
  if (trouble) throw new Error(`findscu --repeat ${REPEATS} to ${peer.aeTitle}, PatientName=${patientName}: ${trouble[0]}`);
  const pending = stderr.match(/^I: Find Response: \d+ \(Pending\)/gm)?.length ?? 0;
  if (pending !== REPEATS * once.studies) throw new Error(`findscu --repeat ${REPEATS} to ${peer.aeTitle}, PatientName=${patientName}: ${pending} matches, not ${REPEATS} × ${once.studies}`);
  return (ms - once.ms) / (REPEATS - 1);
}

function findArgs(peer: Peer, patientName: string): string[] {
  const keys = STUDY_KEYS.flatMap((k) => ['-k', k === 'PatientName' ? `${k}=${patientName}` : k]);
  return ['-S', '-k', 'QueryRetrieveLevel=STUDY', ...keys, ...callArgs(peer)];
}

/**
 * The same findscu call to a loopback port nobody listens on: the process start, its data dictionary and query built,
 * the connection refused. What a query costs beyond that is the server's (and the association's).
 */
function findscuStart(closed: Peer, patientName: string): number {
  const started = performance.now();
  try {
    runTool('findscu', findArgs(closed, patientName), { env: TOOL_ENV });
  } catch (e) {
    if (!/Association Request Failed|refused/i.test((e as Error).message)) throw e;
    return performance.now() - started;
  }
  throw new Error(`findscu found a DICOM service on port ${closed.port}, which should be closed`);
}

/** Three-letter ASCII prefixes of the corpus's family names, each as `Abc*`: queries that match some studies, not all. */
function patientNamePrefixes(corpus: Corpus): string[] {
  const prefixes = corpus.studies.map((s) => s.patientName.slice(0, 3)).filter((p) => /^[A-Za-z]{3}$/.test(p));
  return [...new Set(prefixes)].sort().map((p) => `${p}*`);
}

type Counted = { studies: number; instances: number };

/** Studies and instances PACS-lite holds, by QIDO-RS (NumberOfStudyRelatedInstances of every study, page by page). */
async function countInPacsLite(server: RunningServer): Promise<Counted> {
  const limit = 10_000;
  const counted = { studies: 0, instances: 0 };
  for (let offset = 0; ; offset += limit) {
    const url = `${server.dicomweb}/studies?limit=${limit}&offset=${offset}&includefield=00201208`;
    const page = expectJson(await request(url, { headers: { ...server.auth, Accept: 'application/dicom+json' } }), `GET ${url}`) as Array<Record<string, { Value?: unknown[] }>>;
    counted.studies += page.length;
    counted.instances += page.reduce((n, study) => n + Number(study['00201208']?.Value?.[0] ?? 0), 0);
    if (page.length < limit) return counted;
  }
}

/** Studies and instances Orthanc holds, from its /statistics. */
async function countInOrthanc(url: string): Promise<Counted> {
  const stats = expectJson(await request(`${url}/statistics`), `GET ${url}/statistics`) as { CountStudies: number; CountInstances: number };
  return { studies: stats.CountStudies, instances: stats.CountInstances };
}

async function expectAllIn(where: string, corpus: Corpus, counted: Counted): Promise<void> {
  if (counted.instances !== corpus.instances.length || counted.studies !== corpus.studies.length) {
    throw new Error(`${where} holds ${counted.instances} instances in ${counted.studies} studies, not the corpus's ${corpus.instances.length} in ${corpus.studies.length}`);
  }
}

function countBy(instances: CorpusInstance[], key: (i: CorpusInstance) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const i of instances) counts[key(i)] = (counts[key(i)] ?? 0) + 1;
  return counts;
}

/** The DIMSE table: PACS-lite against its reference on each line, the ratio (above 1: PACS-lite better) and the verdict. */
export function renderDimse(r: DimseResults): string {
  const header = ['metric', 'PACS-lite', 'reference', 'ratio', 'target', 'result'];
  const rows: string[][] = [];
  const row = (metric: string, ours: number | undefined, reference: number | undefined, ratio: number | undefined, digits: number, atLeast?: number, target = '') => {
    const verdict = atLeast === undefined || ratio === undefined || !Number.isFinite(ratio) ? '' : ratio >= atLeast ? 'PASS' : 'MISS';
    rows.push([metric, fixed(ours, digits), fixed(reference, digits), ratio === undefined || !Number.isFinite(ratio) ? '' : `${ratio.toFixed(2)}×`, target, verdict]);
  };
  const s = r.store;
  const over = (a?: number, b?: number) => (a !== undefined && b !== undefined ? a / b : undefined);
  const storeTarget = `≥ ${STORE_OVER_ORTHANC.toFixed(2)}× Orthanc`;
  const stowTarget = `within 20% of STOW (≥ ${STORE_OF_STOW.toFixed(2)}×)`;
  const storescu = `storescu, ${ASSOCIATIONS} associations`;
  row(`${storescu} vs Orthanc C-STORE, instances/s`, s.pacsLite?.instancesPerSecond, s.orthanc?.instancesPerSecond, over(s.pacsLite?.instancesPerSecond, s.orthanc?.instancesPerSecond), 0, STORE_OVER_ORTHANC, storeTarget);
  row(`${storescu} vs Orthanc C-STORE, MB/s`, s.pacsLite?.mbPerSecond, s.orthanc?.mbPerSecond, over(s.pacsLite?.mbPerSecond, s.orthanc?.mbPerSecond), 1, STORE_OVER_ORTHANC, storeTarget);
  row(`${storescu} vs our STOW-RS, instances/s`, s.pacsLite?.instancesPerSecond, s.stow?.instancesPerSecond, over(s.pacsLite?.instancesPerSecond, s.stow?.instancesPerSecond), 0, STORE_OF_STOW, stowTarget);
  row(`${storescu} vs our STOW-RS, MB/s`, s.pacsLite?.mbPerSecond, s.stow?.mbPerSecond, over(s.pacsLite?.mbPerSecond, s.stow?.mbPerSecond), 1, STORE_OF_STOW, stowTarget);
  const f = r.find;
  const start = f.processStart;
  const n = f.pacsLite?.n ?? 0;
  const findTarget = `≥ ${FIND_OVER_ORTHANC.toFixed(2)}× Orthanc`;
  for (const [stat, of] of [['median', (x: Latency) => x.medianMs], ['p95', (x: Latency) => x.p95Ms]] as const) {
    const [oursIn, theirsIn] = [f.pacsLiteInAssociation && of(f.pacsLiteInAssociation), f.orthancInAssociation && of(f.orthancInAssociation)];
    row(`findscu STUDY query in one association (--repeat ${REPEATS}), ${stat} ms a query`, oursIn, theirsIn, over(theirsIn, oursIn), 2, FIND_OVER_ORTHANC, findTarget);
  }
  for (const [stat, of] of [['median', (x: Latency) => x.medianMs], ['p95', (x: Latency) => x.p95Ms]] as const) {
    const ours = f.pacsLite && of(f.pacsLite);
    const theirs = f.orthanc && of(f.orthanc);
    row(`findscu STUDY query (${n} timed), a process a query, ${stat} ms`, ours, theirs, over(theirs, ours), 2, FIND_OVER_ORTHANC, findTarget);
    const less = (x?: number) => (x !== undefined && start ? x - of(start) : undefined);
    const [oursLess, theirsLess] = [less(ours), less(theirs)];
    // Less a start that took longer than the query, a figure would be negative: no ratio then.
    const ratio = oursLess !== undefined && theirsLess !== undefined && oursLess > 0 && theirsLess > 0 ? theirsLess / oursLess : undefined;
    row(`findscu less its process start, ${stat} ms`, oursLess, theirsLess, ratio, 2, FIND_OVER_ORTHANC, findTarget);
  }
  const pair = (x?: Latency) => (x ? `${fixed(x.medianMs, 2)} / ${fixed(x.p95Ms, 2)}` : '');
  rows.push(['findscu to a closed port (process start), median / p95 ms', pair(start), '', '', '', '']);
  rows.push(['echoscu (start, association, C-ECHO), median / p95 ms', pair(f.echoPacsLite), pair(f.echoOrthanc), '', '', '']);
  const syntaxes = Object.entries(r.corpus.transferSyntaxes).map(([uid, count]) => `${uid} ×${count}`).join(', ');
  const cpu = (line?: StoreLine) => (line ? `${fixed(line.serverCpuSeconds, 1)} s CPU over ${fixed(line.seconds, 1)} s, machine ${fixed(line.machine.busyPercent, 0)}% busy` : '');
  return [
    `DIMSE, PACS-lite${r.pacsLite ? ` (${r.pacsLite})` : ''} against ${r.orthanc || 'Orthanc'}:`,
    `  corpus: ${r.corpus.instances} instances in ${r.corpus.studies} studies, ${fixed(r.corpus.bytes / 1e6, 0)} MB; transfer syntaxes ${syntaxes}`,
    `  store: \`TCP_NODELAY=1 storescu -R -aet ${CALLING_AE}\`, ${ASSOCIATIONS} processes at once, every ${ASSOCIATIONS}th file each, timed from the first start to the last exit, into a fresh`,
    `    PACS-lite (${CALLING_AE} registered with store and query rights from 127.0.0.1) and a fresh Orthanc (DicomAlwaysAllowStore, ${CALLING_AE} a DicomModality, TCP_NODELAY=1 in its environment too);`,
    `    reference for the STOW line: our STOW-RS ingest of the same files into a fresh PACS-lite, 10 instances a request, 4 in flight`,
    `  checked: every store answered Success, none converted by storescu, every instance and study counted in the server afterwards (QIDO-RS, Orthanc's /statistics)`,
    `  find: \`findscu -S -k QueryRetrieveLevel=STUDY -k PatientName=<prefix>* ${STUDY_KEYS.filter((k) => k !== 'PatientName').map((k) => `-k ${k}`).join(' ')}\`, prefixes ${r.queries.map((q) => q.patientName).join(' ')}`,
    `    in turn; each server's answers counted and equal to the other's (${r.queries.map((q) => q.studies).join(', ')} studies); ratio Orthanc ÷ PACS-lite`,
    renderColumns(header, rows, header.map((_, i) => i >= 1 && i <= 3)),
    ...(s.stow ? [`  server CPU: STOW ${cpu(s.stow)}; storescu to PACS-lite ${cpu(s.pacsLite)}; to Orthanc ${cpu(s.orthanc)}`] : []),
    ...(s.pacsLite?.associationSeconds ? [`  each association's seconds: PACS-lite ${s.pacsLite.associationSeconds.map((x) => x.toFixed(1)).join(', ')}; Orthanc ${s.orthanc?.associationSeconds?.map((x) => x.toFixed(1)).join(', ') ?? ''}`] : []),
    ...(r.error ? [`  failed: ${r.error}`] : []),
  ].join('\n');
}
