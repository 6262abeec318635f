import { toDicomJson } from '../../../src/dicom/json.js';
import { DicomParseError, NeedMoreBytes, parsePart10 } from '../../../src/dicom/parse.js';
import { UidError } from '../../../src/dicom/uid.js';
import { refusesOnlyWith, type Target } from '../harness.js';
import { mutatedPart10 } from '../mutations.js';

/** How much of a file ingest may hand the parser first: the preamble, a small read, half of it. */
const prefixesOf = (size: number) => [132, 1024, Math.floor(size / 2)].filter((n) => n < size);

/** The Part 10 parser and DICOM JSON, on a whole file and on prefixes of it (which may ask for more bytes). */
export const part10: Target<Buffer> = {
  name: 'part10',
  extension: '.dcm',
  async open() {
    return {
      arbitrary: mutatedPart10(),
      async check(bytes) {
        await refusesOnlyWith([DicomParseError, UidError], async () => toDicomJson((await parsePart10(bytes)).dataSet, { bulkDataBase: 'studies/1/series/2/instances/3' }));
        for (const length of prefixesOf(bytes.length)) {
          await refusesOnlyWith([DicomParseError, UidError, NeedMoreBytes], () => parsePart10(bytes.subarray(0, length), bytes.length));
        }
      },
      encode: (bytes) => bytes,
      decode: (file) => file,
      async close() {},
    };
  },
};
