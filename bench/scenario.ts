import type { Corpus, CorpusInstance } from './corpus.js';

/**
 * OHIF 3.13's study list asks for these (mapParams in @ohif/extension-default), with Accept: application/dicom+json.
 * OHIF joins the includefield attributes with commas; they are sent here as repeated parameters, which PS3.18
 * defines as the same query, because Orthanc's DICOMweb plugin 1.7 ignores a comma-separated list and would
 * answer without StudyDescription, doing less work than asked.
 */
export const OHIF_STUDY_LIST: Array<[string, string]> = [
  ['limit', '101'],
  ['offset', '0'],
  // viewer/app-config.js sets supportsFuzzyMatching, so OHIF sends true to PACS-lite.
  ['fuzzymatching', 'true'],
  ...['00081030', '00080060', '00080090', '00100030'].map((tag): [string, string] => ['includefield', tag]),
];

export type StudyQuery = { label: string; query: string; expected: number };

/** What the read lines ask for, chosen from the corpus, with the answers a correct server must give. */
export type Scenario = {
  /** The longest single-frame series (CT preferred): its metadata, and the first frame of its slices. */
  series: { studyUid: string; seriesUid: string; modality: string; instances: CorpusInstance[] };
  /** A frame deep inside the instances with the most frames, if any instance has several. */
  multiFrame?: { instances: CorpusInstance[]; frame: number };
  studyList: StudyQuery;
  filteredStudyList: StudyQuery;
};

export function scenarioOf(corpus: Corpus): Scenario {
  return { series: longestSeries(corpus), multiFrame: multiFrameTarget(corpus), studyList: openStudyList(corpus), filteredStudyList: filteredStudyList(corpus) };
}

function longestSeries(corpus: Corpus): Scenario['series'] {
  const bySeries = new Map<string, CorpusInstance[]>();
  for (const instance of corpus.instances) {
    if (instance.frames !== 1) continue;
    const list = bySeries.get(instance.seriesUid) ?? [];
    list.push(instance);
    bySeries.set(instance.seriesUid, list);
  }
  const ranked = [...bySeries.values()].sort((a, b) => Number(b[0]!.modality === 'CT') - Number(a[0]!.modality === 'CT') || b.length - a.length);
  const instances = ranked[0];
  if (!instances) throw new Error('the corpus has no single-frame image to fetch');
  const { studyUid, seriesUid, modality } = instances[0]!;
  return { studyUid, seriesUid, modality, instances };
}

const DEEP_FRAME = 37;

function multiFrameTarget(corpus: Corpus): Scenario['multiFrame'] {
  const most = Math.max(0, ...corpus.instances.map((i) => i.frames));
  if (most < 2) return undefined;
  return { instances: corpus.instances.filter((i) => i.frames === most), frame: Math.min(DEEP_FRAME, most) };
}

/** The list OHIF shows when it opens: no filter, first page. */
function openStudyList(corpus: Corpus): StudyQuery {
  return { label: 'QIDO study list, OHIF opening', query: new URLSearchParams(OHIF_STUDY_LIST).toString(), expected: Math.min(101, corpus.studies.length) };
}

/**
 * The list after someone types part of a name and picks a year, as OHIF sends it (`*text*` wildcards):
 * the name and year of a study from the middle of the corpus, so that some studies match at any scale.
 */
function filteredStudyList(corpus: Corpus): StudyQuery {
  const middle = corpus.studies.slice(Math.floor(corpus.studies.length / 2));
  const pick = [...middle, ...corpus.studies].find((s) => /^[A-Za-z]{3}/.test(s.patientName) && /^\d{8}$/.test(s.studyDate)) ?? corpus.studies[0]!;
  const fragment = pick.patientName.slice(0, 3).toLowerCase();
  const year = pick.studyDate.slice(0, 4);
  const matching = corpus.studies.filter((s) => s.patientName.toLowerCase().includes(fragment) && s.studyDate.startsWith(year)).length;
  const query = new URLSearchParams([['PatientName', `*${fragment}*`], ...OHIF_STUDY_LIST, ['StudyDate', `${year}0101-${year}1231`]]);
  return { label: `QIDO study list, name *${fragment}* in ${year}`, query: query.toString(), expected: Math.min(101, matching) };
}
