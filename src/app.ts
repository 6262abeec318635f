import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { finished } from 'node:stream/promises';
import { Hono, type Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { cors } from 'hono/cors';
import { accessApi } from './api/access.js';
import { applicationEntitiesApi } from './api/application-entities.js';
import { integrityApi } from './api/integrity.js';
import { imagesApi } from './api/images.js';
import { studiesApi } from './api/studies.js';
import { FHIR_JSON, issueCodeOf, operationOutcome } from './fhir/resources.js';
import { fhirRouter } from './fhir/router.js';
import { uploadsApi } from './api/uploads.js';
import { webhooksApi } from './api/webhooks.js';
import { openApiRouter } from './api/openapi.js';
import { photosApi } from './api/photos.js';
import { dicomFilesApi } from './api/dicom-files.js';
import { resumableApi, TUS_REQUEST_HEADERS, TUS_RESPONSE_HEADERS } from './api/resumable.js';
import { trashApi } from './api/trash.js';
import { API_OPERATIONS } from './api/operations.js';
import { auditTrail, authenticate, callerOf, dicomwebAccess, signInFirst } from './auth/middleware.js';
import { TrustedProxies } from './auth/proxies.js';
import { CatalogUnavailable } from './catalog/catalog.js';
import { QueryError } from './catalog/qido.js';
import type { Env, Services } from './context.js';
import { DicomParseError } from './dicom/parse.js';
import { UidError } from './dicom/uid.js';
import { deleteRouter } from './dicomweb/delete.js';
import { qidoRouter } from './dicomweb/qido.js';
import { renderedRouter } from './dicomweb/rendered.js';
import { stowRouter } from './dicomweb/stow.js';
import { requestBase } from './dicomweb/urls.js';
import { wadoUriRouter } from './dicomweb/wado-uri.js';
import { wadoRouter } from './dicomweb/wado.js';
import { BadRequest, DiskFull, HttpError } from './errors.js';
import { ObjectsDamaged } from './integrity/damage.js';
import { strictTransport } from './https.js';
import { integrityStatus } from './integrity/schedule.js';
import { adminPages } from './pages/admin.js';
import { RenderError } from './render/types.js';
import { diskSpace } from './storage/disk-space.js';
import { ObjectNotFound, StoreUnavailable } from './storage/object-store.js';
import { ohifRouter, PAGES as OHIF_PAGES } from './viewer/ohif.js';
import { signInPages } from './pages/sign-in.js';
import { uploadPage } from './pages/upload.js';

/** Assembles the HTTP app: middleware, then the routers. */
export function createApp(services: Services) {
  const app = new Hono<Env>();
  const { config, log } = services;

  app.use(async (c, next) => {
    const requestId = c.req.header('x-request-id')?.slice(0, 100) || randomUUID();
    const started = performance.now();
    c.set('requestId', requestId);
    c.set('log', log.child({ requestId }));
    await next();
    c.header('X-Request-Id', requestId);
    c.var.log.info(
      { method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - started), credential: callerOf(c) },
      'request',
    );
  });

  // With TLS configured the app is reached over HTTPS only (plain HTTP is a redirect port, src/https.ts).
  if (config.tls) app.use(strictTransport());

  // Who is asking and where they reached us; X-Forwarded-* are believed from trusted proxies only (issue 10).
  const proxies = new TrustedProxies(config.trustedProxies);
  app.use(async (c, next) => {
    c.set('client', proxies.clientAddress(c.env?.incoming?.socket?.remoteAddress, c.req.header('x-forwarded-for')));
    c.set('requestBase', requestBase(c, proxies));
    c.set('publicBase', config.publicUrl ?? c.var.requestBase);
    await next();
    // A browser takes what we send for what it says it is, and saves a DICOM file rather than showing it (issue 10).
    c.header('X-Content-Type-Options', 'nosniff');
    if (isDicomDownload(c.res.headers.get('content-type')) && !c.res.headers.has('content-disposition')) c.header('Content-Disposition', 'attachment');
    // Answered before its body was all received (refused mid-upload): the connection cannot carry another request,
    // so the client is told rather than finding it closed under its next one (RFC 9112 9.6).
    const incoming = c.env?.incoming;
    if (incoming && !incoming.complete && !(await readSmallUnreadBody(incoming))) c.header('Connection', 'close');
  });

  // Every response, errors included, carries CORS headers (DESIGN decision 5), for the origins auth/origins.ts allows.
  app.use(
    cors({
      origin: (origin, c) => services.auth.origins.allowOrigin(origin, c),
      // With tus's own headers and PATCH (api/resumable.ts), so that a page of an allowed origin can resume an upload.
      allowHeaders: ['Authorization', 'Content-Type', 'Accept', 'If-None-Match', 'X-Request-Id', 'X-Deletion-Reason', ...TUS_REQUEST_HEADERS],
      allowMethods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE', 'OPTIONS'],
      exposeHeaders: ['ETag', 'Content-Type', 'Content-Length', 'X-Request-Id', 'Retry-After', 'Warning', 'WWW-Authenticate', ...TUS_RESPONSE_HEADERS],
      maxAge: 600,
    }),
  );

  // Routes decode their parameters: a path whose escapes do not decode (`%ZZ`, half a UTF-8 character) names nothing.
  app.use(async (c, next) => {
    if (!isWellEncoded(new URL(c.req.url).pathname)) {
      throw new BadRequest('the path is not valid percent-encoding: each % must begin two hex digits that spell UTF-8 (RFC 3986 2.1); send a literal % as %25');
    }
    await next();
  });

  app.get('/healthz', async (c) => {
    const checks = await Promise.allSettled([services.catalog.check(), services.store.check()]);
    const [index, objects] = checks.map((r) => (r.status === 'fulfilled' ? 'ok' : String((r as PromiseRejectedResult).reason?.message ?? r.reason)));
    const healthy = index === 'ok' && objects === 'ok';
    // A disk below PACS_MIN_FREE_BYTES refuses uploads but still serves reads: degraded, and still 200 for load balancers.
    const space = await diskSpace(config.storageDir, config.minFreeBytes).catch((e: Error) => e);
    const disk = space instanceof Error ? { status: space.message } : { status: space.low ? 'low' : 'ok', freeBytes: space.freeBytes, minFreeBytes: space.minFreeBytes };
    const status = !healthy ? 'unavailable' : disk.status === 'ok' ? 'ok' : 'degraded';
    // The scheduled verify pass as the index has it: counts only, no UIDs (health needs no credential).
    const { problems: _, ...integrity } = await integrityStatus(services, config.verifyInterval).catch((e: Error) => ({ status: e.message, problems: [] }));
    // Where modalities send to: what their operators type in (PACS_DICOM_PORT, PACS_DICOM_AE_TITLE).
    const dicom = config.dicom ? { ...(config.dicom.port ? { port: config.dicom.port } : {}), ...(config.dicom.tls ? { tlsPort: config.dicom.tls.port } : {}), aeTitle: config.dicom.aeTitle } : 'off';
    return c.json({ status, index, objectStore: objects, disk, integrity, dicom }, healthy ? 200 : 503);
  });

  // Health tells nothing of patients and is what load balancers probe: no credential.
  app.use('/dicom-web/*', auditTrail(services.auth.audit), authenticate(services.auth), dicomwebAccess(services.catalog));
  // WADO-URI names its study in the query; the same access rules find it there.
  app.use('/wado/*', auditTrail(services.auth.audit), authenticate(services.auth), dicomwebAccess(services.catalog));
  app.use('/api/*', auditTrail(services.auth.audit), authenticate(services.auth));
  app.use('/fhir/*', auditTrail(services.auth.audit), authenticate(services.auth));

  app.route('/dicom-web', stowRouter(services));
  app.route('/dicom-web', qidoRouter(services));
  app.route('/dicom-web', wadoRouter(services));
  app.route('/dicom-web', renderedRouter(services));
  app.route('/dicom-web', deleteRouter(services));
  app.route('/wado', wadoUriRouter(services));

  app.route('/api/v1', studiesApi(services));
  app.route('/fhir', fhirRouter(services));
  app.route('/api/v1', imagesApi(services));
  app.route('/api/v1', photosApi(services));
  app.route('/api/v1', accessApi(services));
  app.route('/api/v1', applicationEntitiesApi(services));
  app.route('/api/v1', integrityApi(services));
  app.route('/api/v1', uploadsApi(services));
  app.route('/api/v1', dicomFilesApi(services));
  app.route('/api/v1', resumableApi(services));
  app.route('/api/v1', trashApi(services));
  app.route('/api/v1', webhooksApi(services));
  app.route('/api/v1', openApiRouter(API_OPERATIONS));
  app.route('/admin', adminPages(services));
  app.route('/', signInPages(services));
  app.route('/', uploadPage(services));
  // OHIF on the same origin as /dicom-web, after every other route: it claims only its own pages and files.
  for (const page of OHIF_PAGES) app.use(page, signInFirst(services.auth));
  app.route('/', ohifRouter());

  app.notFound((c) => answerError(c, 404, 'not-found', `no route for ${c.req.method} ${c.req.path}`));

  app.onError((err, c) => {
    const known = asHttpError(err);
    if (known) {
      // Only an operator can make room: said in the log at error level, not only to the client.
      if (known.status === 507) c.var.log?.error({ err }, 'refused for a full disk');
      for (const [name, value] of Object.entries(known.headers)) c.header(name, value);
      return answerError(c, known.status, known.code, known.message);
    }
    c.var.log?.error({ err }, 'unhandled error');
    return answerError(c, 500, 'internal', `the server failed on this request; quote request id ${c.var.requestId} to the administrator`);
  });

  return app;
}

