import { Hono } from 'hono';
import { z } from 'zod';
import { allow } from '../auth/middleware.js';
import { ROLES } from '../auth/principal.js';
import type { ApiKeyRecord } from '../auth/records.js';
import type { Env, Services } from '../context.js';
import { assertUid } from '../dicom/uid.js';
import { pathScope } from '../dicomweb/path-uids.js';
import { BadRequest, NotFound } from '../errors.js';

const DEFAULT_AUDIT_LIMIT = 1000;
const MAX_AUDIT_LIMIT = 10_000;

/** Unknown fields are refused, not ignored: `{"expires": "90d"}` would otherwise make a key that never expires. */
export const newKey = z.strictObject({
  name: z.string().trim().min(1).max(200),
  role: z.enum(ROLES),
  /** Days until the key stops working; absent, it works until revoked. */
  expires_in_days: z.number().positive().max(3650).optional(),
});

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
    const body = newKey.safeParse(await c.req.json().catch(() => undefined));
    if (!body.success) throw new BadRequest(`send JSON {"name": "…", "role": "${ROLES.join('" | "')}", "expires_in_days"?: n}: ${body.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`);
    const { name, role, expires_in_days } = body.data;
    const { key, record } = await auth.keys.create({ name, role, expiresAt: expires_in_days ? Date.now() + expires_in_days * 86_400_000 : undefined });
    c.header('Cache-Control', 'no-store');
    return c.json({ ...keyJson(record), key }, 201);
  });

  router.get('/keys', async (c) => c.json((await auth.keys.list()).map(keyJson)));

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
    const q = c.req.query();
    const events = await auth.audit.query({
      studyUid: q.study ? assertUid('study', q.study) : undefined,
      credential: q.credential || undefined,
      since: timeParam(q.since, 'since'),
      until: timeParam(q.until, 'until'),
      limit: Math.min(q.limit ? wholeNumber(q.limit, 'limit') : DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT),
    });
    return c.json(events.map((e) => ({ ...e, at: new Date(e.at).toISOString() })));
  });

  return router;
}

function keyJson(record: ApiKeyRecord) {
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
