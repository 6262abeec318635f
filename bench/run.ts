/**
 * npm run bench: PACS-lite and Orthanc side by side on one corpus, with the machine's own limits,
 * against the targets of the issue; PACS-lite on each storage backend; QIDO on a synthesised index of a
 * million instances; JPEG-LS converted to Explicit VR Little Endian against dcmtk (`npm run bench -- transcode` alone);
 * storescu and findscu against PACS-lite's and Orthanc's DICOM services (`npm run bench -- dimse` alone); the load case
 * (`npm run bench -- load` alone). See bench/README.md.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadCorpus, type Corpus } from './corpus.js';
import { measureAccessControl, countAudit } from './access.js';
import { answeredBy, closeClient, dropConnections } from './http.js';
import { rawCopyWithFsync, sha256Pass, warmCorpus } from './limits.js';
import { checkInterrupted, interrupt, interrupted } from './interrupt.js';
import { startOrthanc, orthancConfig } from './orthanc.js';
import { buildPacsLite, randomAdminKey, startPacsLite } from './pacs-lite.js';
import { summarizeProfile } from './profile.js';
import { renderPlan, renderProbes, type RenderPlan } from './rendered.js';
import {
  backendFailures,
  describeIngestThreads,
  describeRendering,
  describeRun,
  failuresOf,
  qidoScaleFailures,
  renderAccessControl,
  renderBackends,
  renderQidoScale,
  renderTable,
  tableRows,
  type BenchResults,
  type ServerResults,
} from './report.js';
import { scenarioOf, type Scenario } from './scenario.js';
import type { RunningServer } from './server-process.js';
import { readSettings, type ServerName, type Settings } from './settings.js';
import { ingest, INSTANCES_PER_REQUEST, ONE_AT_A_TIME, oneAtATimeSample, REQUESTS_IN_FLIGHT } from './ingest.js';
import { measureReads, readProbes, type ReadProbe } from './reads.js';
import { BACKEND_LABELS, benchBackend, fromMainRun } from './backends.js';
import { startPostgres, type BenchPostgres } from './postgres.js';
import { qidoAtScale } from './qido-scale.js';
import { loadCase, type LoadResults } from './load.js';
import { loadFailures, renderLoad } from './load-report.js';
import { renderTranscode, transcodeCase, transcodeFailures, type TranscodeResults } from './transcode.js';
import { dimseCase, dimseFailures, renderDimse, type DimseResults } from './dimse.js';
import { byHandCase, byHandFailures, renderByHand, type ByHandResults } from './by-hand.js';

const log = (line: string) => process.stderr.write(`${line}\n`);

/** Undone in reverse order at the end, also after an error or Ctrl-C: servers stopped, temp folders removed. */
const cleanups: Array<() => Promise<unknown>> = [];
async function cleanUp(): Promise<void> {
  for (let action = cleanups.pop(); action; action = cleanups.pop()) await action().catch((e: unknown) => log(`cleanup: ${(e as Error).message}`));
}
const running = new Set<RunningServer>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted()) process.exit(130); // a second Ctrl-C: leave now
    log(`${signal}: stopping servers and removing temp data`);
    interrupt(signal);
    closeClient();
    for (const server of running) void server.stop();
  });
}

