import fs from 'node:fs/promises';
import path from 'node:path';
import { NeedMoreBytes, parsePart10, type ParsedHeader } from '../src/dicom/parse.js';
import { frameRanges, numberOfFrames } from '../src/dicom/frames.js';
import { TransferSyntax } from '../src/dicom/transfer-syntax.js';
import { newUid } from '../src/dicom/write.js';
import { syntheticInstance, type SopClass } from '../test/fixtures/synthetic.js';
import { checkInterrupted } from './interrupt.js';
import type { Settings } from './settings.js';

/** Bump when the recipe below changes, so a cached corpus of the old recipe is not reused. */
const CORPUS_VERSION = 2;

export type CorpusInstance = {
  /** Relative to the corpus folder. */
  file: string;
  size: number;
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  modality: string;
  transferSyntaxUid: string;
  frames: number;
};

export type CorpusStudy = { studyUid: string; patientName: string; studyDate: string; studyDescription: string };

export type Corpus = {
  dir: string;
  /** How it was obtained, for the report. */
  origin: string;
  instances: CorpusInstance[];
  studies: CorpusStudy[];
  bytes: number;
};

type Modality = keyof typeof SopClass;
type SeriesPlan = { modality: Modality; instances: number; rows: number; columns: number; frames?: number };

/**
 * The generated corpus, about 2 GB at scale 1: long CT series, multi-series MR, large CR, multi-frame XA,
 * and many small studies so that the study list has a clinic's worth of rows to search.
 * The scale multiplies the number of studies; below 1 series shrink too (never under 20 instances).
 */
function corpusPlan(scale: number): SeriesPlan[][] {
  const studies = (n: number) => Math.max(1, Math.round(n * scale));
  const length = (n: number) => Math.max(Math.min(n, 20), Math.round(n * Math.min(scale, 1)));
  const repeat = <T>(n: number, make: (i: number) => T) => Array.from({ length: n }, (_, i) => make(i));
  const SMALL_MODALITIES: Modality[] = ['MR', 'CT', 'CR', 'US'];
  return [
    ...repeat(studies(4), () => [{ modality: 'CT' as const, instances: length(300), rows: 512, columns: 512 }]),
    ...repeat(studies(6), () => repeat(3, () => ({ modality: 'MR' as const, instances: length(120), rows: 256, columns: 256 }))),
    ...repeat(studies(12), () => [{ modality: 'CR' as const, instances: 2, rows: 2048, columns: 2048 }]),
    ...repeat(studies(4), () => [{ modality: 'XA' as const, instances: 1, rows: 512, columns: 512, frames: 40 }]),
    ...repeat(studies(1500), (i) => [{ modality: SMALL_MODALITIES[i % SMALL_MODALITIES.length]!, instances: 4, rows: 256, columns: 256 }]),
  ];
}

/** The corpus named by the settings: a given folder, else the cached generated one (generated if missing). */
export async function loadCorpus(settings: Settings, log: (line: string) => void): Promise<Corpus> {
  if (settings.corpusDir) {
    log(`scanning ${settings.corpusDir} for DICOM files`);
    const corpus = await scanCorpus(settings.corpusDir, `folder ${settings.corpusDir}`);
    if (corpus.instances.length === 0) throw new Error(`BENCH_CORPUS_DIR ${settings.corpusDir} holds no DICOM Part 10 files`);
    return corpus;
  }
  const dir = path.join(settings.cacheDir, `v${CORPUS_VERSION}-scale-${settings.scale}`);
  const manifest = path.join(dir, 'manifest.json');
  const cached = await fs.readFile(manifest, 'utf8').catch(() => undefined);
  if (cached) return { ...(JSON.parse(cached) as Corpus), dir };

  // Generated beside its final place and renamed when complete: an interrupted run leaves no half corpus.
  const partial = `${dir}.partial-${process.pid}`;
  await fs.rm(partial, { recursive: true, force: true });
  await generateCorpus(partial, corpusPlan(settings.scale), log);
  const corpus = await scanCorpus(partial, `generated, scale ${settings.scale}`);
  await fs.writeFile(path.join(partial, 'manifest.json'), JSON.stringify({ ...corpus, dir: undefined }));
  await fs.rm(dir, { recursive: true, force: true });
  await fs.rename(partial, dir);
  return { ...corpus, dir };
}

