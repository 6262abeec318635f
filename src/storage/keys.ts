import { assertUid } from '../dicom/uid.js';

/** DESIGN decision 1: object keys are built from validated UIDs only. */
export function instanceKey(study: string, series: string, sop: string): string {
  return `studies/${assertUid('StudyInstanceUID', study)}/series/${assertUid('SeriesInstanceUID', series)}/instances/${assertUid('SOPInstanceUID', sop)}.dcm`;
}

