import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';
import { Metadata } from '@tus/utils';
import { Hono, type Context } from 'hono';
import { allow, callerOf } from '../auth/middleware.js';
import type { Env, Services } from '../context.js';
import { refuseOnLowDisk, uploadBodyError } from '../dicomweb/stow.js';
import { BadRequest, HttpError } from '../errors.js';
import { IngestBatch, type Receipt } from '../ingest/ingest.js';
import { discard, formatBytes, spool, type Spooled } from '../ingest/spool.js';
import { addCorrected, correctionsOf, type Correcting } from './dicom-files.js';
import { fileAnswer, recordUpload } from './form-upload.js';
import type { Operation } from './openapi.js';

/** An upload not finished within this is given up and its bytes deleted: a laptop closed over a weekend resumes. */
const EXPIRY_MS = 3 * 24 * 3600_000;
const CLEANUP_MS = 3600_000;
const HEAD_BYTES = 256 * 1024;
export const RESUMABLE_PATH = '/api/v1/resumable';
const TUS_VERSION = '1.0.0';

export const resumableOperations: Operation[] = [
  {
    method: 'post', path: '/resumable', id: 'resumableUpload', tag: 'Store', access: 'upload',
    summary: 'Begin a resumable upload of one DICOM file (tus 1.0)',
    description:
      'The tus protocol (tus.io 1.0: core, creation, creation-with-upload, termination, expiration), as tus-js-client or Uppy speak it. Send `Tus-Resumable: 1.0.0`, `Upload-Length` (at most PACS_MAX_INSTANCE_BYTES) and `Upload-Metadata` with `filename` and `fields`: a JSON object of the form fields of POST /uploads (the order\'s values and the reason), base64 as tus says. Then PATCH the `Location` answered with `Upload-Offset` and `application/offset+octet-stream` bytes; after a dropped connection, HEAD it to learn the offset and go on from there. The PATCH that completes the file answers 200 with its result as JSON (`file`, `status`, `sop_instance_uid`, `study_uid`, `corrected`, `reason`). A file sent whole in the POST itself (`application/offset+octet-stream`, Content-Length equal to Upload-Length; tus-js-client\'s uploadDataDuringCreation) is stored at once, and the POST answers 201 with that result. Unfinished uploads are deleted after 3 days.',
    responses: { 201: { description: 'begun, its URL in `Location`; or, sent whole, stored, with the result as JSON' } },
  },
];

/**
 * Resumable uploads (issue 15), the tus protocol (tus.io 1.0) by @tus/server, the protocol's own maintained server: a
 * dropped connection or a closed lid resumes from the last byte received. A file is handed to ingest only once all
 * its bytes are in, then stored (with the order's values of its `fields` metadata set on it) and answered as the form
 * routes answer a file, in the final PATCH's body. Kept in the data folder, so a restart resumes too; one replica's
 * uploads are its own (a load balancer must keep a client on one replica while it uploads).
 */
