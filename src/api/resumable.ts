import { AsyncLocalStorage } from 'node:async_hooks';
import fs from 'node:fs/promises';
import path from 'node:path';
import { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';
import { Hono, type Context } from 'hono';
import { allow, callerOf } from '../auth/middleware.js';
import type { Env, Services } from '../context.js';
import { refuseOnLowDisk } from '../dicomweb/stow.js';
import { HttpError } from '../errors.js';
import { IngestBatch } from '../ingest/ingest.js';
import { addCorrected, correctionsOf } from './dicom-files.js';
import { fileAnswer, recordUpload } from './form-upload.js';
import type { Operation } from './openapi.js';

/** An upload not finished within this is given up and its bytes deleted: a laptop closed over a weekend resumes. */
const EXPIRY_MS = 3 * 24 * 3600_000;
const CLEANUP_MS = 3600_000;
const HEAD_BYTES = 256 * 1024;
export const RESUMABLE_PATH = '/api/v1/resumable';

export const resumableOperations: Operation[] = [
  {
    method: 'post', path: '/resumable', id: 'resumableUpload', tag: 'Store', access: 'upload',
    summary: 'Begin a resumable upload of one DICOM file (tus 1.0)',
    description:
      'The tus protocol (tus.io 1.0: core, creation, termination, expiration), as tus-js-client or Uppy speak it. Send `Tus-Resumable: 1.0.0`, `Upload-Length` (at most PACS_MAX_INSTANCE_BYTES) and `Upload-Metadata` with `filename` and `fields`: a JSON object of the form fields of POST /uploads (the order\'s values and the reason), base64 as tus says. Then PATCH the `Location` answered with `Upload-Offset` and `application/offset+octet-stream` bytes; after a dropped connection, HEAD it to learn the offset and go on from there. The PATCH that completes the file answers 200 with its result as JSON (`file`, `status`, `sop_instance_uid`, `study_uid`, `corrected`, `reason`). Unfinished uploads are deleted after 3 days.',
    responses: { 201: { description: 'begun; its URL in `Location`' } },
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
        const c = requests.getStore();
        const fields = fieldsOf(upload.metadata);
        const { corrections } = correctionsOf(fields);
        const file = path.join(directory, upload.id);
        try {
          const handle = await fs.open(file, 'r');
          const head = Buffer.alloc(Math.min(HEAD_BYTES, upload.size ?? 0));
          await handle.read(head, 0, head.length, 0).finally(() => handle.close());
          const batch = new IngestBatch(services.ingest);
          const modifiedBy = c ? callerOf(c) : 'unknown';
          const { corrected, receipt } = await addCorrected(batch, { path: file, size: upload.size ?? 0, head, written: Promise.resolve() }, { corrections, modifiedBy, now: new Date(), maxInstanceBytes: config.maxInstanceBytes });
          await batch.commit();
          const o = await receipt.outcome;
          if (c) {
            await recordUpload(c, services, 'form', [o]);
            if (o.status !== 'failed') c.set('auditStudyUids', [o.studyUid]);
            if (fields.reason) c.set('auditReason', fields.reason);
          }
          const answer = { ...fileAnswer(upload.metadata?.filename ?? upload.id, o), study_uid: o.studyUid ?? null, corrected: o.status === 'failed' ? [] : corrected };
          return { status_code: 200, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(answer) };
        } finally {
          await store.remove(upload.id).catch(() => undefined);
        }
      },
    });
  }

  const router = new Hono<Env>();
  const handle = (c: Context<Env>) => requests.run(c, () => tusServer().handleWeb(c.req.raw));
  router.post('/resumable', allow('upload'), handle);
  // HEAD, PATCH and DELETE of an upload, as tus says (in the POST's description: OpenAPI has no way to say "tus").
  router.all('/resumable/*', allow('upload'), handle);
  return router;
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
