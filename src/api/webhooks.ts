import { randomBytes, randomUUID } from 'node:crypto';
import { Hono } from 'hono';
import { z } from 'zod';
import { allow } from '../auth/middleware.js';
import { EVENT_TYPES, type Catalog, type Delivery, type Webhook } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { BadRequest, NotFound } from '../errors.js';
import { RETRY_FOR_MS } from '../events/study-events.js';
import { checkTarget, WebhookTargetError } from '../events/targets.js';
import { noQuery, type Operation } from './openapi.js';
import { countParam, parseBody, parseQuery } from './params.js';

const MAX_WEBHOOKS = 50;

export const webhookBody = z.strictObject({
  url: z.string().max(2000),
  events: z.array(z.enum(EVENT_TYPES)).min(1).optional(),
  /** Generated when not given; shown once, in the answer to this request. */
  secret: z.string().min(16, 'secret must be at least 16 characters').max(200).optional(),
  allow_local: z.boolean().optional(),
  description: z.string().max(500).nullable().optional(),
});
export const webhookResponse = z.object({
  id: z.string(),
  url: z.string(),
  events: z.array(z.enum(EVENT_TYPES)),
  allow_local: z.boolean(),
  description: z.string().nullable(),
  created_at: z.string(),
});
export const createdWebhookResponse = webhookResponse.extend({ secret: z.string() });
export const deliveriesQuery = z.strictObject({
  status: z.enum(['pending', 'delivered', 'failed']).optional(),
  limit: z.string().optional().describe('deliveries in a page (100; at most 1000)'),
  offset: z.string().optional().describe('deliveries to skip'),
});
export const deliveryResponse = z.object({
  id: z.string(),
  webhook_id: z.string(),
  event: z.enum(EVENT_TYPES),
  study_uid: z.string(),
  status: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number(),
  created_at: z.string(),
  last_attempt_at: z.string().nullable(),
  last_status: z.number().nullable(),
  last_error: z.string().nullable(),
  next_attempt_at: z.string().nullable(),
  delivered_at: z.string().nullable(),
  body: z.string(),
});

const webhookId = { id: 'the webhook\'s id' };
const deliveryId = { id: 'the delivery\'s id' };
export const webhooksOperations: Operation[] = [
  { method: 'get', path: '/webhooks', id: 'listWebhooks', tag: 'Webhooks', access: 'admin', query: noQuery, summary: 'The webhooks, oldest first, without their secrets', responses: { 200: { description: 'the webhooks', json: z.array(webhookResponse) } } },
  {
    method: 'post', path: '/webhooks', id: 'createWebhook', tag: 'Webhooks', access: 'admin', body: webhookBody,
    summary: 'Add a webhook for study events',
    description: 'A URL whose host is or resolves to a loopback, link-local, multicast or unspecified address, or one of this server\'s, is refused unless allow_local is true. The secret is in this answer only.',
    responses: { 201: { description: 'the webhook, with its secret', json: createdWebhookResponse } },
  },
  { method: 'delete', path: '/webhooks/{id}', id: 'removeWebhook', tag: 'Webhooks', access: 'admin', pathParams: webhookId, summary: 'Remove a webhook and its deliveries', responses: { 204: { description: 'removed' } } },
  {
    method: 'get', path: '/webhooks/{id}/deliveries', id: 'webhookDeliveries', tag: 'Webhooks', access: 'admin', pathParams: webhookId, query: deliveriesQuery,
    summary: 'A webhook\'s deliveries, newest first', responses: { 200: { description: 'a page of deliveries', json: z.array(deliveryResponse) } },
  },
  { method: 'get', path: '/webhook-deliveries/{id}', id: 'webhookDelivery', tag: 'Webhooks', access: 'admin', pathParams: deliveryId, query: noQuery, summary: 'One delivery', responses: { 200: { description: 'the delivery', json: deliveryResponse } } },
  {
    method: 'post', path: '/webhook-deliveries/{id}/replay', id: 'replayWebhookDelivery', tag: 'Webhooks', access: 'admin', pathParams: deliveryId,
    summary: 'Send a delivery again from now, and retry it for another day', responses: { 200: { description: 'the delivery, pending', json: deliveryResponse } },
  },
];

/**
 * Webhooks (issue 16), admin only: the receivers of study events, and the outbox of their deliveries, each with its
 * last status and next try, and replayable.
 */
