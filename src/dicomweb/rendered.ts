import { createHash } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { StoredInstance } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { BadRequest, HttpError, NotFound } from '../errors.js';
import { firstString, type DicomJson } from '../dicom/json.js';
import { Tag } from '../dicom/tags.js';
import { frameCountOf } from '../read/frames.js';
import { MEDIA_TYPES, type ImageFormat, type RenderOptions, type Renderer, type Viewport } from '../render/render.js';
import type { VoiFunction, WindowRequest } from '../render/types.js';
import { negotiate, parseAccept, type Offer } from './media-type.js';
import { multipartBody, multipartBoundary, multipartContentType } from './multipart.js';
import { pathScope } from './path-uids.js';
import { parseFrameList, streamOf } from './wado.js';

/** Longer side of a thumbnail when the client names no viewport. */
export const THUMBNAIL_SIZE = 128;
/** Neither side of a viewport may exceed this: a rendering is never enlarged, but a crafted request is refused early. */
const MAX_VIEWPORT = 16384;
const FORMATS = Object.keys(MEDIA_TYPES) as ImageFormat[];
const SINGLE: Offer[] = FORMATS.map((f) => ({ mediaType: MEDIA_TYPES[f] }));
const MULTIPART: Offer[] = FORMATS.map((f) => ({ mediaType: 'multipart/related', type: MEDIA_TYPES[f] }));
const NOT_ACCEPTABLE = `rendered images are available as ${FORMATS.map((f) => MEDIA_TYPES[f]).join(', ')}`;
/** Study-level images change when instances are added or removed: a browser asks again, and gets a 304 if nothing did. */
const CACHE_CONTROL = 'private, no-cache';

type Kind = 'rendered' | 'thumbnail';
const PDF = 'application/pdf';

/**
 * WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3, 10.4.1.1.4; parameters 8.3.5.1). A study or a series
 * is shown by its representative image (Catalog.representativeImage); an instance by its first frame, which
 * PS3.18 allows for a multi-frame instance asked for as a single image.
 */
export function renderedRouter(services: Services) {
  const { reads, renderer } = services;
  const router = new Hono<Env>();

  const studyOrSeries = (kind: Kind) => async (c: Context<Env>) => {
    const options = renderOptions(c, kind);
    return sendRendered(c, renderer, await reads.representativeImage(pathScope(c)), [1], options);
  };

  const instanceOrFrames = (kind: Kind) => async (c: Context<Env>) => {
    const options = renderOptions(c, kind);
    const instance = await reads.instance(pathScope(c));
    const frameCount = frameCountOf(instance);
    if (frameCount === 0) {
      if (kind === 'rendered' && c.req.param('frames') === undefined) {
        const document = await encapsulatedDocument(c, reads, instance);
        if (document) return document;
      }
      throw new NotFound('this instance has no pixel data, so there is nothing to render');
    }
    const list = c.req.param('frames');
    const frames = list === undefined ? [1] : parseFrameList(list, frameCount);
    // A thumbnail is one picture, of the first frame named.
    return sendRendered(c, renderer, instance, kind === 'thumbnail' ? frames.slice(0, 1) : frames, options);
  };

  for (const kind of ['rendered', 'thumbnail'] as const) {
    router.get(`/studies/:study/${kind}`, studyOrSeries(kind));
    router.get(`/studies/:study/series/:series/${kind}`, studyOrSeries(kind));
    router.get(`/studies/:study/series/:series/instances/:instance/${kind}`, instanceOrFrames(kind));
    router.get(`/studies/:study/series/:series/instances/:instance/frames/:frames/${kind}`, instanceOrFrames(kind));
  }
  return router;
}

/**
 * An Encapsulated PDF rendered is the document itself (PS3.18 10.4.1.1.3, Table 8.3.3.1-2: "application/pdf"), its
 * bytes without the padding DICOM adds to an odd length. Only PDF: the MIME type is whatever the sender wrote, and a
 * document served as, say, text/html would run its scripts on this server's origin, beside the staff's session.
 * Undefined when the instance holds no PDF.
 */