const SURNAMES = ['Smith', 'Garcia', 'Müller', 'Nguyen', 'Rossi', 'Kowalski', 'Dubois', 'Silva', 'Tanaka', 'Andersen', 'Ivanova', 'Okafor', 'Haddad', 'Larsen', 'Moreau', 'Schmidt', 'Novak', 'Costa', 'Lindqvist', 'Johnson'];
const GIVEN_NAMES = ['Anna', 'Ben', 'Chloé', 'David', 'Eva', 'Farid', 'Grace', 'Hugo', 'Ines', 'Jonas'];
const BODY_PARTS = ['head', 'chest', 'abdomen', 'knee', 'spine'];
const FIRST_DAY = Date.UTC(2019, 0, 1);
const DAYS = 7 * 365;

/** Patient, date and description of study k: spread like a clinic's, the same on every generation. */
function studyIdentity(k: number, modality: Modality) {
  const patient = Math.floor(k / 2); // most patients come twice
  const day = new Date(FIRST_DAY + ((k * 7919) % DAYS) * 86_400_000).toISOString();
  return {
    patientName: `${SURNAMES[patient % SURNAMES.length]}^${GIVEN_NAMES[Math.floor(patient / SURNAMES.length) % GIVEN_NAMES.length]}`,
    patientID: `P${String(patient).padStart(6, '0')}`,
    studyDate: day.slice(0, 10).replaceAll('-', ''),
    studyTime: `${String(8 + (k % 10)).padStart(2, '0')}${String((k * 7) % 60).padStart(2, '0')}00`,
    accessionNumber: `ACC${String(k).padStart(7, '0')}`,
    studyDescription: `${modality} ${BODY_PARTS[k % BODY_PARTS.length]}`,
  };
}

async function generateCorpus(dir: string, plan: SeriesPlan[][], log: (line: string) => void): Promise<void> {
  const total = plan.flat().reduce((n, s) => n + s.instances * s.rows * s.columns * 2 * (s.frames ?? 1), 0);
  log(`generating a ${(total / 1e9).toFixed(2)} GB corpus in ${dir} (cached for later runs)`);
  let written = 0;
  let lastReport = Date.now();
  for (const [k, series] of plan.entries()) {
    checkInterrupted();
    const identity = { ...studyIdentity(k, series[0]!.modality), studyUID: newUid() };
    const studyDir = path.join(dir, `${String(k).padStart(5, '0')}-${series[0]!.modality}`);
    for (const [s, { modality, instances, rows, columns, frames }] of series.entries()) {
      const seriesDir = path.join(studyDir, `series-${s + 1}`);
      await fs.mkdir(seriesDir, { recursive: true });
      const seriesUID = newUid();
      const seriesDescription = `${modality} series ${s + 1}`;
      // One instance at a time (rather than syntheticSeries) so memory stays flat on 300-slice series.
      for (let i = 1; i <= instances; i++) {
        const bytes = syntheticInstance({ ...identity, modality, rows, columns, frames, seriesUID, seriesNumber: s + 1, seriesDescription, instanceNumber: i });
        await fs.writeFile(path.join(seriesDir, `${String(i).padStart(4, '0')}.dcm`), bytes);
        written += bytes.length;
      }
    }
    if (Date.now() - lastReport > 5000) {
      lastReport = Date.now();
      log(`  ${(written / 1e9).toFixed(2)} of ${(total / 1e9).toFixed(2)} GB`);
    }
  }
}

