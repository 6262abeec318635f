import { Hono } from 'hono';
import { allow } from '../auth/middleware.js';
import type { Env, Services } from '../context.js';
import { BadRequest } from '../errors.js';
import { integrityStatus } from '../integrity/schedule.js';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 10_000;

/**
 * What the scheduled verify pass and reads found (src/integrity/): the pass under way and the last one with its
 * findings, and every instance flagged missing or changed; admin keys only, as it names studies.
 */
export function integrityApi(services: Services) {
  const router = new Hono<Env>();
  router.use('/integrity', allow('admin'));

  router.get('/integrity', async (c) => {
    const raw = c.req.query('limit');
    if (raw !== undefined && !/^\d+$/.test(raw)) throw new BadRequest(`limit must be a whole number, not "${raw}"`);
    const limit = Math.min(raw === undefined ? DEFAULT_LIMIT : Number(raw), MAX_LIMIT);
    const [status, damaged] = await Promise.all([integrityStatus(services, services.config.verifyInterval), services.catalog.damaged(limit)]);
    return c.json({
      ...status,
      damaged: {
        counts: damaged.counts,
        instances: damaged.instances.map((i) => ({ ...i, foundAt: new Date(i.foundAt).toISOString() })),
      },
    });
  });

  return router;
}