/** An error as JSON: `{error, detail}`, or under /fhir an OperationOutcome as FHIR clients expect. */
function answerError(c: Context<Env>, status: number, code: string, detail: string): Response {
  if (c.req.path.startsWith('/fhir/')) {
    return c.body(JSON.stringify(operationOutcome('error', issueCodeOf(status), detail)), status as ContentfulStatusCode, { 'Content-Type': `${FHIR_JSON}; charset=utf-8` });
  }
  return c.json({ error: code, detail }, status as ContentfulStatusCode);
}

function isWellEncoded(path: string): boolean {
  try {
    decodeURIComponent(path);
    return true;
  } catch {
    return false;
  }
}

/** A DICOM file as WADO-RS or WADO-URI sends it: application/dicom, alone or as the parts of multipart/related. */
function isDicomDownload(contentType: string | null): boolean {
  if (!contentType) return false;
  return /^application\/dicom\s*(;|$)/i.test(contentType) || (/^multipart\/related\s*;/i.test(contentType) && /;\s*type="?application\/dicom"?\s*(;|$)/i.test(contentType));
}

function asHttpError(err: Error): HttpError | undefined {
  if (err instanceof HttpError) return err;
  // 507 Insufficient Storage (RFC 4918 11.5): nothing of the write was kept, and only an operator can make room.
  const full = DiskFull.of(err);
  if (full) return new HttpError(507, 'disk-full', `${full.message}; nothing was kept. Free space in the data folder (PACS_STORAGE_DIR), then send it again; reads still work`);
  if (err instanceof UidError || err instanceof QueryError || err instanceof DicomParseError) return new HttpError(400, 'bad-request', err.message);
  // A busy codec pool is a moment's wait, not a fault.
  if (err instanceof RenderError) return new HttpError(err.status, RENDER_ERROR_CODES[err.status], err.message, err.status === 503 ? { 'Retry-After': '2' } : {});
  // Lost or changed data is the server's fault, said with the instances' names; nothing was sent before it.
  if (err instanceof ObjectsDamaged) return new HttpError(500, 'damaged', `${err.message}. The administrator sees them in GET /api/v1/integrity; run \`npm run cli -- verify\`, then restore them from a backup or send them again`);
  if (err instanceof ObjectNotFound) return new HttpError(404, 'not-found', `${err.message}; run the verify command to reconcile the index`);
  // The store is away for a moment; the client retries, the server recovers by itself when it returns.
  if (err instanceof StoreUnavailable) return new HttpError(503, 'store-unavailable', `${err.message}; nothing was changed, try again in a few seconds`, { 'Retry-After': '5' });
  if (err instanceof CatalogUnavailable) return new HttpError(503, 'index-unavailable', `${err.message}; nothing was changed, try again in a few seconds`, { 'Retry-After': '5' });
  return undefined;
}

const RENDER_ERROR_CODES: Record<RenderError['status'], string> = {
  400: 'bad-request',
  406: 'not-acceptable',
  413: 'too-large',
  422: 'cannot-render',
  500: 'render-failed',
  501: 'not-implemented',
  503: 'unavailable',
};

/** Small enough to read and discard rather than close the connection on. */
const SMALL_BODY_BYTES = 1024 * 1024;

/**
 * A request refused before its body was read (a 404 for the study a form is posted to) whose body is small: reading
 * the rest lets the client see the answer. Closing under a client still sending makes it report a broken pipe
 * instead of our reason.
 */
async function readSmallUnreadBody(incoming: IncomingMessage): Promise<boolean> {
  const declared = Number(incoming.headers['content-length']);
  if (incoming.destroyed || incoming.readableDidRead || !(declared <= SMALL_BODY_BYTES)) return false;
  incoming.resume();
  return finished(incoming, { signal: AbortSignal.timeout(2000) }).then(
    () => true,
    () => false,
  );
}
