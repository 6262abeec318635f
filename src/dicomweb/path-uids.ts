import type { Context } from 'hono';
import type { Scope } from '../catalog/catalog.js';
import type { Env } from '../context.js';
import { assertUid } from '../dicom/uid.js';

const NAMES = { study: 'StudyInstanceUID in the URL', series: 'SeriesInstanceUID in the URL', instance: 'SOPInstanceUID in the URL' } as const;

/**
 * The study, series and instance a route's path names (`:study`, `:series`, `:instance`), whichever it has, each
 * checked here as a DICOM UID: a malformed one is a 400 that says which and why, before anything is looked up.
 */
export function pathUids(c: Context<Env>): Partial<Scope> {
  return { studyUid: uidParam(c, 'study'), seriesUid: uidParam(c, 'series'), sopUid: uidParam(c, 'instance') };
}

/** The scope of a route under `/studies/:study`. */
export function pathScope(c: Context<Env>): Scope {
  const { studyUid, ...below } = pathUids(c);
  return { studyUid: assertUid(NAMES.study, studyUid), ...below };
}

function uidParam(c: Context<Env>, name: keyof typeof NAMES): string | undefined {
  const value = c.req.param(name);
  return value === undefined ? undefined : assertUid(NAMES[name], value);
}
