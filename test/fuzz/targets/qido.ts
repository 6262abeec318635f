import fc from 'fast-check';
import { Crash, type Target } from '../harness.js';
import { openApp } from '../../helpers/app.js';
import { labels, recordsOf, seriesUid, studyUid } from '../../fixtures/qido-studies.js';

const KEYS = [
  'StudyInstanceUID', 'SeriesInstanceUID', 'SOPInstanceUID', 'SOPClassUID', 'PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex',
  'StudyDate', 'StudyTime', 'AccessionNumber', 'StudyID', 'StudyDescription', 'ReferringPhysicianName', 'ModalitiesInStudy', 'Modality',
  'SeriesNumber', 'SeriesDescription', 'SeriesDate', 'SeriesTime', 'BodyPartExamined', 'InstanceNumber', 'NumberOfFrames', 'Rows', 'Columns',
  '00100010', '0020000D', '00080061', 'limit', 'offset', 'fuzzymatching', 'includefield', 'token', 'PixelData', 'ReferencedSeriesSequence.Modality',
  'NotAKeyword', '7FE00010', '__proto__', '',
];

const uid = fc.constantFrom(studyUid('muller'), seriesUid('muller', 0), '1.2.3', '0.0', '01.2', '1..2', '1.2.840.10008.5.1.4.1.1.7', `1.${'2'.repeat(70)}`);
/** Values as clinics type them, and as an attacker does: wildcards, ranges, lists, names with groups, LIKE specials. */
const value = fc.oneof(
  fc.constantFrom('Müller^Jürgen', 'mül*', '*', '', '?', 'PID-1', 'ACC_1', '100%', 'dir\\sub', 'CT', 'CT\\MR', 'MR,CT', 'Yamada^Tarou=山田^太郎=やまだ^たろう'),
  fc.constantFrom('20240115', '20240115-', '-20240115', '20240115-20240201', '2024011', '20240230', '1015', '101530.123456', '10:15', '25', '-', '1-2-3'),
  fc.constantFrom('1', '-1', '+7', '9007199254740993', '1e3', 'true', 'false', 'all', '00100010,StudyDate', '0', '10000', '99999999999'),
  uid,
  fc.array(uid, { minLength: 2, maxLength: 300 }).map((l) => l.join(',')),
  fc.array(fc.constantFrom('CT', 'MR', 'C*', '?R', ''), { minLength: 2, maxLength: 300 }).map((l) => l.join('\\')),
  fc.array(fc.constantFrom('ja', 'do', 'müller', '^', '=', ' ', '*', '%', '_'), { minLength: 1, maxLength: 60 }).map((l) => l.join(' ')),
  fc.string({ unit: fc.constantFrom('a', 'É', '山', '*', '?', '-', '\\', ',', '=', '^', ' ', '%', '_', "'", '"', '\0', '\u{1F600}', '\uD800'), maxLength: 40 }),
  fc.string({ maxLength: 40 }),
);
/** Mostly encoded (a lone surrogate as U+FFFD, as a browser would); sometimes raw, so that stray `%`, `&`, `#` and broken escapes reach the parser. */
const encoded = fc.oneof({ arbitrary: value.map((v) => encodeURIComponent(Buffer.from(v).toString())), weight: 5 }, { arbitrary: value, weight: 1 }, { arbitrary: fc.constantFrom('%', '%ZZ', '%E0%A4', '%C3%28'), weight: 1 });

const PATHS = ['/studies', '/series', '/instances', `/studies/${studyUid('muller')}/series`, `/studies/${studyUid('muller')}/instances`,
  `/studies/${studyUid('muller')}/series/${seriesUid('muller', 0)}/instances`, '/studies/1.02/series', '/studies/%ZZ/series'];

/**
 * The QIDO-RS parameter parser and matching, through the real app over a real SQLite index of the matching
 * fixtures: whatever the query, the answer is a result or a 4xx with a reason, never a 500.
 */
export const qido: Target<string> = {
  name: 'qido',
  extension: '.txt',
  async open() {
    const server = await openApp();
    for (const label of labels) await server.services.catalog.index(recordsOf(label), false);
    return {
      arbitrary: fc
        .tuple(fc.constantFrom(...PATHS), fc.array(fc.tuple(fc.constantFrom(...KEYS), encoded), { maxLength: 6 }))
        .map(([path, params]) => `/dicom-web${path}?${params.map(([k, v]) => `${k}=${v}`).join('&')}`),
      async check(url) {
        const response = await server.app.request(`http://127.0.0.1${url}`, {
          headers: { Authorization: `Bearer ${server.adminKey}`, Accept: 'application/dicom+json' },
        });
        const text = await response.text();
        if (response.status >= 500) throw new Crash(`${response.status}: ${text.slice(0, 300)}`);
        if (response.status >= 400) {
          const body = JSON.parse(text) as { error?: unknown; detail?: unknown };
          if (typeof body.error !== 'string' || typeof body.detail !== 'string') throw new Crash(`${response.status} without {error, detail}: ${text.slice(0, 300)}`);
        } else if (!Array.isArray(JSON.parse(text))) throw new Crash(`${response.status} is not a JSON array: ${text.slice(0, 300)}`);
      },
      encode: (url) => Buffer.from(url),
      decode: (file) => file.toString(),
      close: () => server.close(),
    };
  },
};
