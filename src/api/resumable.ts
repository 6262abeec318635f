import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { FileStore } from '@tus/file-store';
import { EVENTS, Server } from '@tus/server';
import { Metadata } from '@tus/utils';
import { Hono, type Context } from 'hono';
import { allow, callerOf } from '../auth/middleware.js';
import type { Config } from '../config.js';
import type { Env, Services } from '../context.js';
import { dicomParts, multipartOf, refuseOnLowDisk, uploadBodyError } from '../dicomweb/stow.js';
import { BadRequest, DiskFull, HttpError } from '../errors.js';
import { ImportSources } from '../import/sources.js';
import { FailureReason, IngestBatch, type Receipt } from '../ingest/ingest.js';
import { discard, formatBytes, spool, type Spooled } from '../ingest/spool.js';
import { addCorrected, correctionsOf, type Correcting } from './dicom-files.js';
import { fileAnswer, recordUpload } from './form-upload.js';
import type { Operation } from './openapi.js';

/** An upload not finished within this is given up and its bytes deleted: a laptop closed over a weekend resumes. */
const EXPIRY_MS = 3 * 24 * 3600_000;
const CLEANUP_MS = 3600_000;
const HEAD_BYTES = 256 * 1024;
export const RESUMABLE_PATH = '/api/v1/resumable';
/** Bytes a request of a resumable upload carries (the upload page's): what a dropped connection costs again at most. */
export const CHUNK_BYTES = 8 * 1024 * 1024;
/**
 * Small files go in bundles (the upload page's) of up to this many and a chunk's bytes, a bundle one upload: one
 * request and one commit for them all, where a file each would cost each a request and a commit.
 */
export const BUNDLE_FILES = 20;
/** Room a part's boundary and headers take in a bundle. */
export const BUNDLE_PART_BYTES = 256;

/** A bundle as this server takes it: within PACS_MAX_PARTS_PER_REQUEST and PACS_MAX_INSTANCE_BYTES too. */
export function bundleLimits(config: Pick<Config, 'maxPartsPerRequest' | 'maxInstanceBytes'>): { files: number; bytes: number } {
  return { files: Math.min(BUNDLE_FILES, config.maxPartsPerRequest), bytes: Math.min(CHUNK_BYTES, config.maxInstanceBytes) };
}
const TUS_VERSION = '1.0.0';

export const resumableOperations: Operation[] = [
  {
    method: 'post', path: '/resumable', id: 'resumableUpload', tag: 'Store', access: 'upload',
    summary: 'Begin a resumable upload of a DICOM file, a bundle of them, or a ZIP archive of them (tus 1.0)',
    description:
      'The tus protocol (tus.io 1.0: core, creation, creation-with-upload, termination, expiration), as tus-js-client or Uppy speak it. Send `Tus-Resumable: 1.0.0`, `Upload-Length` (at most PACS_MAX_INSTANCE_BYTES) and `Upload-Metadata` with `filename` and `fields`: a JSON object of the form fields of POST /uploads (the order\'s values and the reason), base64 as tus says. Then PATCH the `Location` answered with `Upload-Offset` and `application/offset+octet-stream` bytes; after a dropped connection, HEAD it to learn the offset and go on from there. The PATCH that completes the file answers 200 with its result as JSON (`file`, `status`, `sop_instance_uid`, `study_uid`, `corrected`, `reason`). Many small files go best as one upload, a bundle: its body a STOW-RS body (multipart/related, a DICOM file a part), its metadata `filetype` that body\'s Content-Type with its boundary and `filenames` a JSON list of the files\' names; its result is `{ "files": [...] }`, one result a file in their order, each file judged on its own. A ZIP archive (a CD copied into one) goes with `filetype` `application/zip`: its DICOM files (archives and gzipped files inside it too) are stored as `import` stores them, refused whole for a name that leaves it or a decompression bomb; its result is `{ "files": [...], "others": n }`, each file by its path in the archive, `others` the files that are not DICOM. A file, bundle or archive sent whole in the POST itself (`application/offset+octet-stream`, Content-Length equal to Upload-Length; tus-js-client\'s uploadDataDuringCreation) is stored at once, and the POST answers 201 with that result. Unfinished uploads are deleted after 3 days.',
    responses: { 201: { description: 'begun, its URL in `Location`; or, sent whole, stored, with the result as JSON' } },
  },
];

