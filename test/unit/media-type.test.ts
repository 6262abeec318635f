import { describe, expect, it } from 'vitest';
import { negotiate, parseAccept, parseMediaType, type Offer } from '../../src/dicomweb/media-type.js';

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const OHIF_FRAMES = 'multipart/related; type=application/octet-stream; transfer-syntax=*';

const json: Offer[] = [{ mediaType: 'application/dicom+json' }, { mediaType: 'application/json' }];
const frames: Offer[] = [{ mediaType: 'multipart/related', type: 'application/octet-stream', transferSyntax: EXPLICIT_LE }];
const jpegFrames: Offer[] = [
  { mediaType: 'multipart/related', type: 'application/octet-stream', transferSyntax: JPEG_BASELINE },
  { mediaType: 'multipart/related', type: 'image/jpeg', transferSyntax: JPEG_BASELINE },
];
const instances: Offer[] = [{ mediaType: 'multipart/related', type: 'application/dicom', transferSyntax: JPEG_BASELINE }];

const pick = (accept: string | undefined, offers: Offer[]) => negotiate(parseAccept(accept), offers);

describe('parseMediaType', () => {
  it('reads quoted and bare parameters in any case, order and spacing', () => {
    expect(parseMediaType(' Multipart/Related ;TYPE = "application/dicom" ;  boundary=abc ')).toEqual({
      mediaType: 'multipart/related',
      type: 'multipart',
      subtype: 'related',
      params: { type: 'application/dicom', boundary: 'abc' },
    });
  });

  it('keeps semicolons, commas and escaped quotes inside quoted values', () => {
    expect(parseMediaType('a/b; x="1;2,3"; y="say \\"hi\\""; z=4')?.params).toEqual({ x: '1;2,3', y: 'say "hi"', z: '4' });
  });

  it('skips parameters without a name or value and keeps the first of a repeated name', () => {
    expect(parseMediaType('a/b; ; novalue; =x; type=one; TYPE=two')?.params).toEqual({ type: 'one' });
  });

  it('refuses what is not type/subtype', () => {
    for (const bad of ['', 'json', 'application/', '/json', '*/json', 'a/b/c', 'app lication/json']) expect(parseMediaType(bad)).toBeUndefined();
  });
});

describe('parseAccept', () => {
  it('treats a missing or empty header as */*', () => {
    for (const header of [undefined, '', '  ']) expect(parseAccept(header)).toEqual([{ type: '*', subtype: '*', params: {}, q: 1 }]);
  });

  it('reads the frames header OHIF sends, bare or quoted', () => {
    const expected = [{ type: 'multipart', subtype: 'related', params: { type: 'application/octet-stream', 'transfer-syntax': '*' }, q: 1 }];
    expect(parseAccept(OHIF_FRAMES)).toEqual(expected);
    expect(parseAccept('multipart/related;type="application/octet-stream";transfer-syntax="*"')).toEqual(expected);
  });

  it('sorts by q-value, then by specificity, then as sent', () => {
    const order = parseAccept('*/*;q=0.1, application/*, text/plain;q=0.5, application/dicom+json, application/json').map((e) => `${e.type}/${e.subtype}`);
    expect(order).toEqual(['application/dicom+json', 'application/json', 'application/*', 'text/plain', '*/*']);
  });

  it('ranks a named transfer syntax above transfer-syntax=*', () => {
    const entries = parseAccept(`${OHIF_FRAMES}, multipart/related; type=application/octet-stream; transfer-syntax=${EXPLICIT_LE}`);
    expect(entries.map((e) => e.params['transfer-syntax'])).toEqual([EXPLICIT_LE, '*']);
  });

  it('skips malformed pieces instead of throwing', () => {
    const entries = parseAccept('garbage, /json, */json, application/json;q=high, , text/html;q=0.3, application/dicom+json');
    expect(entries.map((e) => `${e.type}/${e.subtype};q=${e.q}`)).toEqual(['application/dicom+json;q=1', 'text/html;q=0.3']);
  });

  it('splits on commas only outside quotes and clamps q into 0..1', () => {
    const entries = parseAccept('a/b; x="1,2"; q=7, c/d; q=-1');
    expect(entries).toEqual([
      { type: 'a', subtype: 'b', params: { x: '1,2' }, q: 1 },
      { type: 'c', subtype: 'd', params: {}, q: 0 },
    ]);
  });

  it('reads the x- names dicomweb-client sends as the media types PS3.18 names', () => {
    expect(parseAccept('multipart/related; type="image/x-dicom-rle"; transfer-syntax=1.2.840.10008.1.2.5, image/X-JLS')).toEqual([
      { type: 'multipart', subtype: 'related', params: { type: 'image/dicom-rle', 'transfer-syntax': '1.2.840.10008.1.2.5' }, q: 1 },
      { type: 'image', subtype: 'jls', params: {}, q: 1 },
    ]);
  });

  it("reads Java's bare * and short q-values", () => {
    expect(parseAccept('text/html, *; q=.2')).toEqual([
      { type: 'text', subtype: 'html', params: {}, q: 1 },
      { type: '*', subtype: '*', params: {}, q: 0.2 },
    ]);
  });
});