async function main(): Promise<number> {
  const settings = readSettings();
  buildPacsLite(settings);
  const startedAt = new Date();
  const loadAtStart = os.loadavg();
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-bench-run-'));
  cleanups.push(() => fs.rm(workDir, { recursive: true, force: true }));
  for (const note of settings.skipped) log(note);

  // One Postgres server for the run, started when a phase first needs it (backends.ts, qido-scale.ts).
  let postgres: Promise<BenchPostgres> | undefined;
  const postgresServer = () =>
    (postgres ??= startPostgres(log).then((server) => {
      cleanups.push(() => server.close());
      return server;
    }));

  const servers: BenchResults['servers'] = {};
  const backends: NonNullable<BenchResults['backends']> = {};
  let main: Omit<BenchResults, 'startedAt' | 'machine' | 'servers' | 'orthancConfig'> | undefined;
  let labels: Record<string, string> = {};
  let profileSummary: string | undefined;
  // The corpus, loaded (or generated) when a phase first needs it.
  let loaded: Corpus | undefined;
  const theCorpus = async () => (loaded ??= await loadCorpus(settings, log));
  if (settings.servers.length || settings.backends.length) {
    const corpus = await theCorpus();
    const scenario = scenarioOf(corpus);
    log(`corpus: ${corpus.instances.length} instances, ${(corpus.bytes / 1e9).toFixed(2)} GB in ${corpus.dir}`);
    log('reading the corpus once so every phase starts from the same page cache');
    await warmCorpus(corpus);
    log('measuring the limits: SHA-256 pass, then copy with fsync');
    const limits = { sha256: await sha256Pass(corpus), copyWithFsync: await rawCopyWithFsync(corpus, path.join(workDir, 'raw-copy')) };

    // The rendering lines run last, on instances no other line has read (rendered.ts).
    const plan = await renderPlan(corpus, scenario, settings.reps);
    const reads = readProbes(corpus, scenario);
    const probes = [...reads, ...renderProbes(plan)];
    for (const name of settings.servers) {
      const profileDir = name === 'pacs-lite' && settings.profile ? path.join(settings.outDir, `profile-${stamp(startedAt)}`) : undefined;
      servers[name] = await benchServer(name, settings, workDir, corpus, scenario, probes, profileDir);
      checkInterrupted();
      if (profileDir) profileSummary = await summarizeProfile(profileDir, settings.root);
    }
    // PACS-lite on each storage backend (backends.ts); fs+SQLite is the PACS-lite above when it ran.
    for (const backend of settings.backends) {
      const pacsLite = servers['pacs-lite'];
      backends[backend] =
        backend === 'fs-sqlite' && pacsLite?.ingest
          ? fromMainRun(pacsLite, reads)
          : await benchBackend(backend, { settings, workDir, corpus, probes: reads, postgres: postgresServer, log, running });
      checkInterrupted();
    }
    main = {
      corpus: corpusSummary(corpus),
      scenario: describeScenario(scenario, plan),
      limits,
    };
    labels = rowLabels(scenario, plan);
  }

  // Transcoding (transcode.ts): a server of its own and instances of its own, no corpus.
  let transcode: TranscodeResults | undefined;
  if (settings.transcodeInstances > 0) {
    transcode = await transcodeCase({ settings, workDir, log, running });
    checkInterrupted();
  }

  // DIMSE (dimse.ts): servers of its own with their DICOM services on, the corpus stored by storescu and by STOW.
  let dimse: DimseResults | undefined;
  if (settings.dimseQueries > 0) {
    dimse = await dimseCase({ settings, workDir, corpus: await theCorpus(), log, running });
    checkInterrupted();
  }

  // In and out by hand (by-hand.ts): servers of its own, the corpus by resumable uploads and STOW, a series as a ZIP.
  let byHand: ByHandResults | undefined;
  if (settings.byHandReps > 0) {
    byHand = await byHandCase({ settings, workDir, corpus: await theCorpus(), log, running });
    checkInterrupted();
  }

  // QIDO at scale (qido-scale.ts): no corpus, an index synthesised for each dialect.
  const qidoScale: NonNullable<BenchResults['qidoScale']> = {};
  if (settings.qidoInstances > 0) {
    for (const dialect of settings.qidoDialects) {
      qidoScale[dialect] = await qidoAtScale(dialect, { settings, workDir, postgres: postgresServer, log, running, trySql: settings.qidoTrySql });
      checkInterrupted();
    }
  }

  // The load case (load.ts): a server of its own, last, so that it does not warm the others' caches.
  let load: LoadResults | undefined;
  if (settings.loadSeconds > 0) {
    load = await loadCase({ settings, workDir, corpus: await theCorpus(), log, running });
    checkInterrupted();
  }

  const results: BenchResults = {
    startedAt: startedAt.toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
      memoryGiB: os.totalmem() / 1024 ** 3,
      os: `${os.type()} ${os.release()}`,
      node: process.version,
      // Other work on the machine shows in every figure; this says how much there was.
      loadAverageAtStart: loadAtStart,
    },
    ...(loaded ? { corpus: corpusSummary(loaded) } : {}),
    ...main,
    servers,
    ...(settings.backends.length ? { backends } : {}),
    ...(transcode ? { transcode } : {}),
    ...(dimse ? { dimse } : {}),
    ...(byHand ? { byHand } : {}),
    ...(Object.keys(qidoScale).length ? { qidoScale } : {}),
    ...(load ? { load } : {}),
    orthancConfig: orthancConfig({ dataDir: '<temp>', port: 0, dicomWebPlugin: settings.orthancDicomWeb }),
  };
  await fs.mkdir(settings.outDir, { recursive: true });
  const jsonFile = path.join(settings.outDir, `bench-${stamp(startedAt)}.json`);
  await fs.writeFile(jsonFile, JSON.stringify(results, null, 2));

  console.log(`\nPACS-lite benchmark, ${results.startedAt}`);
  console.log(describeRun(results));
  if (settings.servers.length) {
    console.log();
    console.log(renderTable(tableRows(results, labels)));
    const rendering = describeRendering(results, labels);
    if (rendering) console.log(`\n${rendering}`);
    const accessControl = renderAccessControl(servers['pacs-lite'], labels);
    if (accessControl) console.log(`\n${accessControl}`);
    console.log(`\n${describeIngestThreads(results)}`);
    if (profileSummary) console.log(`\n${profileSummary}`);
  }
  if (results.backends) console.log(`\n${renderBackends(results.backends, labels)}`);
  if (results.transcode) console.log(`\n${renderTranscode(results.transcode)}`);
  if (results.dimse) console.log(`\n${renderDimse(results.dimse)}`);
  if (results.byHand) console.log(`\n${renderByHand(results.byHand)}`);
  if (results.qidoScale) console.log(`\n${renderQidoScale(results.qidoScale)}`);
  if (results.load) console.log(`\n${renderLoad(results.load)}`);
  console.log(`\nresults: ${jsonFile}`);
  const failed = [
    ...Object.entries(servers).flatMap(([name, s]) => (failuresOf(s).length ? [`${name} failed: ${failuresOf(s).join('; ')}`] : [])),
    ...Object.values(backends).flatMap((b) => (b.fromMainRun ? [] : backendFailures(b).map((f) => `PACS-lite ${BACKEND_LABELS[b.backend]} failed: ${f}`))),
    ...(transcode ? transcodeFailures(transcode).map((f) => `transcoding failed: ${f}`) : []),
    ...(dimse ? dimseFailures(dimse).map((f) => `DIMSE failed: ${f}`) : []),
    ...(byHand ? byHandFailures(byHand) : []),
    ...Object.values(qidoScale).flatMap((q) => qidoScaleFailures(q).map((f) => `QIDO at scale, ${q.dialect} failed: ${f}`)),
    ...(load ? loadFailures(load).map((f) => `load case failed: ${f}`) : []),
  ];
  for (const line of failed) console.log(line);
  return failed.length ? 1 : 0;
}