/**
 * Resumable uploads (issue 15), the tus protocol (tus.io 1.0) by @tus/server, the protocol's own maintained server: a
 * dropped connection or a closed lid resumes from the last byte received. An upload sent in several requests is kept
 * in the data folder (a restart resumes too; one replica's uploads are its own, so a load balancer must keep a client
 * on one replica while it uploads) and handed to ingest once all its bytes are in; one sent whole in its creating
 * request is stored as it arrives. Either is stored with the order's values of its `fields` metadata set on it, and
 * answered as the form routes answer a file, in the body of the request that completed it.
 */
export function resumableApi(services: Services) {
  const { config } = services;
  const directory = path.join(config.storageDir, 'resumable');
  // The request a tus hook runs for: who uploads, from where, for the upload log and the audit trail.
  const requests = new AsyncLocalStorage<Context<Env>>();
  let cleanedAt = 0;
  // Made at the first resumable request: the store makes its folder, which a server nobody uploads to by hand lacks.
  let tus: { server: Server; store: FileStore } | undefined;
  const tusServer = () => (tus ??= makeServer());
  /** Expired uploads go as new ones come: no timer to keep, and nothing piles up while nobody uploads either. */
  function deleteExpired(): void {
    if (Date.now() - cleanedAt < CLEANUP_MS) return;
    cleanedAt = Date.now();
    void tusServer().store.deleteExpired().catch((err: unknown) => services.log.warn({ err }, 'resumable uploads: expired ones could not be deleted'));
  }
  function makeServer(): { server: Server; store: FileStore } {
    const store = new FileStore({ directory, expirationPeriodInMilliseconds: EXPIRY_MS });
    const server = new Server({
      path: RESUMABLE_PATH,
      datastore: store,
      maxSize: config.maxInstanceBytes,
      relativeLocation: true,
      async onUploadCreate(_req, upload) {
        deleteExpired();
        try {
          correctionsOf(fieldsOf(upload.metadata));
          contentOf(upload.metadata);
          // The bytes go to the data folder's disk: refused there as STOW is, before the first is written.
          await refuseOnLowDisk(config.storageDir, config.minFreeBytes, upload.size ?? Number.NaN);
        } catch (e) {
          throw errorAnswer(e instanceof HttpError ? e : new BadRequest((e as Error).message));
        }
        return {};
      },
      async onUploadFinish(req, upload) {
        const file = path.join(directory, upload.id);
        // Completed by its creating request (a whole file tus's own way: sent chunked, say), it answers as a creation.
        const status = req.method === 'POST' ? 201 : 200;
        try {
          const answer = await storeUpload(requests.getStore(), upload.metadata, upload.id, { body: () => createReadStream(file), file: { path: file, size: upload.size ?? 0 } });
          return { status_code: status, headers: { 'Content-Type': 'application/json' }, body: answer };
        } catch (e) {
          const refused = uploadBodyError(e, config);
          if (!(refused instanceof HttpError)) throw refused;
          return errorAnswer(refused);
        }
      },
      // A chunk the disk had no room for: tus answers any failure 500 with its own words. The bytes it did write stay
      // (the upload's offset says how many), so the upload resumes once there is room, or expires.
      onResponseError(_req, err) {
        const full = err instanceof Error ? DiskFull.of(err) : undefined;
        if (!full) return undefined;
        return errorAnswer(new HttpError(507, 'disk-full', `${full.message}. Free space in the data folder (PACS_STORAGE_DIR), then resume the upload: what arrived is kept until it expires`));
      },
    });
    // The upload's files go once its answer is written: tus reads the upload again after onUploadFinish.
    server.on(EVENTS.POST_FINISH, (_req, _res, upload) => void store.remove(upload.id).catch(() => undefined));
    return { server, store };
  }

  /**
   * An upload received whole (one DICOM file, a bundle of them, or a ZIP archive of them), stored with the order's
   * values its metadata's `fields` give, and answered as the form routes answer a file (JSON; a bundle: `{ files: [...] }`
   * in its order; an archive: `{ files, others }`); in the upload log and the audit trail under the request's caller.
   */
  async function storeUpload(c: Context<Env> | undefined, metadata: Record<string, string | null> | undefined, id: string, source: Source): Promise<string> {
    const fields = fieldsOf(metadata);
    const { corrections } = correctionsOf(fields);
    const content = contentOf(metadata);
    const correcting: Correcting = { corrections, modifiedBy: c ? callerOf(c) : 'unknown', now: new Date(), maxInstanceBytes: config.maxInstanceBytes };
    const batch = new IngestBatch(services.ingest);
    let received: Received[];
    let others = 0;
    try {
      if (content.bundle) received = await addParts(batch, source.body(), content.bundle, correcting);
      else if (content.archive) ({ received, others } = await addArchive(batch, source, content.name ?? id, correcting));
      else received = [{ name: content.name ?? id, ...(source.file ? await addCorrected(batch, await onDisk(source.file.path, source.file.size), correcting) : await addBody(batch, source.body(), correcting)) }];
    } catch (e) {
      await batch.abort();
      throw e;
    }
    await batch.commit();
    const outcomes = await Promise.all(received.map((r) => r.receipt.outcome));
    if (c) {
      recordUpload(c, services, 'form', outcomes);
      c.set('auditStudyUids', [...new Set(outcomes.flatMap((o) => (o.status === 'failed' ? [] : [o.studyUid])))]);
      if (fields.reason) c.set('auditReason', fields.reason);
    }
    const answers = received.map((r, i) => ({ ...fileAnswer(r.name, outcomes[i]!), study_uid: outcomes[i]!.studyUid ?? null, corrected: outcomes[i]!.status === 'failed' ? [] : r.corrected }));
    if (content.archive) return JSON.stringify({ files: answers, others });
    return JSON.stringify(content.bundle ? { files: answers } : answers[0]);
  }

  /**
   * The DICOM files in a ZIP archive (a CD copied into one; archives and gzipped files inside it too), found and
   * refused as `import` finds and refuses them (ZIP slip, decompression bombs, nesting: ImportSources): each file as
   * one of a bundle, an archive or a file refused with its reason. `others`: files that are not DICOM (a disc's viewer).
   */
  async function addArchive(batch: IngestBatch, source: Source, name: string, correcting: Correcting): Promise<{ received: Received[]; others: number }> {
    // The archive is read where it lies: an upload's file, or this request's body spooled first.
    const spooled = source.file ? undefined : await spool(source.body(), services.ingest.spoolDir, config.maxInstanceBytes);
    try {
      await spooled?.written;
      const file = source.file?.path ?? spooled!.path;
      const found = await ImportSources.find(file, { maxEntryBytes: config.maxInstanceBytes, workDir: path.join(services.ingest.spoolDir, `archive-${randomUUID()}`) }, name);
      try {
        const received: Received[] = [];
        for (const item of found.items) received.push({ name: item.name, ...(await addBody(batch, await item.open(), correcting)) });
        for (const skipped of found.skipped) received.push({ name: skipped.name, corrected: [], receipt: batch.reject(FailureReason.CannotUnderstand, skipped.reason) });
        return { received, others: found.others };
      } finally {
        await found.close();
      }
    } finally {
      if (spooled) await discard(spooled);
    }
  }

  /** One file's bytes added as sent, or, with values to set, spooled first so that its header can be corrected. */
  async function addBody(batch: IngestBatch, body: AsyncIterable<Uint8Array>, correcting: Correcting): Promise<{ corrected: string[]; receipt: Receipt }> {
    if (correcting.corrections.length === 0) return { corrected: [], receipt: await batch.add(body) };
    const spooled = await spool(body, services.ingest.spoolDir, config.maxInstanceBytes);
    try {
      await spooled.written;
      return await addCorrected(batch, spooled, correcting);
    } finally {
      // add() has read the file whole into a spool of its own by now.
      await discard(spooled);
    }
  }

  /** The files of a bundle, part by part, as STOW-RS reads a request: a bad one never stops its neighbours. */
  async function addParts(batch: IngestBatch, body: AsyncIterable<Uint8Array>, bundle: Bundle, correcting: Correcting): Promise<Received[]> {
    const received: Received[] = [];
    // A bundle is one upload: within PACS_MAX_INSTANCE_BYTES whole, as tus holds it.
    for await (const part of dicomParts(body, bundle.boundary, { ...config, maxTotalBytes: config.maxInstanceBytes })) {
      const name = bundle.names[received.length] ?? `part ${received.length + 1}`;
      received.push({ name, ...('refusal' in part ? { corrected: [], receipt: batch.reject(FailureReason.CannotUnderstand, part.refusal) } : await addBody(batch, part.bytes, correcting)) });
    }
    if (received.length === 0) throw new BadRequest('the bundle holds no files; nothing was stored');
    return received;
  }

  /**
   * A file sent whole in the request that creates its upload (tus creation-with-upload, as the upload page sends
   * every file up to its chunk size): stored straight from the request, as STOW stores a part, without the upload's
   * files and second copy. Nothing is lost to resumability: a client whose creating request fails has no upload URL
   * to resume, and sends it again whole. Answered as tus answers a complete upload, with the result as the body.
   */
  async function storeWhole(c: Context<Env>, length: number): Promise<Response> {
    let metadata: Record<string, string | null> = {};
    try {
      const header = c.req.header('upload-metadata');
      if (header) metadata = Metadata.parse(header);
    } catch {
      throw new BadRequest('Upload-Metadata is not tus metadata (comma-separated keys, each with a base64 value)');
    }
    if (length > config.maxInstanceBytes) throw new HttpError(413, 'too-large', `the file is larger than the ${formatBytes(config.maxInstanceBytes)} limit (PACS_MAX_INSTANCE_BYTES); nothing was stored`);
    await refuseOnLowDisk(config.storageDir, config.minFreeBytes, length);
    deleteExpired();
    const body = exactly(c.env?.incoming ?? (c.req.raw.body as unknown as AsyncIterable<Uint8Array>), length);
    const id = randomBytes(16).toString('hex');
    const answer = await storeUpload(c, metadata, id, { body: () => body }).catch((e: unknown) => {
      throw uploadBodyError(e, config);
    });
    return c.body(answer, 201, { 'Tus-Resumable': TUS_VERSION, Location: `${RESUMABLE_PATH}/${id}`, 'Upload-Offset': String(length), 'Content-Type': 'application/json' });
  }

  const router = new Hono<Env>();
  const handle = (c: Context<Env>) => requests.run(c, async () => withoutCors(await tusServer().server.handleWeb(c.req.raw)));
  router.post('/resumable', allow('upload'), (c) => {
    const whole = wholeInCreation(c);
    return whole === undefined ? handle(c) : storeWhole(c, whole);
  });
  // HEAD, PATCH and DELETE of an upload, as tus says (in the POST's description: OpenAPI has no way to say "tus").
  router.all('/resumable/*', allow('upload'), handle);
  return router;
}

