import { Hono } from 'hono';
import { z } from 'zod';
import { aeTitleOf, applicationEntityOf } from '../auth/application-entities.js';
import { allow } from '../auth/middleware.js';
import type { ApplicationEntity } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { BadRequest, NotFound } from '../errors.js';

/** The body of a PUT: the whole entity but its title (in the path). Unknown fields are refused, not ignored. */
const entityBody = z.strictObject({
  host: z.string().nullable().optional(),
  port: z.number().nullable().optional(),
  store: z.boolean(),
  query: z.boolean(),
  retrieve: z.boolean(),
  description: z.string().nullable().optional(),
});

/**
 * The DICOM application entities the clinic knows (what may call the DICOM service, and what it may do); admin only.
 * Every change is in the audit trail as its request (method, path with the AE title, status).
 */
export function applicationEntitiesApi({ catalog }: Services) {
  const router = new Hono<Env>();
  router.use('/application-entities', allow('admin'));
  router.use('/application-entities/*', allow('admin'));

  router.get('/application-entities', async (c) => c.json((await catalog.applicationEntities()).map(entityJson)));

  router.get('/application-entities/:aeTitle', async (c) => c.json(entityJson(await known(c.req.param('aeTitle')))));

  // Explicit booleans, where the command line refuses an entity that may do nothing: false is said, not assumed.
  router.put('/application-entities/:aeTitle', async (c) => {
    const body = entityBody.safeParse(await c.req.json().catch(() => undefined));
    if (!body.success) {
      const issues = body.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
      throw new BadRequest(`send JSON {"store": bool, "query": bool, "retrieve": bool, "host"?: "name or address" | null, "port"?: n | null, "description"?: "…" | null}: ${issues}`);
    }
    const ae = applicationEntityOf({ ...body.data, aeTitle: c.req.param('aeTitle') });
    const existed = (await catalog.applicationEntity(ae.aeTitle)) !== undefined;
    return c.json(entityJson(await catalog.putApplicationEntity(ae)), existed ? 200 : 201);
  });

  router.delete('/application-entities/:aeTitle', async (c) => {
    if (!(await catalog.removeApplicationEntity(aeTitleOf(c.req.param('aeTitle'))))) throw notKnown();
    return c.body(null, 204);
  });

  async function known(title: string): Promise<ApplicationEntity> {
    const ae = await catalog.applicationEntity(aeTitleOf(title));
    if (!ae) throw notKnown();
    return ae;
  }

  return router;
}

const notKnown = () => new NotFound('no application entity has that AE title (AE titles are case-sensitive)');

function entityJson(ae: ApplicationEntity) {
  const { aeTitle, host, port, store, query, retrieve, description, createdAt } = ae;
  return { ae_title: aeTitle, host, port, store, query, retrieve, description, created_at: new Date(createdAt).toISOString() };
}
