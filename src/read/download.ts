import type { Catalog, Scope, StoredInstance } from '../catalog/catalog.js';
import { dicomdir, type DirectorySeries } from '../dicom/dicomdir.js';
import { firstString, type DicomJson } from '../dicom/json.js';
import { Tag } from '../dicom/tags.js';
import type { ReadService } from './read-service.js';
import type { ZipEntry } from './zip.js';

/** `readable`: folders and names a person reads; `media`: a CD's file-set with its DICOMDIR, for burning or another PACS. */
export type DownloadLayout = 'readable' | 'media';

/** A name part: long enough to tell studies and series apart, short enough for every file system's paths. */
const MAX_PART = 48;
/** Names Windows keeps for devices, whatever the extension. */
const RESERVED = /^(con|prn|aux|nul|com\d|lpt\d)$/i;

/**
 * A study or series as the files of a ZIP, each as stored, under names a person can read on any system:
 * `<PatientName>_<PatientID>/<StudyDate>_<StudyDescription>/<SeriesNumber>_<Modality>_<SeriesDescription>/<InstanceNumber>.dcm`.
 * Every object is checked present before the archive starts, and against its SHA-256 as it is read.
 */
export async function downloadOf(
  catalog: Pick<Catalog, 'studies' | 'series'>,
  reads: Pick<ReadService, 'instances' | 'assertPresent' | 'instanceStream'>,
  scope: Scope,
  layout: DownloadLayout = 'readable',
): Promise<{ fileName: string; entries: ZipEntry[] }> {
  const instances = await reads.instances(scope);
  await reads.assertPresent(instances);
  const [study] = await catalog.studies({ level: 'study', studyUid: scope.studyUid, keys: [], fuzzy: false, limit: 1, offset: 0 });
  const studyJson = JSON.parse(study?.json ?? '{}') as DicomJson;
  const series = await catalog.series({ level: 'series', studyUid: scope.studyUid, keys: [], fuzzy: false, limit: (study?.numSeries ?? 0) + 1, offset: 0 });
  const seriesJson = new Map(series.map((row) => [row.seriesUid, JSON.parse(row.json) as DicomJson]));
  const text = (json: DicomJson | undefined, tag: string) => (json && firstString(json, tag)) || '';
  const patientFolder = part(`${text(studyJson, Tag.PatientName).replaceAll('^', ' ')}_${text(studyJson, Tag.PatientID)}`);
  const studyFolder = part(`${text(studyJson, Tag.StudyDate)}_${text(studyJson, Tag.StudyDescription)}`);
  const sorted = [...instances].sort(bySeriesNumber(seriesJson));
  const fileName = `${patientFolder}_${studyFolder}${scope.seriesUid ? `_${part(text(seriesJson.get(scope.seriesUid), Tag.SeriesDescription) || scope.seriesUid)}` : ''}.zip`;
  const entry = (name: string, instance: StoredInstance): ZipEntry => ({ name, size: instance.size, modified: new Date(), body: () => reads.instanceStream(instance) });
  if (layout === 'media') return { fileName, entries: mediaEntries(studyJson, seriesJson, sorted, entry) };
  const taken = new Set<string>();
  const entries = sorted.map((instance): ZipEntry => {
    const s = seriesJson.get(instance.seriesUid);
    const seriesFolder = part(`${text(s, Tag.SeriesNumber)}_${text(s, Tag.Modality)}_${text(s, Tag.SeriesDescription)}`);
    const number = instanceNumber(instance);
    const base = `${patientFolder}/${studyFolder}/${seriesFolder}/${number === undefined ? instance.sopUid : String(number).padStart(4, '0')}`;
    let name = `${base}.dcm`;
    for (let n = 2; taken.has(name.toLowerCase()); n++) name = `${base}_${n}.dcm`;
    taken.add(name.toLowerCase());
    return entry(name, instance);
  });
  return { fileName, entries };
}

/**
 * The layout of a CD (PS3.10 8, PS3.12): a DICOMDIR first, then the files under IDs the standard allows
 * (`DICOM/PAT1/STUDY1/SER00001/IM000001`: upper case, at most 8 characters a component, no extension).
 */
function mediaEntries(studyJson: DicomJson, seriesJson: Map<string, DicomJson>, sorted: StoredInstance[], entry: (name: string, instance: StoredInstance) => ZipEntry): ZipEntry[] {
  const series: DirectorySeries[] = [];
  const files: ZipEntry[] = [];
  let current: DirectorySeries | undefined;
  let currentUid = '';
  for (const instance of sorted) {
    if (!current || instance.seriesUid !== currentUid) {
      current = { json: seriesJson.get(instance.seriesUid) ?? {}, files: [] };
      currentUid = instance.seriesUid;
      series.push(current);
    }
    const fileId = ['DICOM', 'PAT1', 'STUDY1', `SER${String(series.length).padStart(5, '0')}`, `IM${String(current.files.length + 1).padStart(6, '0')}`];
    current.files.push({ fileId, sopClassUid: instance.sopClassUid, sopInstanceUid: instance.sopUid, transferSyntaxUid: instance.transferSyntaxUid, json: JSON.parse(instance.json) as DicomJson });
    files.push(entry(fileId.join('/'), instance));
  }
  const directory = dicomdir({ json: studyJson, series });
  return [{ name: 'DICOMDIR', size: directory.length, modified: new Date(), body: async function* () { yield directory; } }, ...files];
}

/** Letters, digits, `.`, `-` and `_` of any script; the rest become `_`; never empty, a device name or a dot name. */
function part(raw: string): string {
  const cleaned = raw.normalize('NFC').replace(/[^\p{L}\p{N}.\-]+/gu, '_').replace(/_+/g, '_').replace(/^[_.]+|[_.]+$/g, '').slice(0, MAX_PART);
  if (!cleaned) return 'unknown';
  return RESERVED.test(cleaned) ? `${cleaned}_` : cleaned;
}

function instanceNumber(instance: StoredInstance): number | undefined {
  const value = (JSON.parse(instance.json) as DicomJson)[Tag.InstanceNumber]?.Value?.[0];
  const n = Number(value);
  return value === undefined || value === null || !Number.isInteger(n) ? undefined : n;
}

/**
 * Series by number: the order a CD viewer lists them in. The sort is stable, and the index gives each series'
 * instances in InstanceNumber order already.
 */
function bySeriesNumber(seriesJson: Map<string, DicomJson>): (a: StoredInstance, b: StoredInstance) => number {
  const seriesNumber = (i: StoredInstance) => Number(seriesJson.get(i.seriesUid)?.[Tag.SeriesNumber]?.Value?.[0] ?? Number.MAX_SAFE_INTEGER);
  return (a, b) => seriesNumber(a) - seriesNumber(b) || (a.seriesUid < b.seriesUid ? -1 : a.seriesUid > b.seriesUid ? 1 : 0);
}