/** What a tus client sends and reads besides the usual headers: a page of another origin may use them (app.ts, CORS). */
export const TUS_REQUEST_HEADERS = ['Tus-Resumable', 'Upload-Length', 'Upload-Offset', 'Upload-Metadata'];
export const TUS_RESPONSE_HEADERS = ['Location', 'Tus-Resumable', 'Tus-Version', 'Tus-Extension', 'Tus-Max-Size', 'Upload-Offset', 'Upload-Length', 'Upload-Metadata', 'Upload-Expires'];

/**
 * tus's answer without the CORS headers it adds on its own (`Access-Control-Allow-Origin: *` to any origin): which
 * origins may read an answer is PACS_CORS_ORIGINS's to say, for these routes as for every other (auth/origins.ts).
 */
function withoutCors(response: Response): Response {
  const cors: string[] = [];
  response.headers.forEach((_value, name) => name.startsWith('access-control-') && cors.push(name));
  for (const name of cors) response.headers.delete(name);
  return response;
}

/** A complete upload's bytes; also the file on disk that holds them, when they are in one already (tus's). */
type Source = { body: () => AsyncIterable<Uint8Array>; file?: { path: string; size: number } };
type Received = { name: string; corrected: string[]; receipt: Receipt };
/**
 * Many small files in one upload, as a STOW-RS body (multipart/related, a DICOM file a part): a file a request would
 * cost each file a request and a commit of its own, where a bundle costs them once (the upload page bundles files up
 * to a chunk). `names` are the files' names, in their order.
 */