async function encapsulatedDocument(c: Context<Env>, reads: Services['reads'], instance: StoredInstance): Promise<Response | undefined> {
  const json = JSON.parse(instance.json) as DicomJson;
  const type = firstString(json, Tag.MIMETypeOfEncapsulatedDocument)?.trim().toLowerCase();
  const attribute = json[Tag.EncapsulatedDocument];
  if (type !== PDF || !attribute) return undefined;
  if (!negotiate(parseAccept(c.req.query('accept') ?? c.req.header('accept')), [{ mediaType: PDF }])) {
    throw new HttpError(406, 'not-acceptable', `this instance is a document rendered as ${PDF}; ask for that type`);
  }
  // A small document is kept in the metadata; a larger one is bulk data, read from the stored file.
  const inline = typeof attribute.InlineBinary === 'string' ? Buffer.from(attribute.InlineBinary, 'base64') : undefined;
  const value = inline ? { length: inline.length, chunks: [inline] } : await reads.bulkDataStream(instance, Tag.EncapsulatedDocument);
  const declared = Number(json[Tag.EncapsulatedDocumentLength]?.Value?.[0]);
  const length = Number.isInteger(declared) && declared >= 0 && declared <= value.length ? declared : value.length;
  const body = (async function* () {
    let left = length;
    for await (const chunk of value.chunks as AsyncIterable<Buffer> | Buffer[]) {
      if (left > 0) yield chunk.subarray(0, Math.min(chunk.length, left));
      left -= chunk.length;
    }
  })();
  return c.body(streamOf(body), 200, { 'Content-Type': PDF, 'Content-Length': String(length), 'Content-Disposition': 'inline; filename="document.pdf"' });
}

/**
 * Answers with frames of an instance rendered: one frame as an image, several as multipart/related (when the
 * client takes that); 304 when the client's copy is current. The format comes from Accept, or the `accept`
 * query parameter (PS3.18 8.3.3.1), unless `options` names it.
 */