/**
 * One server from start to stop: ingest the corpus, then every read line. PACS-lite then has its access
 * control measured (restarted on the same data, see access.ts) and its audit trail counted. The data folder goes afterwards.
 */
async function benchServer(
  name: ServerName,
  settings: Settings,
  workDir: string,
  corpus: Corpus,
  scenario: Scenario,
  probes: ReadProbe[],
  profileDir?: string,
): Promise<ServerResults> {
  const serverDir = path.join(workDir, name);
  await fs.mkdir(serverDir);
  try {
    checkInterrupted();
    log(`starting ${name}`);
    const fresh = path.join(serverDir, 'one-at-a-time');
    if (name === 'orthanc') {
      const results = await loadAndRead(await startOrthanc(settings, serverDir), settings, corpus, probes);
      await ingestOneAtATime(results, () => startOrthanc(settings, fresh), corpus);
      return results;
    }

    // A new admin key each run: it is in no file and no log that outlives the run.
    const adminKey = randomAdminKey();
    const server = await startPacsLite(settings, serverDir, { adminKey, profileDir });
    const answeredBefore = answeredBy(server.dicomweb);
    const results = await loadAndRead(server, settings, corpus, probes);
    let answered = answeredBy(server.dicomweb) - answeredBefore;
    if (!results.error && !settings.ingestOnly) {
      checkInterrupted();
      log('pacs-lite: access control: restarted with PACS_ANONYMOUS_READ=true; API key, viewer token, staff session and no credential in turn');
      try {
        const open = await startPacsLite(settings, serverDir, { adminKey, anonymousRead: true });
        const openBefore = answeredBy(open.dicomweb);
        try {
          await whileRunning(open, async () => {
            results.accessControl = await measureAccessControl(open, probes, scenario, settings.reps, settings.lineSeconds, log);
          });
        } finally {
          answered += answeredBy(open.dicomweb) - openBefore;
        }
      } catch (e) {
        checkInterrupted();
        results.accessControl = { error: (e as Error).message };
        log(`pacs-lite access control failed: ${results.accessControl.error}`);
      }
    }
    // Counted once the server has stopped, which writes what the audit log still held.
    const access = results.accessControl && 'calls' in results.accessControl ? results.accessControl : undefined;
    try {
      results.audit = countAudit(server, corpus, results.error ? undefined : answered, access);
      log(`pacs-lite: ${results.audit.rows} audit rows for ${results.audit.requests} requests`);
    } catch (e) {
      results.error = [results.error, `cannot count the audit trail: ${(e as Error).message}`].filter(Boolean).join('; ');
      log(`pacs-lite: ${results.error}`);
    }
    await ingestOneAtATime(results, () => startPacsLite(settings, fresh, { adminKey }), corpus);
    return results;
  } finally {
    await fs.rm(serverDir, { recursive: true, force: true });
  }
}

