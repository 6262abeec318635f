import { randomBytes } from 'node:crypto';
import { assertUid, isValidUid } from '../dicom/uid.js';

/**
 * DESIGN decision 1: object keys are built from validated UIDs only. Each write of an instance gets a key of its own
 * (its version: the content's SHA-256 prefix and a random part), so uploads, overwrites and deletes of one instance,
 * on any replica, never meet on one key: the index row names the current version. Beside the instance's UID, not in
 * a folder of its own: a folder per instance would cost a directory and its fsync per upload on the filesystem.
 */
export function instanceKey(study: string, series: string, sop: string, version: string): string {
  if (!VERSION.test(version)) throw new Error(`"${version}" is not an object version`);
  return `studies/${assertUid('StudyInstanceUID', study)}/series/${assertUid('SeriesInstanceUID', series)}/instances/${assertUid('SOPInstanceUID', sop)}_${version}.dcm`;
}

/** A version no other write has: 16 hex digits of the content's SHA-256 (for a person reading keys), 12 random ones. */
export function newVersion(sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`"${sha256}" is not a SHA-256`);
  return `${sha256.slice(0, 16)}-${randomBytes(6).toString('hex')}`;
}

const VERSION = /^[0-9a-f]{16}-[0-9a-f]{12}$/;

/**
 * The UIDs an instance key was built from, the versioned `instances/<sop>_<version>.dcm` or the `instances/<sop>.dcm` of stores
 * written before versions (read in place); undefined for any other key (a stray file, a half-written name).
 */
export function instanceKeyParts(key: string): { studyUid: string; seriesUid: string; sopUid: string } | undefined {
  const m = /^studies\/([^/]+)\/series\/([^/]+)\/instances\/([^/_]+)(?:_([^/]+))?\.dcm$/.exec(key);
  if (!m || ![m[1], m[2], m[3]].every(isValidUid) || (m[4] !== undefined && !VERSION.test(m[4]))) return undefined;
  return { studyUid: m[1]!, seriesUid: m[2]!, sopUid: m[3]! };
}

/**
 * The first hex digits of the SHA-256 that a versioned instance key was named after (newVersion), undefined for any
 * other key: bytes found under the key can be told apart from the bytes that were stored there.
 */
export function versionedChecksumPrefix(key: string): string | undefined {
  const version = /_([^/_]+)\.dcm$/.exec(key)?.[1];
  return version !== undefined && VERSION.test(version) ? version.slice(0, 16) : undefined;
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

/**
 * A deflated instance's inflated copy (DESIGN decision 15): its bytes before the data set as stored, then the data set
 * inflated, which is what the frame and bulk data ranges recorded at ingest refer to. Named by the instance's SHA-256.
 */
export function inflatedKey(instance: { studyUid: string; seriesUid: string; sopUid: string; sha256: string }): string {
  if (!/^[0-9a-f]{64}$/.test(instance.sha256)) throw new Error(`"${instance.sha256}" is not a SHA-256`);
  return `${derivedPrefix({ studyUid: instance.studyUid, seriesUid: instance.seriesUid, sopUid: instance.sopUid })}${instance.sha256.slice(0, 16)}-inflated.dcm`;
}

/** An instance converted to Explicit VR Little Endian for a client that asked for it (PS3.18 8.7.3.4). */
export function explicitLittleEndianKey(instance: { studyUid: string; seriesUid: string; sopUid: string; sha256: string }): string {
  return inflatedKey(instance).replace(/-inflated\.dcm$/, '-explicit-le.dcm');
}
