import { Hono, type Context } from 'hono';
import type { StoredInstance } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { assertUid } from '../dicom/uid.js';
import { BadRequest, HttpError, NotFound } from '../errors.js';
import { frameCountOf } from '../read/frames.js';
import { TransferSyntax } from '../dicom/transfer-syntax.js';
import type { ImageFormat, Viewport } from '../render/render.js';
import { negotiate, parseAccept } from './media-type.js';
import { number, sendRendered, windowOf, wholeNumber } from './rendered.js';
import { streamOf } from './wado.js';

/** A side WADO-URI leaves free when only the other is given: a fit by that one alone. */
const UNBOUNDED = 16384;

/**
 * WADO-URI (PS3.18 9): one object per request, named by query parameters, for EMRs that embed images and for
 * older viewers. `application/dicom` is a Part 10 file, converted as WADO-RS converts; images are rendered like
 * WADO-RS rendered resources and share their cache.
 */
export function wadoUriRouter(services: Services) {
  const { reads, renderer } = services;
  const router = new Hono<Env>();

  router.get('/', async (c) => {
    const requestType = c.req.query('requestType');
    if (requestType !== 'WADO') {
      throw new BadRequest(requestType === undefined ? 'the parameter requestType is missing; it must be WADO' : `requestType must be WADO (PS3.18 9.1.2), not "${requestType}"`);
    }
    const scope = {
      studyUid: assertUid('studyUID', required(c, 'studyUID')),
      seriesUid: assertUid('seriesUID', required(c, 'seriesUID')),
      sopUid: assertUid('objectUID', required(c, 'objectUID')),
    };
    for (const unsupported of ['anonymize', 'presentationUID', 'presentationSeriesUID']) {
      if (c.req.query(unsupported) !== undefined) throw new BadRequest(`the parameter ${unsupported} is not supported by this server; leave it out`);
    }
    const instance = await reads.instance(scope, 'no object with those studyUID, seriesUID and objectUID is stored');
    const frameCount = frameCountOf(instance);

    // image/jpeg unless asked otherwise (PS3.18 9.1.2); an object without pixels has only its file to give.
    const offers = frameCount > 0 ? ['image/jpeg', 'image/png', 'application/dicom'] : ['application/dicom'];
    const asked = c.req.query('contentType');
    const chosen = negotiate(parseAccept(asked), offers.map((mediaType) => ({ mediaType })))?.mediaType;
    if (!chosen) {
      throw new HttpError(406, 'not-acceptable', `contentType "${asked}" cannot be served for this object; it is available as ${offers.join(', ')}`);
    }
    if (chosen === 'application/dicom') return sendFile(c, services, instance);

    const frameText = c.req.query('frameNumber');
    const frame = frameText === undefined ? 1 : wholeNumber('frameNumber', frameText, 1, Number.MAX_SAFE_INTEGER);
    if (frame > frameCount) throw new NotFound(`frameNumber ${frame} does not exist: the object has ${frameCount} frame(s)`);
    const quality = c.req.query('imageQuality');
    return sendRendered(c, renderer, instance, [frame], {
      format: chosen.slice('image/'.length) as ImageFormat,
      quality: quality === undefined ? undefined : wholeNumber('imageQuality', quality, 1, 100),
      viewport: viewportOf(c, instance),
      window: windowParameters(c),
    });
  });

  return router;
}

/**
 * The object as a Part 10 file in the syntax asked for (PS3.18 9.1.2 transferSyntax): Explicit VR Little Endian when
 * none is named (converted, as WADO-RS converts, when stored otherwise), the stored file byte for byte for `*` or its
 * own syntax, checked as it goes; another syntax is refused, saying what can be had.
 */
