import { Hono } from 'hono';
import { z } from 'zod';
import { allow } from '../auth/middleware.js';
import { ROLES } from '../auth/principal.js';
import type { ApiKeyRecord } from '../auth/records.js';
import type { Env, Services } from '../context.js';
import { assertUid } from '../dicom/uid.js';
import { pathScope } from '../dicomweb/path-uids.js';
import { BadRequest, NotFound } from '../errors.js';
import { noQuery, type Operation } from './openapi.js';
import { parseBody, parseQuery } from './params.js';

const DEFAULT_AUDIT_LIMIT = 1000;
const MAX_AUDIT_LIMIT = 10_000;

/** Unknown fields are refused, not ignored: `{"expires": "90d"}` would otherwise make a key that never expires. */
export const newKey = z.strictObject({
  name: z.string().trim().min(1).max(200),
  role: z.enum(ROLES),
  /** Days until the key stops working; absent, it works until revoked. */
  expires_in_days: z.number().positive().max(3650).optional(),
});

const iso = z.string().describe('ISO 8601 time');
export const keyResponse = z.object({
  id: z.string(),
  name: z.string(),
  role: z.enum(ROLES),
  hint: z.string().describe('the first characters of the key, to tell keys apart'),
  created_at: iso.nullable(),
  expires_at: iso.nullable(),
  revoked_at: iso.nullable(),
});
export const createdKeyResponse = keyResponse.extend({ key: z.string().describe('the key itself: shown only in this answer') });
export const auditQuery = z.strictObject({
  study: z.string().optional().describe('events of this Study Instance UID'),
  credential: z.string().optional().describe('`key:<id>`, `user:<login>`, `token:<jti>`, `ae:<AE title>`, `anonymous`, `none`'),
  since: z.string().optional().describe('ISO 8601 time, inclusive'),
  until: z.string().optional().describe('ISO 8601 time, inclusive'),
  limit: z.string().optional().describe(`events, newest first (${DEFAULT_AUDIT_LIMIT}; at most ${MAX_AUDIT_LIMIT})`),
});
export const auditEventResponse = z.object({
  at: iso,
  credential: z.string(),
  ip: z.string().nullable(),
  method: z.string(),
  path: z.string(),
  query: z.string().nullable(),
  studyUid: z.string().nullable(),
  seriesUid: z.string().nullable(),
  sopUid: z.string().nullable(),
  status: z.number(),
  requestId: z.string(),
});

export const accessOperations: Operation[] = [
  {
    method: 'post', path: '/keys', id: 'createKey', tag: 'Access', access: 'admin', body: newKey,
    summary: 'Create an API key', description: 'The key is in this answer only; the server keeps its hash.',
    responses: { 201: { description: 'the key', json: createdKeyResponse } },
  },
  { method: 'get', path: '/keys', id: 'listKeys', tag: 'Access', access: 'admin', query: noQuery, summary: 'Every API key, without the keys themselves', responses: { 200: { description: 'the keys', json: z.array(keyResponse) } } },
  { method: 'delete', path: '/keys/{id}', id: 'revokeKey', tag: 'Access', access: 'admin', pathParams: { id: 'the key\'s id' }, summary: 'Revoke an API key', responses: { 204: { description: 'revoked' } } },
  {
    method: 'delete', path: '/viewer-tokens/{jti}', id: 'revokeViewerLink', tag: 'Viewer links', access: 'admin', pathParams: { jti: 'the link\'s token id, as issued' },
    summary: 'Revoke one viewer link', responses: { 204: { description: 'revoked' } },
  },
  {
    method: 'delete', path: '/studies/{study}/viewer-tokens', id: 'revokeStudyViewerLinks', tag: 'Viewer links', access: 'admin', pathParams: { study: 'the Study Instance UID' },
    summary: 'Revoke every viewer link of a study issued so far', responses: { 204: { description: 'revoked' } },
  },
  { method: 'get', path: '/audit', id: 'auditTrail', tag: 'Access', access: 'admin', query: auditQuery, summary: 'The audit trail, newest first', responses: { 200: { description: 'the events', json: z.array(auditEventResponse) } } },
];

/** Administration of access: API keys, viewer-token revocation and the audit trail; admin keys only. */
export function accessApi(services: Services) {
  const { auth } = services;
  const router = new Hono<Env>();
  router.use('/keys/*', allow('admin'));
  router.use('/keys', allow('admin'));
  router.use('/viewer-tokens/*', allow('admin'));
  router.use('/studies/:study/viewer-tokens', allow('admin'));
  router.use('/audit', allow('admin'));

  router.post('/keys', async (c) => {
    const { name, role, expires_in_days } = await parseBody(newKey, c.req);
    const { key, record } = await auth.keys.create({ name, role, expiresAt: expires_in_days ? Date.now() + expires_in_days * 86_400_000 : undefined });
    c.header('Cache-Control', 'no-store');
    return c.json<z.infer<typeof createdKeyResponse>>({ ...keyJson(record), key }, 201);
  });

  router.get('/keys', async (c) => {
    parseQuery(noQuery, c.req.query());
    return c.json((await auth.keys.list()).map(keyJson));
  });

  router.delete('/keys/:id', async (c) => {
    if (!(await auth.keys.revoke(c.req.param('id')))) throw new NotFound('no API key has that id');
    return c.body(null, 204);
  });

  router.delete('/viewer-tokens/:jti', async (c) => {
    const jti = c.req.param('jti');
    if (!/^[0-9a-f-]{36}$/i.test(jti)) throw new BadRequest('a viewer token id (jti) is a UUID');
    await auth.tokens.revoke(jti);
    return c.body(null, 204);
  });

  router.delete('/studies/:study/viewer-tokens', async (c) => {
    await auth.tokens.revokeStudy(pathScope(c).studyUid);
    return c.body(null, 204);
  });

  router.get('/audit', async (c) => {
    const q = parseQuery(auditQuery, c.req.query());
    const events = await auth.audit.query({
      studyUid: q.study ? assertUid('study', q.study) : undefined,
      credential: q.credential || undefined,
      since: timeParam(q.since, 'since'),
      until: timeParam(q.until, 'until'),
      limit: Math.min(q.limit ? wholeNumber(q.limit, 'limit') : DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT),
    });
    return c.json(events.map((e): z.infer<typeof auditEventResponse> => ({ ...e, at: new Date(e.at).toISOString() })));
  });

  return router;
}

function keyJson(record: ApiKeyRecord): z.infer<typeof keyResponse> {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    id: record.id,
    name: record.name,
    role: record.role,
    hint: record.hint,
    created_at: iso(record.createdAt),
    expires_at: iso(record.expiresAt),
    revoked_at: iso(record.revokedAt),
  };
}

function timeParam(raw: string | undefined, name: string): number | undefined {
  if (!raw) return undefined;
  const ms = Date.parse(raw);
  if (Number.isNaN(ms)) throw new BadRequest(`${name} must be an ISO 8601 time such as 2026-11-24T08:00:00Z, not "${raw}"`);
  return ms;
}

function wholeNumber(raw: string, name: string): number {
  if (!/^\d+$/.test(raw)) throw new BadRequest(`${name} must be a whole number, not "${raw}"`);
  return Number(raw);
}
