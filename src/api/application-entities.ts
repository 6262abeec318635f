import { Hono } from 'hono';
import { z } from 'zod';
import { aeTitleOf, applicationEntityOf } from '../auth/application-entities.js';
import { allow } from '../auth/middleware.js';
import type { ApplicationEntity } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { NotFound } from '../errors.js';
import { noQuery, type Operation } from './openapi.js';
import { parseBody, parseQuery } from './params.js';

/** The body of a PUT: the whole entity but its title (in the path). Unknown fields are refused, not ignored. */
const entityBody = z.strictObject({
  host: z.string().nullable().optional(),
  port: z.number().nullable().optional(),
  store: z.boolean(),
  query: z.boolean(),
  retrieve: z.boolean(),
  description: z.string().nullable().optional(),
});

export const entityResponse = z.object({
  ae_title: z.string(),
  host: z.string().nullable(),
  port: z.number().nullable(),
  store: z.boolean(),
  query: z.boolean(),
  retrieve: z.boolean(),
  description: z.string().nullable(),
  created_at: z.string(),
});

const aeTitle = { aeTitle: 'the AE title: 1–16 characters, case-sensitive' };
export const applicationEntitiesOperations: Operation[] = [
  {
    method: 'get', path: '/application-entities', id: 'listApplicationEntities', tag: 'DICOM network', access: 'admin', query: noQuery,
    summary: 'The DICOM application entities the DICOM service knows, by AE title', responses: { 200: { description: 'the entities', json: z.array(entityResponse) } },
  },
  {
    method: 'get', path: '/application-entities/{aeTitle}', id: 'applicationEntity', tag: 'DICOM network', access: 'admin', pathParams: aeTitle, query: noQuery,
    summary: 'One application entity', responses: { 200: { description: 'the entity', json: entityResponse } },
  },
  {
    method: 'put', path: '/application-entities/{aeTitle}', id: 'putApplicationEntity', tag: 'DICOM network', access: 'admin', pathParams: aeTitle, body: entityBody,
    summary: 'Create or replace an application entity', description: 'A replaced entity keeps its created_at.',
    responses: { 200: { description: 'replaced', json: entityResponse }, 201: { description: 'created', json: entityResponse } },
  },
  {
    method: 'delete', path: '/application-entities/{aeTitle}', id: 'removeApplicationEntity', tag: 'DICOM network', access: 'admin', pathParams: aeTitle,
    summary: 'Forget an application entity', responses: { 204: { description: 'forgotten' } },
  },
];

/**
 * The DICOM application entities the clinic knows (what may call the DICOM service, and what it may do); admin only.
 * Every change is in the audit trail as its request (method, path with the AE title, status).
 */
export function applicationEntitiesApi({ catalog }: Services) {
  const router = new Hono<Env>();
  router.use('/application-entities', allow('admin'));
  router.use('/application-entities/*', allow('admin'));

  router.get('/application-entities', async (c) => {
    parseQuery(noQuery, c.req.query());
    return c.json((await catalog.applicationEntities()).map(entityJson));
  });

  router.get('/application-entities/:aeTitle', async (c) => {
    parseQuery(noQuery, c.req.query());
    return c.json(entityJson(await known(c.req.param('aeTitle'))));
  });

  // Explicit booleans, where the command line refuses an entity that may do nothing: false is said, not assumed.
  router.put('/application-entities/:aeTitle', async (c) => {
    const body = await parseBody(entityBody, c.req);
    const ae = applicationEntityOf({ ...body, aeTitle: c.req.param('aeTitle') });
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

function entityJson(ae: ApplicationEntity): z.infer<typeof entityResponse> {
  const { aeTitle, host, port, store, query, retrieve, description, createdAt } = ae;
  return { ae_title: aeTitle, host, port, store, query, retrieve, description, created_at: new Date(createdAt).toISOString() };
}
