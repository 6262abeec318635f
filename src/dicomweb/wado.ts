import { setImmediate } from 'node:timers/promises';
import { Hono, type Context } from 'hono';
import { downloadOf } from '../read/download.js';
import type { ReadService } from '../read/read-service.js';
import { zipStream, type ZipEntry } from '../read/zip.js';
import { BadRequest, HttpError, NotFound } from '../errors.js';
import type { Env, Services } from '../context.js';
import { negotiate, parseAccept } from './media-type.js';
import { multipartBody, multipartBoundary, multipartContentType } from './multipart.js';
import { pathScope } from './path-uids.js';
import { dicomwebRoot } from './urls.js';
import { frameTransferSyntax, isEncapsulated, TransferSyntax } from '../dicom/transfer-syntax.js';
import { bulkDataPath, bulkDataUris, isPixelDataPath, type RangeOf } from '../read/bulk-data.js';
import { allFrames, frameCountOf } from '../read/frames.js';
import type { DicomJson } from '../dicom/json.js';
import { toNativeDicomXml } from '../dicom/xml.js';
import type { StoredInstance } from '../catalog/catalog.js';


/** WADO-RS (PS3.18 10.4): instances, metadata, frames and bulk data of the read service, negotiated and sent. */
export function wadoRouter(services: Services) {
  const { reads, transcoder, config, catalog } = services;
  const router = new Hono<Env>();

  const retrieve = async (c: Context<Env>) => {
    const found = await reads.instances(pathScope(c));
    const accept = c.req.header('accept');
    const asked = instancesAsked(accept, found);
    if (asked.zip) return zipResponse(c, reads, await downloadOf(catalog, reads, pathScope(c)));
    // How each instance's compressed frames go, decided before the 200: one that cannot go as asked is a 406.
    const frames = asked.bulkData ? await Promise.all(found.map((i) => framesAsked(accept, i.transferSyntaxUid, () => transcoder.decodesFrames(i)))) : [];
    // Every object is there with its size before the 200; each is checked against its SHA-256 as it goes.
    await reads.assertPresent(found);
    const boundary = multipartBoundary();
    if (asked.bulkData) {
      const root = dicomwebRoot(c, config.publicUrl);
      const parts = (async function* () {
        for (const [i, instance] of found.entries()) yield* bulkDataParts(instance, frames[i]!, root);
      })();
      return c.body(await started(multipartBody(parts, boundary)), 200, { 'Content-Type': multipartContentType('application/octet-stream', boundary) });
    }
    const parts = (async function* () {
      if (asked.asStored) {
        const files = found.map((instance) => ({ size: instance.size, transferSyntaxUid: instance.transferSyntaxUid, body: () => reads.instanceStream(instance) }));
        for await (const file of reads.ahead(files)) yield { contentType: `application/dicom; transfer-syntax=${file.transferSyntaxUid}`, body: file.body() };
        return;
      }
      for (const instance of found) {
        const sent = await transcoder.instance(instance);
        yield { contentType: `application/dicom; transfer-syntax=${sent.transferSyntaxUid}`, body: sent.body };
      }
    })();
    return c.body(await started(multipartBody(parts, boundary)), 200, {
      'Content-Type': multipartContentType('application/dicom', boundary),
    });
  };

  /**
   * The bulk data of an instance, one part per value (PS3.18 8.7.3.1 bulkdata of a study, series or instance), each
   * named by its BulkDataURI in Content-Location. Compressed pixel data goes as its frames, as the frames resource
   * sends them; other values as stored.
   */
  async function* bulkDataParts(instance: StoredInstance, frames: FramesAsked, root: string) {
    for (const uri of bulkDataUris(JSON.parse(instance.json) as DicomJson)) {
      const path = bulkDataPath(uri);
      if (isPixelDataPath(path) && isEncapsulated(instance.transferSyntaxUid)) {
        // Each frame is named by its own frames resource.
        const numbers = allFrames(instance);
        const pixels = frames.decode ? transcoder.frames(instance, numbers) : reads.frames(instance, numbers);
        let n = 0;
        for await (const frame of pixels) {
          const location = `${root}/studies/${instance.studyUid}/series/${instance.seriesUid}/instances/${instance.sopUid}/frames/${numbers[n++]}`;
          yield { contentType: `${frames.partType}; transfer-syntax=${frames.syntax}`, headers: { 'Content-Location': location }, body: frame.chunks };
        }
      } else {
        yield { contentType: 'application/octet-stream', headers: { 'Content-Location': `${root}/${uri}` }, body: (await reads.bulkDataStream(instance, path)).chunks };
      }
    }
  }
  router.get('/studies/:study', retrieve);
  router.get('/studies/:study/series/:series', retrieve);
  router.get('/studies/:study/series/:series/instances/:instance', retrieve);

  const metadata = async (c: Context<Env>) => {
    const accepted = negotiate(parseAccept(c.req.header('accept')), [
      { mediaType: 'application/dicom+json' },
      { mediaType: 'application/json' },
      { mediaType: 'multipart/related', type: 'application/dicom+xml' },
    ]);
    if (!accepted) throw new HttpError(406, 'not-acceptable', 'metadata is available as application/dicom+json, or as multipart/related; type="application/dicom+xml" (one Native DICOM Model document per instance)');
    const document = await reads.metadata(pathScope(c), dicomwebRoot(c, config.publicUrl));
    const type = accepted.type ?? accepted.mediaType;
    // Each representation has an ETag of its own (RFC 9110 8.8.3).
    const etag = accepted.type ? document.etag.replace(/"$/, '-xml"') : document.etag;
    const headers = { ETag: etag, Vary: 'Accept, Accept-Encoding', 'Cache-Control': 'private, no-cache' };
    if (c.req.header('if-none-match')?.split(',').some((t) => t.trim() === etag)) return c.body(null, 304, headers);
    if (accepted.type) {
      // PS3.18 10.4.1: XML metadata is one part per instance, each a whole Native DICOM Model document (PS3.19 A.1).
      const instances = await document.instances();
      const boundary = multipartBoundary();
      const parts = (async function* () {
        for (const text of instances) {
          yield { contentType: `${type}; charset=utf-8`, body: Buffer.from(toNativeDicomXml(JSON.parse(text) as DicomJson)) };
          // A study of thousands of instances is written between other requests, not in one stall.
          await setImmediate();
        }
      })();
      return c.body(streamOf(multipartBody(parts, boundary)), 200, { ...headers, 'Content-Type': multipartContentType(type, boundary) });
    }
    const jsonHeaders = { ...headers, 'Content-Type': `${type}; charset=utf-8` };
    if (!/\bgzip\b/.test(c.req.header('accept-encoding') ?? '')) return c.body(await document.json(), 200, jsonHeaders);
    return c.body(new Uint8Array(await document.gzipped()), 200, { ...jsonHeaders, 'Content-Encoding': 'gzip' });
  };
  router.get('/studies/:study/metadata', metadata);
  router.get('/studies/:study/series/:series/metadata', metadata);
  router.get('/studies/:study/series/:series/instances/:instance/metadata', metadata);

  /** Frames as multipart/related, one part each, in the form the Accept header picks (framesAsked). */
  const sendFrames = async (c: Context<Env>, instance: StoredInstance, numbers: number[]) => {
    const asked = await framesAsked(c.req.header('accept'), instance.transferSyntaxUid, () => transcoder.decodesFrames(instance));
    const boundary = multipartBoundary();
    const frames = asked.decode ? transcoder.frames(instance, numbers) : reads.frames(instance, numbers);
    const partType = `${asked.partType}; transfer-syntax=${asked.syntax}`;
    const parts = (async function* () {
      for await (const frame of frames) yield { contentType: partType, body: frame.chunks };
    })();
    return c.body(await started(multipartBody(parts, boundary)), 200, {
      'Content-Type': multipartContentType(asked.partType, boundary),
    });
  };

  router.get('/studies/:study/series/:series/instances/:instance/frames/:frames', async (c) => {
    const instance = await reads.instance(pathScope(c));
    // Checked before streaming starts: once parts flow, an error can no longer become a status.
    const frameCount = frameCountOf(instance);
    if (frameCount === 0) throw new NotFound('this instance has no pixel data, so it has no frames');
    return sendFrames(c, instance, parseFrameList(c.req.param('frames'), frameCount));
  });

  router.get('/studies/:study/series/:series/instances/:instance/bulkdata/*', async (c) => {
    const instance = await reads.instance(pathScope(c));
    const marker = '/bulkdata/';
    const path = decodeURIComponent(c.req.path.slice(c.req.path.indexOf(marker) + marker.length));
    const frameCount = frameCountOf(instance);
    // Compressed pixel data is a series of codestreams: each frame goes as a part of its own, labelled with its
    // syntax, or decoded, exactly as the frames resource sends them.
    if (isPixelDataPath(path) && isEncapsulated(instance.transferSyntaxUid) && frameCount > 0) {
      return sendFrames(c, instance, allFrames(instance));
    }
    const accepted = negotiate(parseAccept(c.req.header('accept')), [{ mediaType: 'multipart/related', type: 'application/octet-stream' }, { mediaType: 'application/octet-stream' }]);
    if (!accepted) throw new HttpError(406, 'not-acceptable', 'bulk data is available as multipart/related; type="application/octet-stream" or application/octet-stream');
    // Named by the instance's bytes: a client resuming with If-Range gets the whole value if they changed.
    const etag = `"${instance.sha256.slice(0, 32)}-${path.replace(/[^0-9A-Za-z]/g, '.')}"`;
    const ifRange = c.req.header('if-range');
    const value = await reads.bulkDataStream(instance, path, ifRange === undefined || ifRange === etag ? byteRange(c.req.header('range')) : undefined);
    const status = value.range ? 206 : 200;
    const contentRange: Record<string, string> = value.range ? { 'Content-Range': `bytes ${value.range.start}-${value.range.end - 1}/${value.length}` } : {};
    const headers = { ETag: etag, 'Accept-Ranges': 'bytes' };
    if (accepted.mediaType === 'multipart/related') {
      // As dicomweb-client asks (OHIF's): the range of the value in the one part, which says so in its Content-Range.
      const boundary = multipartBoundary();
      const parts = (async function* () {
        yield { contentType: 'application/octet-stream', headers: contentRange, body: value.chunks };
      })();
      return c.body(streamOf(multipartBody(parts, boundary)), status, { ...headers, 'Content-Type': multipartContentType('application/octet-stream', boundary) });
    }
    return c.body(streamOf(value.chunks), status, { ...headers, 'Content-Type': 'application/octet-stream', 'Content-Length': String(value.range ? value.range.end - value.range.start : value.length), ...contentRange });
  });

  return router;
}

/**
 * How instances are asked for (PS3.18 8.7.3.4): as stored (`transfer-syntax=*`, or the very syntax every one of them
 * is stored in), as Explicit VR Little Endian (named, or no syntax named: the standard's default), or as their bulk
 * data (multipart/related; type="application/octet-stream", each instance's compressed frames as framesAsked says).
 * Entries are taken in the client's order of preference; HttpError 406 when none can be served.
 */
function instancesAsked(accept: string | undefined, instances: StoredInstance[]): { asStored: boolean; bulkData?: boolean; zip?: boolean } {
  const stored = new Set(instances.map((i) => i.transferSyntaxUid));
  for (const entry of parseAccept(accept)) {
    if (entry.q <= 0) continue;
    // The files as stored, in a ZIP (PS3.18 8.7.3.2), named for people and CD tools (read/download.ts): when named,
    // never for a wildcard, which keeps meaning the standard's default, multipart/related.
    if (entry.type === 'application' && entry.subtype === 'zip') return { asStored: true, zip: true };
    if (negotiate([entry], [{ mediaType: 'multipart/related', type: 'application/dicom' }])) {
      const syntax = entry.params['transfer-syntax']?.trim();
      if (syntax === '*') return { asStored: true };
      if (syntax === undefined || syntax === TransferSyntax.ExplicitVRLittleEndian) return { asStored: stored.size === 1 && stored.has(TransferSyntax.ExplicitVRLittleEndian) };
      if (stored.size === 1 && stored.has(syntax)) return { asStored: true };
    } else if (entry.params.type?.trim().toLowerCase() === 'application/octet-stream' && negotiate([entry], [{ mediaType: 'multipart/related', type: 'application/octet-stream' }])) {
      return { asStored: false, bulkData: true };
    }
  }
  throw new HttpError(
    406,
    'not-acceptable',
    `instances are sent as stored (${[...stored].join(', ')}) or as Explicit VR Little Endian; ask for multipart/related; type="application/dicom" with transfer-syntax=* or transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}, or for their bulk data as multipart/related; type="application/octet-stream", or the files in a ZIP as application/zip`,
  );
}

/** How frames go out: the part's media type, its transfer syntax, and whether they are decoded to get there. */
type FramesAsked = { partType: string; syntax: string; decode: boolean };

/**
 * How frames are asked for (PS3.18 8.7.3.5): `transfer-syntax=*` or the stored syntax (and its image media type) as
 * stored; Explicit VR Little Endian when named, or when application/octet-stream names no syntax (the standard's
 * default), decoded if they are compressed. An image media type without a syntax takes the stored one when it is of
 * that type (stricter readers of Table 8.7.3-5 would want its default syntax). Entries are taken in the client's order
 * of preference; HttpError 406 when none can be served.
 */
async function framesAsked(accept: string | undefined, stored: string, decodable: () => Promise<boolean>): Promise<FramesAsked> {
  const storedSyntax = frameTransferSyntax(stored);
  const compressed = storedSyntax !== TransferSyntax.ExplicitVRLittleEndian;
  const imageType = compressed ? (mediaTypeOfSyntax(storedSyntax) ?? 'application/octet-stream') : undefined;
  const asStored = (partType: string): FramesAsked => ({ partType, syntax: storedSyntax, decode: false });
  // Whether compressed frames decode as their metadata describes them is asked only of a request they could answer:
  // transfer-syntax=*, what OHIF sends, costs no look at the pixel module.
  let explicitOffer: Promise<FramesAsked | undefined> | undefined;
  const explicitFrames = () =>
    (explicitOffer ??= (async () => (!compressed || (await decodable()) ? { partType: 'application/octet-stream', syntax: TransferSyntax.ExplicitVRLittleEndian, decode: compressed } : undefined))());
  for (const entry of parseAccept(accept)) {
    if (entry.q <= 0) continue;
    const syntax = entry.params['transfer-syntax']?.trim();
    const octets = negotiate([entry], [{ mediaType: 'multipart/related', type: 'application/octet-stream' }]) !== undefined;
    const image = imageType !== undefined && negotiate([entry], [{ mediaType: 'multipart/related', type: imageType }]) !== undefined;
    // A range like */* or multipart/related without a type names no part type: octets, the default, are sent.
    const partType = octets ? 'application/octet-stream' : image ? imageType! : undefined;
    if (!partType) continue;
    if (syntax === '*' || syntax === storedSyntax) return asStored(partType);
    // No syntax named: as stored when an image type is asked, or when the frames cannot be had natively as the
    // metadata describes them (no decoder, or another colour model): labelled with what they are.
    if (syntax === undefined && partType !== 'application/octet-stream') return asStored(partType);
    // Explicit VR Little Endian frames are octets: an image media type cannot carry them.
    if ((syntax === undefined || syntax === TransferSyntax.ExplicitVRLittleEndian) && partType === 'application/octet-stream') {
      const explicit = await explicitFrames();
      if (explicit) return explicit;
      if (syntax === undefined) return asStored(partType);
    }
  }
  const explicit = await explicitFrames();
  const offers = [`type="application/octet-stream"; transfer-syntax=${storedSyntax}`, ...(compressed && imageType ? [`type="${imageType}"; transfer-syntax=${storedSyntax}`] : [])];
  if (compressed && explicit) offers.push(`type="application/octet-stream"; transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}`);
  throw new HttpError(406, 'not-acceptable', `frames are available as multipart/related; ${offers.join(', or ')} (or transfer-syntax=*)`);
}

/**
 * A single byte range of an HTTP Range header (RFC 9110 14.2), resolved against the value's length once it is known:
 * undefined (send all) without one, for other units or several ranges (which a server may ignore); HttpError 416
 * when it starts past the end.
 */
export function byteRange(header: string | undefined): RangeOf {
  const match = header?.trim().match(/^bytes\s*=\s*(\d*)\s*-\s*(\d*)$/i);
  return (length) => {
    if (!match || (match[1] === '' && match[2] === '')) return undefined;
    const [first, last] = [match[1] === '' ? undefined : Number(match[1]), match[2] === '' ? undefined : Number(match[2])];
    // A last byte before the first makes the header invalid, which is ignored (RFC 9110 14.1.1).
    if (first !== undefined && last !== undefined && last < first) return undefined;
    // bytes=-N is the last N bytes.
    const start = first ?? Math.max(length - last!, 0);
    const end = first === undefined || last === undefined ? length : Math.min(last + 1, length);
    if (start >= length || end <= start) {
      throw new HttpError(416, 'range-not-satisfiable', `the bulk data holds ${length} bytes; the range "${header}" asks for none of them`, { 'Content-Range': `bytes */${length}` });
    }
    return { start, end };
  };
}

/** A frame list of the URL, each frame checked against the instance's count. */
export function parseFrameList(text: string, count: number): number[] {
  const numbers = text.split(',').map((s) => s.trim());
  return numbers.map((s) => {
    if (!/^\d+$/.test(s)) throw new BadRequest(`frame list must be numbers separated by commas, not "${text}"`);
    const n = Number(s);
    if (n < 1 || n > count) throw new NotFound(`frame ${n} does not exist: the instance has ${count} frame(s)`);
    return n;
  });
}

/** PS3.18 Table 8.7.3-2: image media types of compressed transfer syntaxes. */
function mediaTypeOfSyntax(ts: string): string | undefined {
  if (/^1\.2\.840\.10008\.1\.2\.4\.(50|51|57|70)$/.test(ts)) return 'image/jpeg';
  if (/^1\.2\.840\.10008\.1\.2\.4\.8[01]$/.test(ts)) return 'image/jls';
  if (/^1\.2\.840\.10008\.1\.2\.4\.9[0-3]$/.test(ts)) return 'image/jp2';
  if (/^1\.2\.840\.10008\.1\.2\.4\.20[123]$/.test(ts)) return 'image/jphc';
  if (ts === '1.2.840.10008.1.2.5') return 'image/dicom-rle';
  return undefined;
}

/**
 * A response body of these chunks, each taken only when the connection has taken the one before: a client that reads
 * slowly holds one chunk of the server's memory, not a queue of them (Readable.from buffered 16, whole files each, and
 * sixty such downloads of a study held 2 GB).
 */
export function streamOf(chunks: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const iterator = chunks[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = await iterator.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      },
      async cancel(reason) {
        await iterator.return?.(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * A body whose first part is already open (its object found, its first frame read) before the status goes out:
 * a missing object or a store that is away is then a 404 or 503, not a 200 cut short.
 */
async function started(chunks: AsyncGenerator<Uint8Array>): Promise<ReadableStream> {
  const first = await chunks.next();
  return streamOf(
    (async function* () {
      if (first.done) return;
      yield first.value;
      yield* chunks;
    })(),
  );
}

/** A download as a ZIP, streamed as it is read: its bytes are counted and checked by read/zip.ts as they go. */
export function zipResponse(c: Context<Env>, reads: ReadService, download: { fileName: string; entries: ZipEntry[] }): Response {
  const ascii = download.fileName.replace(/[^\x20-\x7e]|["\\]/g, '_');
  const body = streamOf(zipStream(reads.ahead(download.entries)));
  return c.body(body, 200, {
    'Content-Type': 'application/zip',
    'Content-Disposition': `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(download.fileName)}`,
  });
}