async function sendFile(c: Context<Env>, { reads, transcoder }: Pick<Services, 'reads' | 'transcoder'>, instance: StoredInstance): Promise<Response> {
  const asked = c.req.query('transferSyntax') ?? TransferSyntax.ExplicitVRLittleEndian;
  const asStored = asked === '*' || asked === instance.transferSyntaxUid;
  if (!asStored && asked !== TransferSyntax.ExplicitVRLittleEndian) {
    throw new HttpError(406, 'not-acceptable', `the object is stored as ${instance.transferSyntaxUid}; ask for that syntax, * (as stored) or ${TransferSyntax.ExplicitVRLittleEndian} (Explicit VR Little Endian)`);
  }
  const etag = asStored ? `"${instance.sha256}"` : `"${instance.sha256}-explicit-le"`;
  const headers = { ETag: etag, 'Cache-Control': 'private, no-cache' };
  if (c.req.header('if-none-match')?.split(',').some((t) => t.trim() === etag)) return c.body(null, 304, headers);
  await reads.assertPresent([instance]);
  if (asStored) {
    const body = streamOf(reads.instanceStream(instance));
    return c.body(body, 200, { ...headers, 'Content-Type': 'application/dicom', 'Content-Length': String(instance.size) });
  }
  const sent = await transcoder.instance(instance);
  const body = streamOf(sent.body);
  // A file whose frames this server cannot decode goes as stored: its ETag and syntax say which it is.
  const sentHeaders = sent.transferSyntaxUid === instance.transferSyntaxUid ? { ...headers, ETag: `"${instance.sha256}"` } : headers;
  return c.body(body, 200, { ...sentHeaders, 'Content-Type': `application/dicom; transfer-syntax=${sent.transferSyntaxUid}` });
}

function required(c: Context<Env>, name: string): string {
  const value = c.req.query(name);
  if (value === undefined || value === '') throw new BadRequest(`the parameter ${name} is missing`);
  return value;
}

/** rows and columns bound the image; region is x1,y1,x2,y2 as fractions of it (PS3.18 9.1.2). */
function viewportOf(c: Context<Env>, instance: StoredInstance): Viewport | undefined {
  const rows = c.req.query('rows');
  const columns = c.req.query('columns');
  const regionText = c.req.query('region');
  if (rows === undefined && columns === undefined && regionText === undefined) return undefined;
  const height = rows === undefined ? UNBOUNDED : wholeNumber('rows', rows, 1, UNBOUNDED);
  const width = columns === undefined ? UNBOUNDED : wholeNumber('columns', columns, 1, UNBOUNDED);
  if (regionText === undefined) return { width, height };
  const fractions = regionText.split(',').map((s) => number('region', s));
  const [x1 = 0, y1 = 0, x2 = 0, y2 = 0] = fractions;
  if (fractions.length !== 4 || fractions.some((f) => f < 0 || f > 1) || x2 <= x1 || y2 <= y1) {
    throw new BadRequest(`region must be x1,y1,x2,y2 with 0 ≤ x1 < x2 ≤ 1 and 0 ≤ y1 < y2 ≤ 1, not "${regionText}"`);
  }
  const json = JSON.parse(instance.json) as Record<string, { Value?: number[] }>;
  const imageRows = json['00280010']?.Value?.[0] ?? 0;
  const imageColumns = json['00280011']?.Value?.[0] ?? 0;
  const x = Math.floor(x1 * imageColumns);
  const y = Math.floor(y1 * imageRows);
  return {
    width,
    height,
    region: { x, y, width: Math.max(1, Math.ceil(x2 * imageColumns) - x), height: Math.max(1, Math.ceil(y2 * imageRows) - y) },
  };
}

/** windowCenter and windowWidth go together (PS3.18 9.1.2); the function is LINEAR. */
function windowParameters(c: Context<Env>) {
  const center = c.req.query('windowCenter');
  const width = c.req.query('windowWidth');
  if (center === undefined && width === undefined) return undefined;
  if (center === undefined || width === undefined) throw new BadRequest(`the parameter ${center === undefined ? 'windowCenter' : 'windowWidth'} is missing: windowCenter and windowWidth go together`);
  return windowOf(number('windowCenter', center), number('windowWidth', width), 'LINEAR');
}