/** Every DICOM Part 10 file under dir, described from its header, in path order. */
export async function scanCorpus(dir: string, origin: string): Promise<Corpus> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  const files = entries
    .filter((e) => e.isFile() && e.name !== 'manifest.json')
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
  const instances: CorpusInstance[] = [];
  const studies = new Map<string, CorpusStudy>();
  for (const file of files) {
    const header = await readHeader(path.join(dir, file));
    if (!header) continue;
    const { parsed, size } = header;
    const ds = parsed.dataSet;
    instances.push({
      file,
      size,
      studyUid: parsed.studyInstanceUID,
      seriesUid: parsed.seriesInstanceUID,
      sopUid: parsed.sopInstanceUID,
      modality: ds.string('x00080060') ?? '',
      transferSyntaxUid: parsed.transferSyntaxUID,
      frames: parsed.pixelData ? numberOfFrames(parsed) : 0,
    });
    if (!studies.has(parsed.studyInstanceUID)) {
      studies.set(parsed.studyInstanceUID, {
        studyUid: parsed.studyInstanceUID,
        patientName: ds.string('x00100010') ?? '',
        studyDate: ds.string('x00080020') ?? '',
        studyDescription: ds.string('x00081030') ?? '',
      });
    }
  }
  return { dir, origin, instances, studies: [...studies.values()], bytes: instances.reduce((n, i) => n + i.size, 0) };
}

/** Columns × Rows of a stored instance, from its header: what a rendering at full size must measure. */
export async function imageSize(corpus: Corpus, instance: CorpusInstance): Promise<{ columns: number; rows: number }> {
  const header = await readHeader(path.join(corpus.dir, instance.file));
  if (!header) throw new Error(`${instance.file} is no longer a DICOM file`);
  const ds = header.parsed.dataSet;
  return { columns: ds.uint16('x00280011') ?? 0, rows: ds.uint16('x00280010') ?? 0 };
}

const FIRST_READ = 64 * 1024;

/** The parsed header of a Part 10 file, reading only as much of it as the header needs; undefined if not DICOM. */
async function readHeader(file: string): Promise<{ parsed: ParsedHeader; size: number } | undefined> {
  const handle = await fs.open(file, 'r');
  try {
    const { size } = await handle.stat();
    for (let want = Math.min(size, FIRST_READ); ; want = Math.min(size, want * 4)) {
      const buffer = Buffer.alloc(want);
      await handle.read(buffer, 0, want, 0);
      if (want < 132 || buffer.toString('latin1', 128, 132) !== 'DICM') return undefined;
      try {
        return { parsed: parsePart10(buffer, size), size };
      } catch (e) {
        if (!(e instanceof NeedMoreBytes) || want >= size) return undefined;
      }
    }
  } finally {
    await handle.close();
  }
}

/**
 * The bytes a server should answer for frame n (1-based) of a stored instance, or undefined when they
 * cannot be predicted without decoding (big endian, deflated): the answer is then checked by size only.
 * Only the header and the frame are read, so that checking an answer makes little garbage.
 */
export async function expectedFrame(corpus: Corpus, instance: CorpusInstance, n: number): Promise<Buffer | undefined> {
  const predictable = [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian] as string[];
  if (!predictable.includes(instance.transferSyntaxUid)) return undefined;
  const file = path.join(corpus.dir, instance.file);
  const header = await readHeader(file);
  if (!header) throw new Error(`${instance.file} is no longer a DICOM file`);
  const handle = await fs.open(file, 'r');
  try {
    const read = async (offset: number, length: number) => {
      const buffer = Buffer.alloc(length);
      await handle.read(buffer, 0, length, offset);
      return buffer;
    };
    const ranges = (await frameRanges(header.parsed, { size: header.size, read }))[n - 1];
    if (!ranges) throw new Error(`${instance.file} has no frame ${n}`);
    return Buffer.concat(await Promise.all(ranges.map(([offset, length]) => read(offset, length))));
  } finally {
    await handle.close();
  }
}
