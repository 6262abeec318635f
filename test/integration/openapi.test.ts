import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { openApp } from '../helpers/app.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';
import { startReceiver } from '../helpers/webhook-receiver.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The OpenAPI description of /api/v1 (issue 16): a valid OpenAPI 3.1 document, by a maintained validator; naming
 * exactly the routes the app serves; and true of their real answers, each checked against the document's schema
 * for its status, for every operation.
 */

type Doc = { openapi: string; paths: Record<string, Record<string, { operationId: string; responses: Record<string, { content?: Record<string, { schema: object }> }> }>>; components: { schemas: Record<string, object> } };

const PDF = new TextEncoder().encode('%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n');
let server: RunningServer;
let doc: Doc;
let receiver: Awaited<ReturnType<typeof startReceiver>>;

beforeAll(async () => {
  server = await startServer({ env: { PACS_STUDY_QUIET_SECONDS: '1' } });
  const response = await fetch(`${server.url}/api/v1/openapi.json`);
  expect(response.status).toBe(200);
  doc = (await response.json()) as Doc;
  receiver = await startReceiver();
});
afterAll(async () => {
  await server?.stop();
  await receiver?.stop();
});

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1, served without a credential, its server the address asked at', async () => {
    const result = await new Validator().validate(doc as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe('3.1.0');
    expect((doc as unknown as { servers: Array<{ url: string }> }).servers).toEqual([{ url: `${server.url}/api/v1` }]);
  });

  it('names every route the app serves under /api/v1, and no other', async () => {
    const inProcess = await openApp();
    try {
      const served = new Set(
        inProcess.app.routes
          .filter((r) => r.method !== 'ALL' && r.path.startsWith('/api/v1/'))
          .flatMap((r) => templatesOf(r.path.slice('/api/v1'.length)).map((path) => `${r.method} ${path}`)),
      );
      const documented = new Set(Object.entries(doc.paths).flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`)));
      expect([...served].sort()).toEqual([...documented].sort());
    } finally {
      await inProcess.close();
    }
  });

  it('has a reference page on our own origin, read off the document', async () => {
    const response = await fetch(`${server.url}/api/v1/docs`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    const page = await response.text();
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        expect(page).toContain(`id="${op.operationId}"`);
        expect(page).toContain(`${method.toUpperCase()} /api/v1${path.replace(/[{}]/g, (c) => c)}`);
      }
    }
    expect(page).not.toMatch(/<script/);
  });
});

/** `/images/:sop/:kind{thumbnail|rendered|dicom}` → the OpenAPI paths it serves. */
function templatesOf(honoPath: string): string[] {
  let paths = [''];
  for (const segment of honoPath.split('/').slice(1)) {
    const alternatives = /^:\w+\{([\w|]+)\}$/.exec(segment)?.[1]?.split('|');
    const next = alternatives ?? [segment.replace(/^:(\w+)$/, '{$1}')];
    paths = paths.flatMap((p) => next.map((n) => `${p}/${n}`));
  }
  return paths;
}

describe('every route answers as the document says', () => {
  const ajv = new Ajv2020({ strict: false, allErrors: false });
  const checked = new Map<string, number[]>();

  /** Sends the request and checks its answer against the operation's schema for that status; returns the body. */
  async function call(method: string, template: string, path: string, init: RequestInit & { expect?: number; anonymous?: boolean } = {}): Promise<any> {
    const op = doc.paths[template]?.[method.toLowerCase()];
    expect(op, `${method} ${template} is documented`).toBeDefined();
    const response = await (init.anonymous ? fetch : adminFetch)(`${server.url}/api/v1${path}`, { ...init, method });
    const status = response.status;
    const where = `${method} ${path} → ${status}`;
    if (init.expect !== undefined) expect(status, where).toBe(init.expect);
    const spec = op!.responses[String(status)] ?? (status >= 400 ? op!.responses.default : undefined);
    expect(spec, `${where} is a documented answer`).toBeDefined();
    checked.set(op!.operationId, [...(checked.get(op!.operationId) ?? []), status]);
    const body = Buffer.from(await response.arrayBuffer());
    if (!spec!.content) {
      expect(body.length, where).toBe(0);
      return undefined;
    }
    const type = (response.headers.get('content-type') ?? '').split(';')[0]!.trim();
    const media = spec!.content[type];
    expect(media, `${where}: ${type} is the documented content type (${Object.keys(spec!.content)})`).toBeDefined();
    if (type !== 'application/json') return body;
    const json = JSON.parse(body.toString());
    const validate = ajv.compile(resolveRefs(media!.schema));
    expect(validate(json) ? [] : validate.errors, `${where}: ${body.toString().slice(0, 300)}`).toEqual([]);
    return json;
  }

  function resolveRefs(schema: unknown): object {
    return JSON.parse(JSON.stringify(schema), (key, value) => (value && typeof value === 'object' && typeof value.$ref === 'string' ? doc.components.schemas[value.$ref.split('/').at(-1)!] : value));
  }

  const json = (body: unknown) => ({ headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

  it('for each operation, its answers and its refusals', async () => {
    const studyUID = newUid();
    expect((await stow(server.dicomweb, syntheticSeries(2, { studyUID, patientID: 'OAS-1', accessionNumber: 'ACC-OAS-1', rows: 16, columns: 16 }))).status).toBe(200);

    // Studies and viewer links.
    await call('GET', '/studies/{study}', `/studies/${studyUID}`, { expect: 200 });
    await call('GET', '/studies/{study}', `/studies/${newUid()}`, { expect: 404 });
    await call('GET', '/studies/{study}', `/studies/${studyUID}?verbose=1`, { expect: 400 });
    await call('GET', '/studies', '/studies?accession=ACC-OAS-1', { expect: 200 });
    const misspelt = await call('GET', '/studies', '/studies?acession=ACC-OAS-1', { expect: 400 });
    expect(misspelt.detail).toMatch(/unknown parameter acession/);
    await call('GET', '/studies/{study}/download', `/studies/${studyUID}/download`, { expect: 200 });
    const link = await call('GET', '/studies/{study}/viewer-url', `/studies/${studyUID}/viewer-url?expires_in=60&priors=true`, { expect: 200 });
    await call('GET', '/studies/{study}/viewer-url', `/studies/${studyUID}/viewer-url?priors=maybe`, { expect: 400 });
    await call('GET', '/viewer-url', '/viewer-url?accession=ACC-OAS-1&patient_id=OAS-1', { expect: 200 });
    await call('GET', '/viewer-url', '/viewer-url?accession=NO-SUCH', { expect: 404 });
    await call('DELETE', '/viewer-tokens/{jti}', `/viewer-tokens/${link.jti}`, { expect: 204 });
    await call('DELETE', '/studies/{study}/viewer-tokens', `/studies/${studyUID}/viewer-tokens`, { expect: 204 });

    // Images and their signed links.
    const images = await call('GET', '/studies/{study}/images', `/studies/${studyUID}/images`, { expect: 200 });
    const image = images.series[0].images[0];
    await call('GET', '/images/{sop}/url', `/images/${image.sop_instance_uid}/url?kind=dicom`, { expect: 200 });
    for (const kind of ['thumbnail', 'rendered', 'dicom']) {
      const signed = new URL(image.links[kind]);
      await call('GET', `/images/{sop}/${kind}`, `${signed.pathname.slice('/api/v1'.length)}${signed.search}`, { expect: 200, anonymous: true });
    }
    await call('GET', '/images/{sop}/thumbnail', `/images/${image.sop_instance_uid}/thumbnail?sig=forged`, { expect: 403 });
    await call('GET', '/patients/{patient}/studies', '/patients/OAS-1/studies?viewer_links=true', { expect: 200 });

    // Photos and documents.
    const photo = () => {
      const form = new FormData();
      form.append('file', new Blob([PDF], { type: 'application/pdf' }), 'referral.pdf');
      return form;
    };
    const created = photo();
    created.append('patient_id', 'OAS-PHOTO');
    await call('POST', '/photos', '/photos', { body: created, expect: 200 });
    await call('POST', '/studies/{study}/photos', `/studies/${studyUID}/photos`, { body: photo(), expect: 200 });
    await call('POST', '/studies/{study}/photos', `/studies/${studyUID}/photos`, { body: (() => { const f = photo(); f.append('patient_id', 'X'); return f; })(), expect: 400 });

    // DICOM files matched to an order.
    const dicomFiles = (fields: Record<string, string>) => {
      const form = new FormData();
      for (const [name, value] of Object.entries(fields)) form.append(name, value);
      form.append('file', new Blob([new Uint8Array(syntheticSeries(1, { patientID: 'OAS-CD' })[0]!)], { type: 'application/dicom' }), 'IM0001');
      return form;
    };
    await call('POST', '/uploads', '/uploads', { body: dicomFiles({ patient_id: 'OAS-ORDER', reason: 'matched to its order' }), expect: 200 });
    await call('POST', '/uploads', '/uploads', { body: dicomFiles({ patient_id: 'OAS-ORDER' }), expect: 400 });
    await call('POST', '/resumable', '/resumable', { headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': '1000' }, expect: 201 });

    // Webhooks and their outbox.
    const hook = await call('POST', '/webhooks', '/webhooks', { ...json({ url: receiver.url, allow_local: true }), expect: 201 });
    await call('POST', '/webhooks', '/webhooks', { ...json({ url: receiver.url, allow_local: true, retries: 3 }), expect: 400 });
    await call('GET', '/webhooks', '/webhooks', { expect: 200 });
    expect((await stow(server.dicomweb, syntheticSeries(1, { studyUID: newUid(), rows: 16, columns: 16 }))).status).toBe(200);
    await waitFor('a delivery', () => receiver.accepted().length > 0 || undefined);
    const [delivery] = await call('GET', '/webhooks/{id}/deliveries', `/webhooks/${hook.id}/deliveries?status=delivered`, { expect: 200 });
    await call('GET', '/webhook-deliveries/{id}', `/webhook-deliveries/${delivery.id}`, { expect: 200 });
    await call('POST', '/webhook-deliveries/{id}/replay', `/webhook-deliveries/${delivery.id}/replay`, { expect: 200 });
    await call('DELETE', '/webhooks/{id}', `/webhooks/${hook.id}`, { expect: 204 });
    await call('DELETE', '/webhooks/{id}', `/webhooks/${hook.id}`, { expect: 404 });

    // Access.
    const key = await call('POST', '/keys', '/keys', { ...json({ name: 'openapi', role: 'read', expires_in_days: 1 }), expect: 201 });
    await call('POST', '/keys', '/keys', { ...json({ name: 'openapi', role: 'read', expires: '90d' }), expect: 400 });
    await call('GET', '/keys', '/keys', { expect: 200 });
    await call('GET', '/keys', '/keys', { expect: 403, headers: { Authorization: `Bearer ${key.key}` } });
    await call('DELETE', '/keys/{id}', `/keys/${key.id}`, { expect: 204 });
    await call('GET', '/audit', `/audit?study=${studyUID}&limit=5`, { expect: 200 });

    // The DICOM network's application entities.
    await call('PUT', '/application-entities/{aeTitle}', '/application-entities/OAS_CT', { ...json({ host: '10.0.0.5', port: 104, store: true, query: false, retrieve: false }), expect: 201 });
    await call('PUT', '/application-entities/{aeTitle}', '/application-entities/OAS_CT', { ...json({ store: true, query: true, retrieve: false }), expect: 200 });
    await call('GET', '/application-entities', '/application-entities', { expect: 200 });
    await call('GET', '/application-entities/{aeTitle}', '/application-entities/OAS_CT', { expect: 200 });
    await call('DELETE', '/application-entities/{aeTitle}', '/application-entities/OAS_CT', { expect: 204 });

    // The trash.
    const doomed = newUid();
    expect((await stow(server.dicomweb, syntheticSeries(1, { studyUID: doomed, rows: 16, columns: 16 }))).status).toBe(200);
    const first = await (await adminFetch(`${server.dicomweb}/studies/${doomed}?reason=openapi`, { method: 'DELETE' })).json();
    await call('GET', '/trash', '/trash', { expect: 200 });
    await call('POST', '/trash/{id}/restore', `/trash/${first.trash.id}/restore`, { expect: 200 });
    const second = await (await adminFetch(`${server.dicomweb}/studies/${doomed}?reason=openapi`, { method: 'DELETE' })).json();
    await call('DELETE', '/trash/{id}', `/trash/${second.trash.id}`, { expect: 204 });
    await call('DELETE', '/trash/{id}', `/trash/${second.trash.id}`, { expect: 404 });

    // The store.
    await call('GET', '/uploads', `/uploads?study=${studyUID}`, { expect: 200 });
    await call('GET', '/integrity', '/integrity?limit=5', { expect: 200 });
    await call('GET', '/integrity', '/integrity?limit=five', { expect: 400 });

    // The reference itself.
    await call('GET', '/openapi.json', '/openapi.json', { expect: 200, anonymous: true });
    await call('GET', '/docs', '/docs', { expect: 200, anonymous: true });

    // Every operation was answered with a success at least once.
    const operations = Object.values(doc.paths).flatMap((methods) => Object.values(methods).map((op) => op.operationId));
    const succeeded = operations.filter((id) => checked.get(id)?.some((s) => s < 300));
    expect(succeeded.sort()).toEqual(operations.sort());
  });
});
