import { assertUid, isValidUid } from '../dicom/uid.js';

/** DESIGN decision 1: object keys are built from validated UIDs only. */
export function instanceKey(study: string, series: string, sop: string): string {
  return `studies/${assertUid('StudyInstanceUID', study)}/series/${assertUid('SeriesInstanceUID', series)}/instances/${assertUid('SOPInstanceUID', sop)}.dcm`;
}

/** The UIDs an instance key was built from; undefined for any other key (a stray file, a half-written name). */
export function instanceKeyParts(key: string): { studyUid: string; seriesUid: string; sopUid: string } | undefined {
  const m = /^studies\/([^/]+)\/series\/([^/]+)\/instances\/([^/]+)\.dcm$/.exec(key);
  if (!m || ![m[1], m[2], m[3]].every(isValidUid)) return undefined;
  return { studyUid: m[1]!, seriesUid: m[2]!, sopUid: m[3]! };
}

/**
 * Derived objects (DESIGN: rendered images, thumbnails) live beside nothing else, under `derived/`, one folder
 * per instance, so that deleting an instance, a series or a study removes them with one prefix.
 */
export function derivedPrefix(scope: { studyUid: string; seriesUid?: string; sopUid?: string }): string {
  let prefix = `derived/studies/${assertUid('StudyInstanceUID', scope.studyUid)}/`;
  if (scope.seriesUid === undefined) return prefix;
  prefix += `series/${assertUid('SeriesInstanceUID', scope.seriesUid)}/`;
  if (scope.sopUid === undefined) return prefix;
  return `${prefix}instances/${assertUid('SOPInstanceUID', scope.sopUid)}/`;
}

/**
 * A rendering of one frame of one version of an instance: the instance's SHA-256 is part of the name, so a
 * replaced instance can never answer with an image of its former pixels, whatever a cleanup missed.
 */
export function renderedKey(
  instance: { studyUid: string; seriesUid: string; sopUid: string; sha256: string },
  frame: number,
  optionsHash: string,
  extension: 'jpg' | 'png' | 'webp',
): string {
  if (!/^[0-9a-f]{64}$/.test(instance.sha256)) throw new Error(`"${instance.sha256}" is not a SHA-256`);
  if (!Number.isSafeInteger(frame) || frame < 1) throw new Error(`frame ${frame} is not a frame number`);
  if (!/^[0-9a-f]{8,64}$/.test(optionsHash)) throw new Error(`"${optionsHash}" is not an options hash`);
  const prefix = derivedPrefix({ studyUid: instance.studyUid, seriesUid: instance.seriesUid, sopUid: instance.sopUid });
  return `${prefix}${instance.sha256.slice(0, 16)}-f${frame}-${optionsHash}.${extension}`;
}