/** Ingest then reads, on a server that is stopped afterwards; a failure is recorded in the results. */
async function loadAndRead(server: RunningServer, settings: Settings, corpus: Corpus, probes: ReadProbe[]): Promise<ServerResults> {
  const results: ServerResults = { version: server.version, reads: {} };
  await whileRunning(server, async () => {
    try {
      checkInterrupted();
      log(`${server.version}: STOW ingest of the corpus, ${INSTANCES_PER_REQUEST} instances per request, ${REQUESTS_IN_FLIGHT} requests in flight`);
      results.ingest = await ingest(server, corpus, log);
      log(`${server.name}: ${results.ingest.instancesPerSecond.toFixed(0)} instances/s, ${results.ingest.mbPerSecond.toFixed(1)} MB/s${settings.ingestOnly ? '' : '; reads'}`);
      if (!settings.ingestOnly) results.reads = await measureReads(server, probes, settings.reps, settings.lineSeconds, log);
    } catch (e) {
      results.error = (e as Error).message;
      log(`${server.name} failed: ${results.error}`);
    }
  });
  return results;
}

/**
 * The one-at-a-time line, on a server of its own with a fresh data folder (the main ingest's instances would all be
 * duplicates): a sample of the corpus sent one instance per request, each answer awaited before the next is sent.
 */
async function ingestOneAtATime(results: ServerResults, start: () => Promise<RunningServer>, corpus: Corpus): Promise<void> {
  if (results.error) return;
  checkInterrupted();
  const sample = oneAtATimeSample(corpus);
  const server = await start();
  log(`${server.version}: STOW ingest of ${sample.instances.length} instances into a fresh store, one per request, one request in flight`);
  await whileRunning(server, async () => {
    try {
      results.ingestOneAtATime = await ingest(server, sample, log, ONE_AT_A_TIME);
      log(`${server.name}: one at a time, ${results.ingestOneAtATime.instancesPerSecond.toFixed(0)} instances/s, ${results.ingestOneAtATime.mbPerSecond.toFixed(1)} MB/s`);
    } catch (e) {
      results.error = `one at a time: ${(e as Error).message}`;
      log(`${server.name} failed: ${results.error}`);
    }
  });
}

/** Runs `work`, then stops the server (also on Ctrl-C, through `running`). */
async function whileRunning(server: RunningServer, work: () => Promise<void>): Promise<void> {
  running.add(server);
  try {
    await work();
  } finally {
    dropConnections();
    await server.stop();
    running.delete(server);
  }
}

function corpusSummary(corpus: Corpus): NonNullable<BenchResults['corpus']> {
  return { origin: corpus.origin, dir: corpus.dir, instances: corpus.instances.length, studies: corpus.studies.length, bytes: corpus.bytes };
}

function describeScenario(s: Scenario, plan: RenderPlan): Record<string, string> {
  return {
    'metadata and frame series': `${s.series.modality}, ${s.series.instances.length} instances`,
    'deep frame': s.multiFrame ? `frame ${s.multiFrame.frame} of ${s.multiFrame.instances.length} instance(s) of ${s.multiFrame.instances[0]!.frames} frames` : 'none in corpus',
    'study list': `/studies?${decodeURIComponent(s.studyList.query)} (${s.studyList.expected} answers)`,
    'filtered study list': `/studies?${decodeURIComponent(s.filteredStudyList.query)} (${s.filteredStudyList.expected} answers)`,
    ...(plan.ct ? { 'rendered CT': plan.ct.description } : {}),
    ...(plan.cr ? { 'rendered CR': plan.cr.description } : {}),
    ...(plan.thumbnail ? { thumbnail: plan.thumbnail.description } : {}),
  };
}

function rowLabels(s: Scenario, plan: RenderPlan): Record<string, string> {
  return {
    seriesMetadata: `series metadata (${s.series.instances.length} ${s.series.modality})`,
    seriesFrame: `${s.series.modality} frame 1`,
    deepFrame: `multi-frame frame ${s.multiFrame?.frame ?? ''}`,
    studyList: 'QIDO study list',
    filteredStudyList: 'QIDO name+date filter',
    ctRendered: plan.ct?.label ?? 'CT rendered',
    crRendered: plan.cr?.label ?? 'CR rendered',
    thumbnail: plan.thumbnail?.label ?? 'thumbnail',
  };
}

function stamp(d: Date): string {
  return d.toISOString().replace(/[:.]/g, '-');
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (e) {
  if (!interrupted()) log(`benchmark failed: ${(e as Error).stack ?? e}`);
} finally {
  await cleanUp();
}
process.exit(interrupted() ? 130 : exitCode);
