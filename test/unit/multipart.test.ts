import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { negotiate, parseAccept } from '../../src/dicomweb/media-type.js';
import { MultipartError, multipartBody, parseMultipartRelated, readMultipart } from '../../src/dicomweb/multipart.js';

async function* chunked(data: Buffer, size: number) {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}
async function collect(it: AsyncIterable<Uint8Array>) {
  const out: Buffer[] = [];
  for await (const c of it) out.push(Buffer.from(c));
  return Buffer.concat(out);
}
const LIMITS = { maxPartBytes: 1 << 30, maxTotalBytes: 1 << 30 };

describe('multipart/related', () => {
  it('parses quoted and unquoted parameters in any order', () => {
    expect(parseMultipartRelated('multipart/related; type="application/dicom"; boundary=abc')).toEqual({ boundary: 'abc', type: 'application/dicom' });
    expect(parseMultipartRelated('Multipart/Related;boundary="a b;c";TYPE=application/dicom')).toEqual({ boundary: 'a b;c', type: 'application/dicom' });
    expect(() => parseMultipartRelated('application/dicom')).toThrow(MultipartError);
    expect(() => parseMultipartRelated('multipart/related; type=application/dicom')).toThrow(/boundary/);
  });

  for (const size of [1, 7, 65536]) {
    it(`round-trips binary parts that contain boundary look-alikes, in ${size}-byte chunks`, async () => {
      const boundary = 'XyZ-boundary';
      const parts = [randomBytes(3000), Buffer.from(`\r\n--XyZ-bound\r\n--XyZ-boundar`), Buffer.alloc(0), randomBytes(200_000)];
      const body = await collect(multipartBody((async function* () { for (const p of parts) yield { contentType: 'application/dicom', body: p }; })(), boundary));
      const got: Buffer[] = [];
      for await (const part of readMultipart(chunked(body, size), boundary, LIMITS)) {
        expect(part.contentType).toBe('application/dicom');
        got.push(await collect(part.body));
      }
      expect(got).toEqual(parts);
    });
  }

  it('skips the rest of a part its consumer leaves unread', async () => {
    const body = Buffer.from('--b\r\nContent-Type: a/b\r\n\r\nfirst part body\r\n--b\r\n\r\nsecond\r\n--b--\r\n');
    const seen: string[] = [];
    for await (const part of readMultipart(chunked(body, 3), 'b', LIMITS)) {
      if (seen.length === 0) seen.push('skipped');
      else seen.push((await collect(part.body)).toString());
    }
    expect(seen).toEqual(['skipped', 'second']);
  });

  it('counts bytes itself: a body past the limit fails as too-large', async () => {
    const body = Buffer.concat([Buffer.from('--b\r\n\r\n'), Buffer.alloc(10_000), Buffer.from('\r\n--b--')]);
    const run = async () => {
      for await (const part of readMultipart(chunked(body, 100), 'b', { maxPartBytes: 1 << 20, maxTotalBytes: 5000 })) await collect(part.body);
    };
    await expect(run()).rejects.toMatchObject({ code: 'too-large' });
  });

  it('refuses a body that ends inside a part', async () => {
    const run = async () => {
      for await (const part of readMultipart(chunked(Buffer.from('--b\r\n\r\nunfinished'), 4), 'b', LIMITS)) await collect(part.body);
    };
    await expect(run()).rejects.toMatchObject({ code: 'malformed' });
  });
});

describe('Accept negotiation', () => {
  const frames = [{ mediaType: 'multipart/related', type: 'application/octet-stream', transferSyntax: '1.2.840.10008.1.2.1' }];
  it('accepts transfer-syntax=* and bare or quoted type parameters', () => {
    expect(negotiate(parseAccept('multipart/related; type=application/octet-stream; transfer-syntax=*'), frames)).toBeDefined();
    expect(negotiate(parseAccept('multipart/related; type="application/octet-stream"'), frames)).toBeDefined();
    expect(negotiate(parseAccept('*/*'), frames)).toBeDefined();
    expect(negotiate(parseAccept(undefined), frames)).toBeDefined();
  });
  it('refuses other syntaxes, other types and q=0', () => {
    expect(negotiate(parseAccept('multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.50'), frames)).toBeUndefined();
    expect(negotiate(parseAccept('image/jpeg'), frames)).toBeUndefined();
    expect(negotiate(parseAccept('multipart/related; type=application/octet-stream; q=0, */*'), frames)).toBeUndefined();
  });
  it('prefers by q-value', () => {
    const offers = [{ mediaType: 'application/dicom+json' }, { mediaType: 'application/json' }];
    expect(negotiate(parseAccept('application/dicom+json;q=0.5, application/json'), offers)?.mediaType).toBe('application/json');
  });
});
