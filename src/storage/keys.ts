import { assertUid } from '../dicom/uid.js';

/** DESIGN decision 1: object keys are built from validated UIDs only. */
export function instanceKey(study: string, series: string, sop: string): string {
  return `studies/${assertUid('StudyInstanceUID', study)}/series/${assertUid('SeriesInstanceUID', series)}/instances/${assertUid('SOPInstanceUID', sop)}.dcm`;
}

export function derivedKey(sop: string, name: string): string {
  if (!/^[a-z0-9._-]+$/i.test(name)) throw new Error(`derived object name ${name} is not a safe key part`);
  return `derived/${assertUid('SOPInstanceUID', sop)}/${name}`;
}
