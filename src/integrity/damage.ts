import type { Damage } from '../catalog/catalog.js';

/** One instance whose object is not what the index recorded at ingest. */
export type Finding = { studyUid?: string; seriesUid?: string; sopUid: string; objectKey: string; damage: Damage; detail: string };

/**
 * Instances a request needs whose objects are missing or not the bytes recorded at ingest, found before anything was
 * sent. Each was flagged in the index and logged; the request fails as a whole with their names.
 */
export class ObjectsDamaged extends Error {
  constructor(readonly findings: Finding[]) {
    const shown = findings.slice(0, 10).map((f) => `${f.sopUid} (${f.detail})`);
    const more = findings.length > shown.length ? ` and ${findings.length - shown.length} more` : '';
    super(`${findings.length} stored instance(s) cannot be sent: ${shown.join('; ')}${more}`);
  }
}

/** A whole-instance stream whose bytes turned out not to be those recorded: it is ended as an error, never cleanly. */
export class ObjectChanged extends Error {
  constructor(readonly finding: Finding) {
    super(`instance ${finding.sopUid} (${finding.objectKey}) ${finding.detail}`);
  }
}