export function webhooksApi({ catalog }: Services) {
  const router = new Hono<Env>();
  for (const path of ['/webhooks', '/webhooks/*', '/webhook-deliveries/*']) router.use(path, allow('admin'));

  router.get('/webhooks', async (c) => {
    parseQuery(noQuery, c.req.query());
    return c.json((await catalog.webhooks()).map(webhookJson));
  });

  router.post('/webhooks', async (c) => {
    const webhook = await createWebhook(catalog, await parseBody(webhookBody, c.req));
    return c.json<z.infer<typeof createdWebhookResponse>>({ ...webhookJson(webhook), secret: webhook.secret }, 201);
  });

  router.delete('/webhooks/:id', async (c) => {
    if (!(await catalog.removeWebhook(c.req.param('id')))) throw new NotFound('no webhook has that id');
    return c.body(null, 204);
  });

  router.get('/webhooks/:id/deliveries', async (c) => {
    const q = parseQuery(deliveriesQuery, c.req.query());
    const webhookId = c.req.param('id');
    if (!(await catalog.webhooks()).some((w) => w.id === webhookId)) throw new NotFound('no webhook has that id');
    const limit = countParam(q.limit, 'limit', 1000) ?? 100;
    const offset = countParam(q.offset, 'offset', Number.MAX_SAFE_INTEGER) ?? 0;
    const deliveries = await catalog.deliveries({ webhookId, status: q.status, limit, offset });
    return c.json(deliveries.map(deliveryJson));
  });

  router.get('/webhook-deliveries/:id', async (c) => {
    parseQuery(noQuery, c.req.query());
    return c.json(deliveryJson(await knownDelivery(c.req.param('id'))));
  });

  // Sent again from now, whatever became of it, and tried for another day: after a receiver was mended.
  router.post('/webhook-deliveries/:id/replay', async (c) => {
    const now = Date.now();
    const replayed = await catalog.replayDelivery(c.req.param('id'), now, now + RETRY_FOR_MS);
    if (!replayed) throw new NotFound('no webhook delivery has that id');
    return c.json(deliveryJson(replayed));
  });

  async function knownDelivery(id: string): Promise<Delivery> {
    const delivery = await catalog.delivery(id);
    if (!delivery) throw new NotFound('no webhook delivery has that id');
    return delivery;
  }

  return router;
}

/** A new webhook, its URL checked (targets.ts) and its secret made unless given; the API and the admin page make them so. */
export async function createWebhook(catalog: Catalog, body: z.infer<typeof webhookBody>): Promise<Webhook> {
  const allowLocal = body.allow_local ?? false;
  const url = await checkTarget(body.url, allowLocal).catch((e: Error) => {
    throw e instanceof WebhookTargetError ? new BadRequest(e.message) : e;
  });
  if ((await catalog.webhooks()).length >= MAX_WEBHOOKS) throw new BadRequest(`at most ${MAX_WEBHOOKS} webhooks; remove one first`);
  const webhook: Webhook = {
    id: randomUUID(),
    url: url.toString(),
    secret: body.secret ?? randomBytes(32).toString('base64url'),
    events: [...new Set(body.events ?? EVENT_TYPES)],
    allowLocal,
    description: body.description ?? null,
    createdAt: Date.now(),
  };
  await catalog.addWebhook(webhook);
  return webhook;
}

export function webhookJson(w: Webhook): z.infer<typeof webhookResponse> {
  return { id: w.id, url: w.url, events: w.events, allow_local: w.allowLocal, description: w.description, created_at: iso(w.createdAt) };
}

export function deliveryJson(d: Delivery): z.infer<typeof deliveryResponse> {
  return {
    id: d.id,
    webhook_id: d.webhookId,
    event: d.eventType,
    study_uid: d.studyUid,
    status: d.status,
    attempts: d.attempts,
    created_at: iso(d.createdAt),
    last_attempt_at: d.lastAttemptAt === null ? null : iso(d.lastAttemptAt),
    last_status: d.lastStatus,
    last_error: d.lastError,
    next_attempt_at: d.status === 'pending' ? iso(d.nextAttemptAt) : null,
    delivered_at: d.deliveredAt === null ? null : iso(d.deliveredAt),
    body: d.body,
  };
}

const iso = (ms: number) => new Date(ms).toISOString();
