import { Hono } from 'hono';
import { z } from 'zod';
import { allow } from '../auth/middleware.js';
import type { Env, Services } from '../context.js';
import { integrityStatus } from '../integrity/schedule.js';
import type { Operation } from './openapi.js';
import { countParam, parseQuery } from './params.js';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 10_000;

export const integrityQuery = z.strictObject({ limit: z.string().optional().describe(`damaged instances listed, newest finding first (${DEFAULT_LIMIT}; at most ${MAX_LIMIT})`) });

const counts = {
  total: z.number(),
  checked: z.number(),
  missing: z.number(),
  changed: z.number(),
  restored: z.number(),
  orphansIndexed: z.number(),
  orphansQuarantined: z.number(),
  orphansLeft: z.number(),
  startedAt: z.string(),
};
export const integrityResponse = z.object({
  verifyIntervalMs: z.number().describe('the span a pass spreads over (PACS_VERIFY_INTERVAL); 0: off'),
  running: z.object({ ...counts, owner: z.string(), leaseUntil: z.string() }).nullable(),
  lastPass: z.object({ ...counts, finishedAt: z.string() }).nullable(),
  problems: z.array(z.string()).describe('the last pass\'s findings, one line each'),
  damaged: z.object({
    counts: z.object({ missing: z.number(), changed: z.number() }),
    instances: z.array(z.object({ studyUid: z.string(), seriesUid: z.string(), sopUid: z.string(), objectKey: z.string(), damage: z.enum(['missing', 'changed']), foundAt: z.string() })),
  }),
});

export const integrityOperations: Operation[] = [
  {
    method: 'get', path: '/integrity', id: 'integrity', tag: 'Store', access: 'admin', query: integrityQuery,
    summary: 'The scheduled verify pass and the instances found missing or changed',
    responses: { 200: { description: 'the pass under way, the last one with its findings, and the damaged instances', json: integrityResponse } },
  },
];

/**
 * What the scheduled verify pass and reads found (src/integrity/): the pass under way and the last one with its
 * findings, and every instance flagged missing or changed; admin keys only, as it names studies.
 */
export function integrityApi(services: Services) {
  const router = new Hono<Env>();
  router.use('/integrity', allow('admin'));

  router.get('/integrity', async (c) => {
    const limit = countParam(parseQuery(integrityQuery, c.req.query()).limit, 'limit', MAX_LIMIT) ?? DEFAULT_LIMIT;
    const [status, damaged] = await Promise.all([integrityStatus(services, services.config.verifyInterval), services.catalog.damaged(limit)]);
    return c.json<z.infer<typeof integrityResponse>>({
      ...status,
      damaged: {
        counts: damaged.counts,
        instances: damaged.instances.map((i) => ({ ...i, foundAt: new Date(i.foundAt).toISOString() })),
      },
    });
  });

  return router;
}