type Bundle = { boundary: string; names: string[] };

/**
 * What an upload holds, from its metadata: one DICOM file named `filename`; with `filetype` multipart/related, a
 * bundle whose files `filenames` (a JSON list) names; with `filetype` application/zip, a ZIP archive of DICOM files.
 */
function contentOf(metadata: Record<string, string | null> | undefined): { name?: string; bundle?: Bundle; archive?: boolean } {
  const type = metadata?.filetype;
  // Windows browsers name a ZIP application/x-zip-compressed.
  if (type && /^\s*application\/(x-zip-compressed|zip)\s*(;|$)/i.test(type)) return { name: metadata?.filename ?? undefined, archive: true };
  if (!type || !/^\s*multipart\/related\s*(;|$)/i.test(type)) return { name: metadata?.filename ?? undefined };
  const { boundary, type: partType } = multipartOf(type);
  if (partType && partType !== 'application/dicom') throw new HttpError(415, 'unsupported-media-type', `a bundle holds application/dicom parts, not ${partType}`);
  let names: unknown = [];
  try {
    names = JSON.parse(metadata?.filenames ?? '[]');
  } catch {
    // Said below.
  }
  if (!Array.isArray(names) || names.some((n) => typeof n !== 'string')) throw new BadRequest('the upload\'s filenames metadata is a JSON list of names');
  return { bundle: { boundary, names: names as string[] } };
}