export async function sendRendered(
  c: Context<Env>,
  renderer: Renderer,
  instance: StoredInstance,
  frames: number[],
  options: Omit<RenderOptions, 'format'> & { format?: ImageFormat },
): Promise<Response> {
  const accept = parseAccept(c.req.query('accept') ?? c.req.header('accept'));
  const offer = options.format ? { mediaType: MEDIA_TYPES[options.format] } : negotiate(accept, frames.length === 1 ? [...SINGLE, ...MULTIPART] : MULTIPART);
  if (!offer) {
    throw new HttpError(406, 'not-acceptable', frames.length === 1 ? NOT_ACCEPTABLE : `${NOT_ACCEPTABLE}; several frames come as multipart/related; type="image/jpeg" (or png, webp), or ask for one frame`);
  }
  const format = formatOf(offer.type ?? offer.mediaType);
  const renditions = frames.map((frame) => renderer.identify(instance, frame, { ...options, format }));
  const multipart = offer.mediaType === 'multipart/related';
  const etag = multipart ? `"${createHash('sha256').update(`multipart:${renditions.map((r) => r.etag).join()}`).digest('base64url').slice(0, 27)}"` : renditions[0]!.etag;
  const headers = { ETag: etag, 'Cache-Control': CACHE_CONTROL, Vary: 'Accept' };
  if (c.req.header('if-none-match')?.split(',').some((t) => t.trim().replace(/^W\//, '') === etag)) return c.body(null, 304, headers);

  // Rendered before anything is sent, so that a failure is still a status with a reason; one at a time, so that a
  // long frame list holds one decoded frame in memory, not all of them.
  const images: Buffer[] = [];
  for (const frame of frames) images.push((await renderer.render(instance, frame, { ...options, format })).bytes);
  if (!multipart) return c.body(bytesOf(images[0]!), 200, { ...headers, 'Content-Type': MEDIA_TYPES[format] });
  const boundary = multipartBoundary();
  const chunks: Uint8Array[] = [];
  const parts = (async function* () {
    for (const image of images) yield { contentType: MEDIA_TYPES[format], body: image };
  })();
  for await (const chunk of multipartBody(parts, boundary)) chunks.push(chunk);
  return c.body(bytesOf(Buffer.concat(chunks)), 200, { ...headers, 'Content-Type': multipartContentType(MEDIA_TYPES[format], boundary) });
}

/** The same memory as a plain Uint8Array, which Hono's body type wants; `new Uint8Array(buffer)` would copy it. */
function bytesOf(buffer: Buffer): Uint8Array<ArrayBuffer> {
  return new Uint8Array(buffer.buffer as ArrayBuffer, buffer.byteOffset, buffer.byteLength);
}

function formatOf(mediaType: string): ImageFormat {
  return FORMATS.find((f) => MEDIA_TYPES[f] === mediaType)!;
}

/** PS3.18 8.3.5.1 query parameters of the rendered resources; a bad value is a 400 that says which and why. */
export function renderOptions(c: Context<Env>, kind: Kind): Omit<RenderOptions, 'format'> {
  const quality = c.req.query('quality');
  const viewport = c.req.query('viewport');
  const window = c.req.query('window');
  return {
    quality: quality === undefined ? undefined : wholeNumber('quality', quality, 1, 100),
    viewport: viewport === undefined ? (kind === 'thumbnail' ? { width: THUMBNAIL_SIZE, height: THUMBNAIL_SIZE } : undefined) : parseViewport(viewport),
    window: window === undefined ? undefined : parseWindow(window),
  };
}

/**
 * `viewport=vw,vh[,sx,sy,sw,sh]` (PS3.18 8.3.5.1.3): a box to fit in, and optionally the source region to show;
 * an empty sx or sy is 0, an empty sw or sh reaches the image's edge.
 */
export function parseViewport(text: string): Viewport {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.length !== 2 && parts.length !== 6) {
    throw new BadRequest(`viewport must be "vw,vh" or "vw,vh,sx,sy,sw,sh" (PS3.18 8.3.5.1.3), not "${text}"`);
  }
  const width = wholeNumber('viewport width (vw)', parts[0]!, 1, MAX_VIEWPORT);
  const height = wholeNumber('viewport height (vh)', parts[1]!, 1, MAX_VIEWPORT);
  if (parts.length === 2) return { width, height };
  const [sx, sy, sw, sh] = parts.slice(2) as [string, string, string, string];
  return {
    width,
    height,
    region: {
      x: sx === '' ? 0 : wholeNumber('viewport source x (sx)', sx, 0, MAX_VIEWPORT * 4),
      y: sy === '' ? 0 : wholeNumber('viewport source y (sy)', sy, 0, MAX_VIEWPORT * 4),
      width: sw === '' ? MAX_VIEWPORT * 4 : signedWholeNumber('viewport source width (sw)', sw),
      height: sh === '' ? MAX_VIEWPORT * 4 : signedWholeNumber('viewport source height (sh)', sh),
    },
  };
}

/** `window=center,width,function` (PS3.18 8.3.5.1.4); the function defaults to LINEAR. */
export function parseWindow(text: string): WindowRequest {
  const [center = '', width = '', fn = 'LINEAR', ...rest] = text.split(',').map((s) => s.trim());
  if (rest.length > 0 || center === '' || width === '') throw new BadRequest(`window must be "center,width,function" (PS3.18 8.3.5.1.4), not "${text}"`);
  return windowOf(number('window center', center), number('window width', width), voiFunction(fn));
}

/** A window whose width makes sense for its function (PS3.3 C.11.2.1.2: at least 1 for LINEAR, above 0 otherwise). */
export function windowOf(center: number, width: number, fn: VoiFunction): WindowRequest {
  if (fn === 'LINEAR' ? width < 1 : width <= 0) throw new BadRequest(`window width must be ${fn === 'LINEAR' ? 'at least 1' : 'above 0'} for ${fn}, not ${width}`);
  return { center, width, fn };
}

function voiFunction(text: string): VoiFunction {
  const fn = text.toUpperCase();
  if (fn === 'LINEAR' || fn === 'LINEAR_EXACT' || fn === 'SIGMOID') return fn;
  throw new BadRequest(`window function must be LINEAR, LINEAR_EXACT or SIGMOID, not "${text}"`);
}

export function wholeNumber(name: string, text: string, min: number, max: number): number {
  const n = /^\d{1,16}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(n >= min && n <= max)) throw new BadRequest(`${name} must be a whole number from ${min} to ${max}, not "${text}"`);
  return n;
}

function signedWholeNumber(name: string, text: string): number {
  const n = /^-?\d{1,9}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(n !== 0 && Math.abs(n) <= MAX_VIEWPORT * 4)) {
    throw new BadRequest(`${name} must be a whole number other than 0, at most ${MAX_VIEWPORT * 4} either way (negative mirrors the image), not "${text}"`);
  }
  return n;
}

export function number(name: string, text: string): number {
  const n = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!Number.isFinite(n)) throw new BadRequest(`${name} must be a decimal number, not "${text}"`);
  return n;
}