export function resumableApi(services: Services) {
  const { config } = services;
  const directory = path.join(config.storageDir, 'resumable');
  // The request a tus hook runs for: who uploads, from where, for the upload log and the audit trail.
  const requests = new AsyncLocalStorage<Context<Env>>();
  let cleanedAt = 0;
  // Made at the first resumable request: the store makes its folder, which a server nobody uploads to by hand lacks.
  let tus: Server | undefined;
  const tusServer = () => (tus ??= makeServer());
  function makeServer(): Server {
    const store = new FileStore({ directory, expirationPeriodInMilliseconds: EXPIRY_MS });
    return new Server({
      path: RESUMABLE_PATH,
      datastore: store,
      maxSize: config.maxInstanceBytes,
      relativeLocation: true,
      async onUploadCreate(_req, upload) {
        // Expired uploads go as new ones come: no timer to keep, and nothing piles up while nobody uploads either.
        if (Date.now() - cleanedAt > CLEANUP_MS) {
          cleanedAt = Date.now();
          void store.deleteExpired().catch((err: unknown) => services.log.warn({ err }, 'resumable uploads: expired ones could not be deleted'));
        }
        try {
          correctionsOf(fieldsOf(upload.metadata));
          // The bytes go to the data folder's disk: refused there as STOW is, before the first is written.
          await refuseOnLowDisk(config.storageDir, config.minFreeBytes, upload.size ?? Number.NaN);
        } catch (e) {
          const status = e instanceof HttpError ? e.status : 400;
          throw { status_code: status, body: JSON.stringify({ error: e instanceof HttpError ? e.code : 'bad-request', detail: (e as Error).message }) };
        }
        return {};
      },
      async onUploadFinish(_req, upload) {
        const file = path.join(directory, upload.id);
        try {
          const answer = await storeFile(requests.getStore(), upload.metadata, upload.id, async (batch, correcting) => addCorrected(batch, await onDisk(file, upload.size ?? 0), correcting));
          return { status_code: 200, headers: { 'Content-Type': 'application/json' }, body: answer };
        } finally {
          await store.remove(upload.id).catch(() => undefined);
        }
      },
    });
  }

  /**
   * One file received whole, stored with the order's values its metadata's `fields` give, and answered as the form
   * routes answer a file (JSON); in the upload log and the audit trail under the request's caller.
   */
  async function storeFile(c: Context<Env> | undefined, metadata: Record<string, string | null> | undefined, id: string, add: (batch: IngestBatch, correcting: Correcting) => Promise<{ corrected: string[]; receipt: Receipt }>): Promise<string> {
    const fields = fieldsOf(metadata);
    const { corrections } = correctionsOf(fields);
    const batch = new IngestBatch(services.ingest);
    const { corrected, receipt } = await add(batch, { corrections, modifiedBy: c ? callerOf(c) : 'unknown', now: new Date(), maxInstanceBytes: config.maxInstanceBytes });
    await batch.commit();
    const o = await receipt.outcome;
    if (c) {
      recordUpload(c, services, 'form', [o]);
      if (o.status !== 'failed') c.set('auditStudyUids', [o.studyUid]);
      if (fields.reason) c.set('auditReason', fields.reason);
    }
    return JSON.stringify({ ...fileAnswer(metadata?.filename ?? id, o), study_uid: o.studyUid ?? null, corrected: o.status === 'failed' ? [] : corrected });
  }

  /**
   * A file sent whole in the request that creates its upload (tus creation-with-upload, as the upload page sends
   * every file up to its chunk size): stored straight from the request, as STOW stores a part, without the upload's
   * files and second copy. Nothing is lost to resumability: a client whose creating request fails has no upload URL
   * to resume, and sends it again whole. Answered as tus answers a complete upload, with the result as the body.
   */
  async function storeWhole(c: Context<Env>, length: number): Promise<Response> {
    let metadata: Record<string, string | null>;
    try {
      metadata = Metadata.parse(c.req.header('upload-metadata'));
    } catch {
      throw new BadRequest('Upload-Metadata is not tus metadata (comma-separated keys, each with a base64 value)');
    }
    if (length > config.maxInstanceBytes) throw new HttpError(413, 'too-large', `the file is larger than the ${formatBytes(config.maxInstanceBytes)} limit (PACS_MAX_INSTANCE_BYTES); nothing was stored`);
    await refuseOnLowDisk(config.storageDir, config.minFreeBytes, length);
    const body = exactly(c.env?.incoming ?? (c.req.raw.body as unknown as AsyncIterable<Uint8Array>), length);
    const id = randomBytes(16).toString('hex');
    const answer = await storeFile(c, metadata, id, async (batch, correcting) => {
      if (correcting.corrections.length === 0) return { corrected: [], receipt: await batch.add(body) };
      const spooled = await spool(body, services.ingest.spoolDir, config.maxInstanceBytes);
      try {
        await spooled.written;
        return await addCorrected(batch, spooled, correcting);
      } finally {
        await discard(spooled);
      }
    }).catch((e: unknown) => {
      throw uploadBodyError(e, config);
    });
    return c.body(answer, 201, { 'Tus-Resumable': TUS_VERSION, Location: `${RESUMABLE_PATH}/${id}`, 'Upload-Offset': String(length), 'Content-Type': 'application/json' });
  }

  const router = new Hono<Env>();
  const handle = (c: Context<Env>) => requests.run(c, () => tusServer().handleWeb(c.req.raw));
  router.post('/resumable', allow('upload'), (c) => {
    const whole = wholeInCreation(c);
    return whole === undefined ? handle(c) : storeWhole(c, whole);
  });
  // HEAD, PATCH and DELETE of an upload, as tus says (in the POST's description: OpenAPI has no way to say "tus").
  router.all('/resumable/*', allow('upload'), handle);
  return router;
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
