import { Hono } from 'hono';
import { z } from 'zod';
import type { Permission } from '../auth/principal.js';
import type { Env } from '../context.js';
import { ApiReference } from '../pages/api-reference.js';
import { parseQuery } from './params.js';

/**
 * One route of /api/v1 as the OpenAPI document describes it, declared beside its handler with the very schemas the
 * handler parses its query and body with and types its answer by: the document cannot say what the code does not.
 * A test (openapi.test.ts) holds the routes the app serves and the operations declared to each other, and checks
 * every route's real answers against the document.
 */
export type Operation = {
  method: 'get' | 'post' | 'put' | 'delete';
  /** As OpenAPI writes it, under /api/v1: `/studies/{study}`. */
  path: string;
  id: string;
  tag: string;
  summary: string;
  description?: string;
  /** Who may call it: a right of the credential's role, a signed link alone, or anyone. */
  access: Permission | 'signed-link' | 'public';
  /** Descriptions of the path's parameters, by name. */
  pathParams?: Record<string, string>;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** A multipart/form-data body: these fields, and files described by `files`. */
  form?: { fields: z.ZodObject; files: string };
  responses: Record<number, { description: string; json?: z.ZodType; binary?: string }>;
};

export const errorResponse = z.object({
  error: z.string().describe('a short code: bad-request, unauthorized, forbidden, not-found, …'),
  detail: z.string().describe('what went wrong and what to do, for a person'),
});

/** A query without parameters: any given is refused, naming it, rather than ignored. */
export const noQuery = z.strictObject({});

/** The OpenAPI 3.1 document of these operations; the server's URL is the one the client reached. */
export function openApiDocument(operations: Operation[], base: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of operations) {
    paths[op.path] ??= {};
    paths[op.path]![op.method] = operationObject(op);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'PACS-lite API',
      version: '1',
      description:
        'The plain-JSON API of PACS-lite for EMRs and administrators, beside DICOMweb (/dicom-web) and FHIR (/fhir). ' +
        'Send an API key as `Authorization: Bearer <key>`. Errors are `{"error", "detail"}` with the HTTP status.',
    },
    servers: [{ url: `${base}/api/v1` }],
    tags: [...new Set(operations.map((o) => o.tag))].map((name) => ({ name })),
    paths,
    components: {
      securitySchemes: {
        apiKey: { type: 'http', scheme: 'bearer', description: 'An API key (or a signed-in staff session); its role decides what it may do.' },
        tokenParam: { type: 'apiKey', in: 'query', name: 'token', description: 'The same credential in the URL, for a GET whose client cannot set a header.' },
        signedLink: { type: 'apiKey', in: 'query', name: 'sig', description: 'The signature of a link made by /studies/{study}/images or /images/{sop}/url: it names one instance, one kind of answer and an expiry.' },
      },
      schemas: { Error: jsonSchema(errorResponse, 'output') },
    },
  };
}

function operationObject(op: Operation) {
  const pathNames = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
  const parameters = [
    ...pathNames.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' }, description: op.pathParams?.[name] })),
    ...Object.entries(op.query?.shape ?? {}).map(([name, schema]) => {
      const s = schema as z.ZodType;
      const { description, ...rest } = jsonSchema(s, 'input');
      return { name, in: 'query', required: !s.safeParse(undefined).success, schema: rest, ...(description ? { description } : {}) };
    }),
  ];
  const responses: Record<string, unknown> = {};
  for (const [status, r] of Object.entries(op.responses)) {
    const content = r.json ? { 'application/json': { schema: jsonSchema(r.json, 'output') } } : r.binary ? { [r.binary]: { schema: {} } } : undefined;
    responses[status] = { description: r.description, ...(content ? { content } : {}) };
  }
  responses.default = { description: 'an error: the status says which, `detail` says why and what to do', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
  const rightText = op.access === 'public' ? 'No credential needed.' : op.access === 'signed-link' ? 'No credential but the link\'s signature.' : `Needs a credential with the \`${op.access}\` right.`;
  return {
    operationId: op.id,
    tags: [op.tag],
    summary: op.summary,
    description: [op.description, rightText].filter(Boolean).join('\n\n'),
    security: op.access === 'public' ? [] : op.access === 'signed-link' ? [{ signedLink: [] }] : op.method === 'get' ? [{ apiKey: [] }, { tokenParam: [] }] : [{ apiKey: [] }],
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(op.body ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(op.body, 'input') } } } } : {}),
    ...(op.form ? { requestBody: { required: true, content: { 'multipart/form-data': { schema: formSchema(op.form) } } } } : {}),
    responses,
  };
}

/** A form's fields, and its files as a repeated `file` part. */
function formSchema(form: NonNullable<Operation['form']>): Record<string, unknown> {
  const fields = jsonSchema(form.fields, 'input') as { properties?: Record<string, unknown>; required?: string[] };
  return {
    type: 'object',
    properties: { ...fields.properties, file: { type: 'array', items: { type: 'string', contentMediaType: 'application/octet-stream' }, description: form.files } },
    required: [...(fields.required ?? []), 'file'],
  };
}

/** A zod schema as JSON Schema 2020-12, as OpenAPI 3.1 takes it; a query's transforms are described by what is sent. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

export const openApiOperations: Operation[] = [
  { method: 'get', path: '/openapi.json', id: 'openApiDocument', tag: 'Reference', access: 'public', query: noQuery, summary: 'This description, as OpenAPI 3.1', responses: { 200: { description: 'the document', json: z.record(z.string(), z.unknown()) } } },
  { method: 'get', path: '/docs', id: 'apiReference', tag: 'Reference', access: 'public', query: noQuery, summary: 'This description as a page to read', responses: { 200: { description: 'the reference page', binary: 'text/html' } } },
];

/** The document (GET /api/v1/openapi.json) and the reference page read off it (/api/v1/docs), for anyone: they name routes, not patients. */
export function openApiRouter(operations: Operation[]) {
  const router = new Hono<Env>();
  const documents = new Map<string, ReturnType<typeof openApiDocument>>();
  // One per address the API is reached at (PACS_PUBLIC_URL, or as asked), made once.
  const documentFor = (base: string) => {
    let document = documents.get(base);
    if (!document) {
      if (documents.size > 16) documents.clear();
      document = openApiDocument(operations, base);
      documents.set(base, document);
    }
    return document;
  };
  router.get('/openapi.json', (c) => {
    parseQuery(noQuery, c.req.query());
    c.header('Cache-Control', 'public, max-age=300');
    return c.json(documentFor(c.var.publicBase));
  });
  router.get('/docs', (c) => {
    parseQuery(noQuery, c.req.query());
    return c.html(<ApiReference document={documentFor(c.var.publicBase)} />);
  });
  return router;
}
