import { Readable } from 'node:stream';
import { Hono, type Context } from 'hono';
import { BadRequest, HttpError, NotFound } from '../errors.js';
import type { Env, Services } from '../context.js';
import { frameCountOf } from '../read/frames.js';
import { negotiate, parseAccept } from './media-type.js';
import { multipartBody, multipartBoundary, multipartContentType } from './multipart.js';
import { pathScope } from './path-uids.js';
import { dicomwebRoot } from './urls.js';
import { frameTransferSyntax } from '../dicom/transfer-syntax.js';

/** WADO-RS (PS3.18 10.4): instances, metadata, frames and bulk data of the read service, negotiated and sent. */
export function wadoRouter(services: Services) {
  const { reads, config } = services;
  const router = new Hono<Env>();

  const retrieve = async (c: Context<Env>) => {
    const found = await reads.instances(pathScope(c));
    const syntaxes = [...new Set(found.map((i) => i.transferSyntaxUid))];
    // Instances go out as stored: acceptable unless the client names syntaxes and some instance is in none of them.
    const entries = parseAccept(c.req.header('accept')).filter((e) => e.q > 0 && negotiate([e], [{ mediaType: 'multipart/related', type: 'application/dicom' }]));
    const named = entries.map((e) => e.params['transfer-syntax']);
    if (entries.length === 0 || (!named.some((ts) => ts === undefined || ts === '*') && !syntaxes.every((ts) => named.includes(ts)))) {
      throw new HttpError(406, 'not-acceptable', `instances are stored as ${syntaxes.join(', ')} and sent as stored; ask for multipart/related; type="application/dicom"; transfer-syntax=*`);
    }
    // Every object is there with its size before the 200; each is checked against its SHA-256 as it goes.
    await reads.assertPresent(found);
    const boundary = multipartBoundary();
    const parts = (async function* () {
      for (const instance of found) {
        yield { contentType: `application/dicom; transfer-syntax=${instance.transferSyntaxUid}`, body: reads.instanceStream(instance) };
      }
    })();
    return c.body(await started(multipartBody(parts, boundary)), 200, {
      'Content-Type': multipartContentType('application/dicom', boundary),
    });
  };
  router.get('/studies/:study', retrieve);
  router.get('/studies/:study/series/:series', retrieve);
  router.get('/studies/:study/series/:series/instances/:instance', retrieve);

  const metadata = async (c: Context<Env>) => {
    const accepted = negotiate(parseAccept(c.req.header('accept')), [{ mediaType: 'application/dicom+json' }, { mediaType: 'application/json' }]);
    if (!accepted) throw new HttpError(406, 'not-acceptable', 'metadata is available as application/dicom+json only');
    const document = await reads.metadata(pathScope(c), dicomwebRoot(c, config.publicUrl));
    const headers = { 'Content-Type': `${accepted.mediaType}; charset=utf-8`, ETag: document.etag, Vary: 'Accept, Accept-Encoding', 'Cache-Control': 'private, no-cache' };
    if (c.req.header('if-none-match')?.split(',').some((t) => t.trim() === document.etag)) return c.body(null, 304, headers);
    if (!/\bgzip\b/.test(c.req.header('accept-encoding') ?? '')) return c.body(await document.json(), 200, headers);
    return c.body(new Uint8Array(await document.gzipped()), 200, { ...headers, 'Content-Encoding': 'gzip' });
  };
  router.get('/studies/:study/metadata', metadata);
  router.get('/studies/:study/series/:series/metadata', metadata);
  router.get('/studies/:study/series/:series/instances/:instance/metadata', metadata);

  router.get('/studies/:study/series/:series/instances/:instance/frames/:frames', async (c) => {
    const instance = await reads.instance(pathScope(c));
    // Checked before streaming starts: once parts flow, an error can no longer become a status.
    const frameCount = frameCountOf(instance);
    if (frameCount === 0) throw new NotFound('this instance has no pixel data, so it has no frames');
    const numbers = parseFrameList(c.req.param('frames'), frameCount);
    const syntax = frameTransferSyntax(instance.transferSyntaxUid);
    const accepted = negotiate(parseAccept(c.req.header('accept')), [
      { mediaType: 'multipart/related', type: 'application/octet-stream', transferSyntax: syntax },
      ...(syntax === instance.transferSyntaxUid && instance.transferSyntaxUid !== '1.2.840.10008.1.2.1'
        ? [{ mediaType: 'multipart/related', type: mediaTypeOfSyntax(syntax) ?? 'application/octet-stream', transferSyntax: syntax }]
        : []),
    ]);
    if (!accepted) {
      throw new HttpError(406, 'not-acceptable', `frames are available as multipart/related; type="application/octet-stream"; transfer-syntax=${syntax} (or transfer-syntax=*)`);
    }
    const boundary = multipartBoundary();
    const frames = reads.frames(instance, numbers);
    const partType = `${accepted.type ?? 'application/octet-stream'}; transfer-syntax=${syntax}`;
    const parts = (async function* () {
      for await (const frame of frames) yield { contentType: partType, body: frame.chunks };
    })();
    return c.body(await started(multipartBody(parts, boundary)), 200, {
      'Content-Type': multipartContentType(accepted.type ?? 'application/octet-stream', boundary),
    });
  });

  router.get('/studies/:study/series/:series/instances/:instance/bulkdata/*', async (c) => {
    const instance = await reads.instance(pathScope(c));
    const marker = '/bulkdata/';
    const path = decodeURIComponent(c.req.path.slice(c.req.path.indexOf(marker) + marker.length));
    const accept = parseAccept(c.req.header('accept'));
    const accepted = negotiate(accept, [{ mediaType: 'multipart/related', type: 'application/octet-stream' }, { mediaType: 'application/octet-stream' }]);
    if (!accepted) throw new HttpError(406, 'not-acceptable', 'bulk data is available as multipart/related; type="application/octet-stream" or application/octet-stream');
    const bytes = await reads.bulkDataStream(instance, path);
    if (accepted.mediaType === 'multipart/related') {
      const boundary = multipartBoundary();
      const parts = (async function* () {
        yield { contentType: 'application/octet-stream', body: bytes };
      })();
      return c.body(streamOf(multipartBody(parts, boundary)), 200, {
        'Content-Type': multipartContentType('application/octet-stream', boundary),
      });
    }
    return c.body(streamOf(bytes), 200, { 'Content-Type': 'application/octet-stream' });
  });

  return router;
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

function streamOf(chunks: AsyncIterable<Uint8Array>): ReadableStream {
  return Readable.toWeb(Readable.from(chunks)) as ReadableStream;
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