describe('negotiate', () => {
  it('answers QIDO and metadata requests in the JSON form asked for', () => {
    expect(pick('application/json', json)?.mediaType).toBe('application/json');
    expect(pick('application/dicom+json', json)?.mediaType).toBe('application/dicom+json');
    expect(pick('Application/DICOM+JSON; charset=utf-8', json)?.mediaType).toBe('application/dicom+json');
    expect(pick(undefined, json)?.mediaType).toBe('application/dicom+json');
    expect(pick('*/*', json)?.mediaType).toBe('application/dicom+json');
    expect(pick('application/*', json)?.mediaType).toBe('application/dicom+json');
    expect(pick('text/html', json)).toBeUndefined();
  });

  it('prefers the higher q-value, then the offer named more specifically, then the route order', () => {
    expect(pick('application/dicom+json;q=0.5, application/json', json)?.mediaType).toBe('application/json');
    expect(pick('*/*, application/json', json)?.mediaType).toBe('application/json');
    expect(pick('application/json;q=0.9, application/dicom+json;q=0.9', json)?.mediaType).toBe('application/dicom+json');
  });

  it('lets q=0 exclude an offer even when a wildcard would allow it', () => {
    expect(pick(`${OHIF_FRAMES}; q=0, */*`, frames)).toBeUndefined();
    expect(pick('application/dicom+json;q=0, */*', json)?.mediaType).toBe('application/json');
    expect(pick('*/*;q=0, application/json', json)?.mediaType).toBe('application/json');
    expect(pick('*/*;q=0', json)).toBeUndefined();
  });

  it('sends frames as stored for OHIF: transfer-syntax=*, absent, or the stored one', () => {
    for (const accept of [
      OHIF_FRAMES,
      'multipart/related; type="application/octet-stream"; transfer-syntax=*',
      'multipart/related; type="application/octet-stream"',
      `multipart/related; type=application/octet-stream; transfer-syntax=${EXPLICIT_LE}`,
      'multipart/related',
      'multipart/*',
      '*/*',
      undefined,
    ]) {
      expect(pick(accept, frames), String(accept)).toBe(frames[0]);
    }
  });

  it('matches the type parameter of multipart/related, wildcards included', () => {
    expect(pick('multipart/related; type=application/dicom', frames)).toBeUndefined();
    expect(pick('multipart/related; type="*/*"', frames)).toBe(frames[0]);
    expect(pick('multipart/related; type="image/*"', jpegFrames)).toBe(jpegFrames[1]);
    expect(pick('multipart/related; type="image/jpeg"', jpegFrames)).toBe(jpegFrames[1]);
    expect(pick(OHIF_FRAMES, jpegFrames)).toBe(jpegFrames[0]);
  });

  it('fails a named syntax we cannot produce only when no other entry matches', () => {
    const onlyUncompressed = `multipart/related; type="application/octet-stream"; transfer-syntax=${EXPLICIT_LE}`;
    expect(pick(onlyUncompressed, jpegFrames)).toBeUndefined();
    expect(pick(`${onlyUncompressed}, multipart/related; type="image/jpeg"; q=0.5`, jpegFrames)).toBe(jpegFrames[1]);
    expect(pick(`${onlyUncompressed}, ${OHIF_FRAMES}; q=0.1`, jpegFrames)).toBe(jpegFrames[0]);
    // A q=0 on a syntax we do not produce excludes nothing we offer.
    expect(pick(`${onlyUncompressed}; q=0, ${OHIF_FRAMES}`, jpegFrames)).toBe(jpegFrames[0]);
  });

  it('retrieves instances as stored for transfer-syntax=* or none, and not as another part type', () => {
    expect(pick('multipart/related; type="application/dicom"; transfer-syntax=*', instances)).toBe(instances[0]);
    expect(pick('multipart/related; type=application/dicom', instances)).toBe(instances[0]);
    expect(pick(`multipart/related; type=application/dicom; transfer-syntax=${JPEG_BASELINE}`, instances)).toBe(instances[0]);
    expect(pick(`multipart/related; type=application/dicom; transfer-syntax=${EXPLICIT_LE}`, instances)).toBeUndefined();
    expect(pick('multipart/related; type=application/octet-stream', instances)).toBeUndefined();
  });

  it('answers nothing when nothing is offered', () => {
    expect(pick('*/*', [])).toBeUndefined();
  });
});