/** The length of a creating request that carries its whole file (Content-Length = Upload-Length), else undefined. */
function wholeInCreation(c: Context<Env>): number | undefined {
  const header = (name: string) => c.req.header(name);
  const length = header('upload-length');
  if (header('tus-resumable') !== TUS_VERSION || header('content-type') !== 'application/offset+octet-stream' || header('upload-concat') !== undefined) return undefined;
  if (!length || !/^\d{1,15}$/.test(length) || length !== header('content-length') || Number(length) === 0) return undefined;
  return Number(length);
}

/** The body, refused unless it holds exactly `length` bytes: counted here, whatever a framework's limit would do. */
async function* exactly(body: AsyncIterable<Uint8Array>, length: number): AsyncGenerator<Uint8Array> {
  let received = 0;
  for await (const chunk of body) {
    received += chunk.byteLength;
    if (received > length) throw new BadRequest(`the request holds more than the ${length} bytes its Upload-Length says; nothing was stored`);
    yield chunk;
  }
  if (received < length) throw new HttpError(400, 'upload-interrupted', `the request ended after ${received} of its ${length} bytes; nothing was stored, send it again`);
}

/** A complete upload's file as ingest reads a spooled one: its path, size and first bytes. */
async function onDisk(file: string, size: number): Promise<Pick<Spooled, 'path' | 'size' | 'head' | 'written'>> {
  const handle = await fs.open(file, 'r');
  const head = Buffer.alloc(Math.min(HEAD_BYTES, size));
  await handle.read(head, 0, head.length, 0).finally(() => handle.close());
  return { path: file, size, head, written: Promise.resolve() };
}

/** A refusal as tus hooks answer it: the status, and the reason as every route gives it. */
function errorAnswer(e: HttpError): { status_code: number; headers: Record<string, string>; body: string } {
  return { status_code: e.status, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ error: e.code, detail: e.message }) };
}

/** The form's fields, as the client put them in the upload's metadata (`fields`, a JSON object of strings). */
function fieldsOf(metadata: Record<string, string | null> | undefined): Record<string, string> {
  const raw = metadata?.fields;
  if (!raw) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'bad-request', 'the upload\'s fields metadata is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Object.values(parsed).some((v) => typeof v !== 'string')) {
    throw new HttpError(400, 'bad-request', 'the upload\'s fields metadata is a JSON object of strings');
  }
  return parsed as Record<string, string>;
}
