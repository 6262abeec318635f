import { Hono } from 'hono';
import { z } from 'zod';
import { allow } from '../auth/middleware.js';
import type { TrashEntry } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { firstString, type DicomJson } from '../dicom/json.js';
import { Tag } from '../dicom/tags.js';
import { NotFound } from '../errors.js';
import { purge, restore } from '../trash/trash.js';
import { noQuery, type Operation } from './openapi.js';
import { countParam, parseQuery } from './params.js';

export const trashQuery = z.strictObject({
  limit: z.string().optional().describe('entries in a page (100; at most 1000)'),
  offset: z.string().optional().describe('entries to skip'),
});
export const trashEntryResponse = z.object({
  id: z.string(),
  deleted_at: z.string(),
  purge_after: z.string().describe('when the purge deletes it for good'),
  level: z.enum(['study', 'series', 'instance']),
  study_uid: z.string(),
  series_uid: z.string().nullable(),
  sop_instance_uid: z.string().nullable(),
  patient_id: z.string().nullable(),
  patient_name: z.string().nullable(),
  study_date: z.string().nullable(),
  study_description: z.string().nullable(),
  instances: z.number(),
  bytes: z.number(),
  reason: z.string(),
  deleted_by: z.string(),
});
export const restoredResponse = z.object({ restored: z.number(), already_stored: z.number().describe('instances stored again since the deletion: kept as they are now') });

const entryId = { id: 'the trash entry\'s id, as the DELETE answered it' };
export const trashOperations: Operation[] = [
  { method: 'get', path: '/trash', id: 'trash', tag: 'Store', access: 'admin', query: trashQuery, summary: 'What was deleted and can still be restored, newest first', responses: { 200: { description: 'the entries', json: z.array(trashEntryResponse) } } },
  {
    method: 'post', path: '/trash/{id}/restore', id: 'restoreTrash', tag: 'Store', access: 'admin', pathParams: entryId,
    summary: 'Put a deletion back whole', responses: { 200: { description: 'restored', json: restoredResponse } },
  },
  { method: 'delete', path: '/trash/{id}', id: 'purgeTrash', tag: 'Store', access: 'admin', pathParams: entryId, query: noQuery, summary: 'Purge a deletion now: its files are deleted for good', responses: { 204: { description: 'purged' } } },
];

/**
 * The trash (issue 15), admin only: every deletion of DICOMweb DELETE, restorable whole for PACS_TRASH_DAYS; the
 * audit trail keeps who restored or purged what.
 */
export function trashApi(services: Services) {
  const { catalog } = services;
  const router = new Hono<Env>();
  for (const path of ['/trash', '/trash/*']) router.use(path, allow('admin'));

  router.get('/trash', async (c) => {
    const q = parseQuery(trashQuery, c.req.query());
    const entries = await catalog.trashEntries(countParam(q.limit, 'limit', 1000) ?? 100, countParam(q.offset, 'offset', Number.MAX_SAFE_INTEGER) ?? 0);
    return c.json(entries.map(trashEntryJson));
  });

  router.post('/trash/:id/restore', async (c) => {
    const entry = await known(c.req.param('id'));
    c.set('auditStudyUids', [entry.studyUid]);
    const result = await restore({ catalog, durable: services.ingest.durable, log: c.var.log }, entry);
    if (!result) throw new NotFound('no trash entry has that id: it was restored or purged meanwhile');
    return c.json<z.infer<typeof restoredResponse>>({ restored: result.restored, already_stored: result.present });
  });

  router.delete('/trash/:id', async (c) => {
    parseQuery(noQuery, c.req.query());
    const entry = await known(c.req.param('id'));
    c.set('auditStudyUids', [entry.studyUid]);
    await purge({ catalog, store: services.store, durable: services.ingest.durable, log: c.var.log }, entry);
    return c.body(null, 204);
  });

  async function known(id: string): Promise<TrashEntry> {
    const entry = await catalog.trashEntry(id);
    if (!entry) throw new NotFound('no trash entry has that id: it was restored or purged');
    return entry;
  }

  return router;
}

export function trashEntryJson(e: TrashEntry): z.infer<typeof trashEntryResponse> {
  const study = JSON.parse(e.studyJson) as DicomJson;
  const text = (tag: string) => firstString(study, tag) ?? null;
  return {
    id: e.id,
    deleted_at: new Date(e.deletedAt).toISOString(),
    purge_after: new Date(e.purgeAfter).toISOString(),
    level: e.sopUid ? 'instance' : e.seriesUid ? 'series' : 'study',
    study_uid: e.studyUid,
    series_uid: e.seriesUid,
    sop_instance_uid: e.sopUid,
    patient_id: e.patientId,
    patient_name: text(Tag.PatientName),
    study_date: text(Tag.StudyDate),
    study_description: text(Tag.StudyDescription),
    instances: e.instances,
    bytes: Number(e.bytes),
    reason: e.reason,
    deleted_by: e.credential,
  };
}
