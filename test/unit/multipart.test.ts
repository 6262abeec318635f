import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  MultipartError,
  multipartBody,
  multipartBoundary,
  multipartContentType,
  parseMultipartRelated,
  readMultipart,
  type MultipartPart,
  type MultipartLimits,
} from '../../src/dicomweb/multipart.js';

const LIMITS: MultipartLimits = { maxPartBytes: 1 << 30, maxTotalBytes: 1 << 30 };
const BOUNDARY = 'XyZ-boundary';

/** Seeded bytes, so a failure can be reproduced. */
function noise(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function* chunked(data: Buffer, size: number): AsyncGenerator<Uint8Array> {
  // Plain Uint8Arrays, as a web ReadableStream would hand them over.
  for (let i = 0; i < data.length; i += size) yield new Uint8Array(data.buffer, data.byteOffset + i, Math.min(size, data.length - i));
}

async function* randomlyChunked(data: Buffer, seed: number): AsyncGenerator<Uint8Array> {
  const sizes = noise(data.length, seed);
  for (let i = 0, k = 0; i < data.length; k++) {
    const size = 1 + (sizes[k]! % 97);
    yield data.subarray(i, i + size);
    i += size;
  }
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

async function* asParts(parts: Buffer[], contentType = 'application/dicom') {
  for (const body of parts) yield { contentType, body };
}

/** Reads every part in full; a part body's error is recorded in place of its bytes. */
async function readAll(body: AsyncIterable<Uint8Array>, boundary = 'b', limits = LIMITS) {
  const parts: { headers: Record<string, string>; body?: string; error?: string }[] = [];
  for await (const part of readMultipart(body, boundary, limits)) {
    try {
      parts.push({ headers: part.headers, body: (await collect(part.body)).toString('latin1') });
    } catch (e) {
      if (!(e instanceof MultipartError) || e.code !== 'part-too-large') throw e;
      parts.push({ headers: part.headers, error: e.code });
    }
  }
  return parts;
}

const text = (s: string, size = 3) => chunked(Buffer.from(s, 'latin1'), size);

describe('parseMultipartRelated', () => {
  it('reads quoted and bare parameters in any order, case and spacing', () => {
    expect(parseMultipartRelated('multipart/related; type="application/dicom"; boundary=abc')).toEqual({ boundary: 'abc', type: 'application/dicom' });
    expect(parseMultipartRelated('Multipart/Related;BOUNDARY="a b:c";TYPE=Application/DICOM')).toEqual({ boundary: 'a b:c', type: 'application/dicom' });
    expect(parseMultipartRelated('  multipart/related ;  boundary = "abc" ; start="<1@x>"')).toEqual({ boundary: 'abc' });
  });

  it('refuses other media types with a message that shows what to send', () => {
    for (const contentType of ['application/dicom', 'multipart/form-data; boundary=abc', '']) {
      expect(() => parseMultipartRelated(contentType)).toThrow(MultipartError);
      expect(() => parseMultipartRelated(contentType)).toThrow(/multipart\/related; type="application\/dicom"; boundary=/);
    }
    try {
      parseMultipartRelated('application/dicom');
    } catch (e) {
      expect(e).toMatchObject({ code: 'not-multipart', message: expect.stringContaining('"application/dicom"') });
    }
  });

  it('refuses a missing boundary and one RFC 2046 does not allow, forgiving only the length real senders exceed', () => {
    expect(() => parseMultipartRelated('multipart/related; type=application/dicom')).toThrow(/no boundary/);
    expect(() => parseMultipartRelated('multipart/related; boundary=""')).toThrow(/no boundary/);
    expect(() => parseMultipartRelated(`multipart/related; boundary=${'a'.repeat(201)}`)).toThrow(/201 characters long \(200 at most\)/);
    expect(() => parseMultipartRelated('multipart/related; boundary="ab "')).toThrow(/ends with a space/);
    expect(() => parseMultipartRelated('multipart/related; boundary="a;b"')).toThrow(/RFC 2046/);
    expect(parseMultipartRelated(`multipart/related; boundary=${'a'.repeat(70)}`).boundary).toHaveLength(70);
    // What Orthanc's DICOMweb plugin sends with every STOW: a UUID twice, 73 characters.
    const orthanc = `${randomUUID()}-${randomUUID()}`;
    expect(parseMultipartRelated(`multipart/related; type="application/dicom"; boundary=${orthanc}`).boundary).toBe(orthanc);
    expect(parseMultipartRelated(`multipart/related; boundary=${'a'.repeat(200)}`).boundary).toHaveLength(200);
    expect(parseMultipartRelated(`multipart/related; boundary="'()+_,-./:=? x"`).boundary).toBe("'()+_,-./:=? x");
  });
});

describe('readMultipart over multipartBody', () => {
  const lookAlikes = [
    noise(3000, 1),
    Buffer.from('\r\n--XyZ-bound\r\n--XyZ-boundar\r\n-\r\r\n--XyZ-boundar'),
    Buffer.alloc(0),
    Buffer.from(`--${BOUNDARY}\r\n`), // the boundary without its leading CRLF is data
    Buffer.from('ends in a CR\r'),
    Buffer.from('ends in half a delimiter\r\n--XyZ-b'),
    Buffer.from('\r'.repeat(40) + '\r\n'.repeat(40)),
    noise(200_000, 2),
  ];

  for (const size of [1, 7, 65536]) {
    it(`gives back binary parts with boundary look-alikes byte for byte, in ${size}-byte chunks`, async () => {
      const body = await collect(multipartBody(asParts(lookAlikes), BOUNDARY));
      const got: Buffer[] = [];
      for await (const part of readMultipart(chunked(body, size), BOUNDARY, LIMITS)) {
        expect(part.contentType).toBe('application/dicom');
        got.push(await collect(part.body));
      }
      expect(got).toEqual(lookAlikes);
    });
  }

  it('gives back random parts split at random places', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const parts = Array.from({ length: 1 + (seed % 4) }, (_, i) => {
        // Sprinkle delimiter prefixes through random bytes.
        const bytes = noise(500 + seed * 37 * i, seed * 10 + i);
        const prefix = Buffer.from(`\r\n--${BOUNDARY}`).subarray(0, 1 + ((seed + i) % 15));
        for (let at = (seed * 13) % 97; at + prefix.length < bytes.length; at += 101) prefix.copy(bytes, at);
        return bytes;
      });
      const body = await collect(multipartBody(asParts(parts), BOUNDARY));
      const got: Buffer[] = [];
      for await (const part of readMultipart(randomlyChunked(body, seed), BOUNDARY, LIMITS)) got.push(await collect(part.body));
      expect(got, `seed ${seed}`).toEqual(parts);
    }
  });

  it('carries part headers and streamed part bodies', async () => {
    const boundary = multipartBoundary();
    async function* parts() {
      yield { contentType: 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1', headers: { 'Content-Location': '/frames/1' }, body: chunked(Buffer.from('frame one'), 4) };
      yield { contentType: 'image/jpeg', body: new Uint8Array([0xff, 0xd8, 0xff, 0xd9]) };
    }
    const body = await collect(multipartBody(parts(), boundary));
    const got: MultipartPart[] = [];
    const bodies: Buffer[] = [];
    for await (const part of readMultipart(chunked(body, 5), boundary, LIMITS)) {
      got.push(part);
      bodies.push(await collect(part.body));
    }
    expect(got.map((p) => p.headers)).toEqual([
      { 'content-type': 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1', 'content-location': '/frames/1' },
      { 'content-type': 'image/jpeg' },
    ]);
    expect(bodies).toEqual([Buffer.from('frame one'), Buffer.from([0xff, 0xd8, 0xff, 0xd9])]);
  });

  it('writes an empty multipart body that reads as no parts', async () => {
    const body = await collect(multipartBody(asParts([]), 'b'));
    expect(body.toString()).toBe('--b--\r\n');
    expect(await readAll(text(body.toString()))).toEqual([]);
  });
});

describe('readMultipart framing', () => {
  it('ignores preamble and epilogue and allows transport padding after boundaries', async () => {
    const body = 'preamble line\r\n--b \t\r\nContent-Type: a/b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b-- \r\nepilogue, read and dropped';
    expect(await readAll(text(body))).toEqual([
      { headers: { 'content-type': 'a/b' }, body: 'one' },
      { headers: {}, body: 'two' },
    ]);
  });

  it('reads folded and repeated header lines, names in any case', async () => {
    const body = '--b\r\nCONTENT-TYPE: application/dicom;\r\n transfer-syntax=1.2.840.10008.1.2.1\r\nx-Note: a\r\nX-NOTE: b\r\n\r\nbody\r\n--b--';
    expect(await readAll(text(body, 1))).toEqual([
      { headers: { 'content-type': 'application/dicom; transfer-syntax=1.2.840.10008.1.2.1', 'x-note': 'a, b' }, body: 'body' },
    ]);
  });

  it('hands out the start of a part before the rest has arrived', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* slow() {
      yield Buffer.from('--b\r\n\r\nfirst bytes');
      await gate;
      yield Buffer.from(' and the rest\r\n--b--\r\n');
    }
    for await (const part of readMultipart(slow(), 'b', LIMITS)) {
      const it = part.body[Symbol.asyncIterator]();
      const first = await it.next();
      expect(Buffer.from(first.value!).toString()).toBe('first bytes');
      release();
      let rest = '';
      for (let r = await it.next(); !r.done; r = await it.next()) rest += Buffer.from(r.value).toString();
      expect(Buffer.from(first.value!).toString() + rest).toBe('first bytes and the rest');
    }
  });

  it('skips parts whose consumer leaves them unread or half read', async () => {
    const body = '--b\r\n\r\nfirst part body\r\n--b\r\n\r\nsecond part body\r\n--b\r\n\r\nthird\r\n--b--\r\n';
    const seen: string[] = [];
    for await (const part of readMultipart(text(body, 2), 'b', LIMITS)) {
      if (seen.length === 0) seen.push('unread');
      else if (seen.length === 1) {
        for await (const chunk of part.body) {
          seen.push(`began with ${Buffer.from(chunk).toString()[0]}`);
          break;
        }
      } else seen.push((await collect(part.body)).toString());
    }
    expect(seen).toEqual(['unread', 'began with s', 'third']);
  });

  it('refuses to read a part body after moving on to the next part', async () => {
    const parts: MultipartPart[] = [];
    for await (const part of readMultipart(text('--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--'), 'b', LIMITS)) parts.push(part);
    await expect(collect(parts[0]!.body)).rejects.toThrow(/moved on/);
  });

  it('stops reading the body when the consumer stops asking for parts', async () => {
    let pulled = 0;
    async function* counted() {
      for (const piece of ['--b\r\n\r\none\r\n', '--b\r\n\r\ntwo\r\n', '--b--\r\n']) {
        pulled++;
        yield Buffer.from(piece);
      }
    }
    for await (const part of readMultipart(counted(), 'b', LIMITS)) {
      expect((await collect(part.body)).toString()).toBe('one');
      break;
    }
    expect(pulled).toBe(2);
  });

  const malformed: [string, string, RegExp][] = [
    ['no boundary at all', 'just some bytes', /no line with the boundary/],
    ['a body that ends inside a part', '--b\r\n\r\nunfinished', /ends inside a part/],
    ['a body that ends after a boundary', '--b\r\n\r\none\r\n--b', /closing boundary/],
    ['a body that ends after a boundary line', '--b\r\n\r\none\r\n--b\r\n', /inside the headers/],
    ['a body that ends inside headers', '--b\r\nContent-Type: a/b\r\n', /inside the headers/],
    ['bytes after a boundary', '--b\r\n\r\none\r\n--bogus\r\n\r\n--b--', /followed by other bytes/],
    ['a header without a colon', '--b\r\nContent-Type a/b\r\n\r\none\r\n--b--', /not "Name: value"/],
    ['a continuation line first', '--b\r\n folded\r\n\r\none\r\n--b--', /continuation/],
    ['headers over 16 KB', `--b\r\nX-Big: ${'x'.repeat(17_000)}\r\n\r\none\r\n--b--`, /larger than 16 KB/],
  ];
  for (const [what, body, message] of malformed) {
    it(`refuses ${what} as malformed`, async () => {
      for (const size of [1, 5, 100_000]) {
        await expect(readAll(text(body, size))).rejects.toMatchObject({ code: 'malformed', message: expect.stringMatching(message) });
      }
    });
  }

  it('fails the whole body even when the consumer swallows the error of a part', async () => {
    const run = async () => {
      for await (const part of readMultipart(text('--b\r\n\r\nunfinished'), 'b', LIMITS)) await collect(part.body).catch(() => undefined);
    };
    await expect(run()).rejects.toMatchObject({ code: 'malformed' });
  });
});

describe('readMultipart errors of the body stream', () => {
  it('passes on an error of the body stream, even when the consumer swallowed it', async () => {
    async function* aborted() {
      yield Buffer.from('--b\r\n\r\nsome bytes');
      throw new Error('client aborted');
    }
    const run = async () => {
      for await (const part of readMultipart(aborted(), 'b', LIMITS)) await collect(part.body).catch(() => undefined);
    };
    await expect(run()).rejects.toThrow('client aborted');
  });
});

describe('readMultipart limits', () => {
  const body = (...parts: string[]) => `--b\r\n${parts.map((p) => `\r\n${p}`).join('\r\n--b\r\n')}\r\n--b--\r\n`;

  it('fails a chunked body past maxTotalBytes as too-large, read or not', async () => {
    const big = body('x'.repeat(10_000), 'y');
    const limits = { maxPartBytes: 1 << 20, maxTotalBytes: 5000 };
    await expect(readAll(text(big, 100), 'b', limits)).rejects.toMatchObject({ code: 'too-large' });
    const skipAll = async () => {
      for await (const part of readMultipart(text(big, 100), 'b', limits)) void part;
    };
    await expect(skipAll()).rejects.toMatchObject({ code: 'too-large' });
    const swallow = async () => {
      for await (const part of readMultipart(text(big, 100), 'b', limits)) await collect(part.body).catch(() => undefined);
    };
    await expect(swallow()).rejects.toMatchObject({ code: 'too-large' });
  });

  it('reads maxParts parts and fails the body as too-many-parts when the next one begins', async () => {
    const empty = body(...Array.from({ length: 5 }, () => ''));
    expect(await readAll(text(empty, 7), 'b', { ...LIMITS, maxParts: 5 })).toHaveLength(5);
    const seen: number[] = [];
    const readSome = async () => {
      for await (const part of readMultipart(text(empty, 7), 'b', { ...LIMITS, maxParts: 4 })) seen.push((await collect(part.body)).length);
    };
    await expect(readSome()).rejects.toMatchObject({ code: 'too-many-parts', message: 'the body holds more than 4 parts' });
    expect(seen).toEqual([0, 0, 0, 0]);
  });

  it('counts the preamble against maxTotalBytes', async () => {
    const padded = `${'p'.repeat(6000)}\r\n${body('one')}`;
    await expect(readAll(text(padded, 64), 'b', { maxPartBytes: 100, maxTotalBytes: 5000 })).rejects.toMatchObject({ code: 'too-large' });
  });

  it('accepts a body exactly at maxTotalBytes', async () => {
    const exact = body('one', 'two');
    expect(await readAll(text(exact, 4), 'b', { maxPartBytes: 3, maxTotalBytes: exact.length })).toHaveLength(2);
  });

  it('fails only the part past maxPartBytes and goes on with the next ones', async () => {
    const limits = { maxPartBytes: 1000, maxTotalBytes: 1 << 20 };
    for (const size of [1, 7, 64, 65536]) {
      expect(await readAll(text(body('first', 'z'.repeat(1001), 'x'.repeat(1000)), size), 'b', limits)).toEqual([
        { headers: {}, body: 'first' },
        { headers: {}, error: 'part-too-large' },
        { headers: {}, body: 'x'.repeat(1000) },
      ]);
    }
  });

  it('hands out the first maxPartBytes of an oversized part before failing it, however it is chunked', async () => {
    const limits = { maxPartBytes: 1000, maxTotalBytes: 1 << 20 };
    const oversized = noise(1500, 7).toString('latin1').replaceAll('\r', '.');
    for (const size of [1, 999, 1000, 1001, 65536]) {
      const parts: { head: string; error?: string }[] = [];
      for await (const part of readMultipart(text(body(oversized), size), 'b', limits)) {
        const received: Buffer[] = [];
        const error = await (async () => {
          for await (const chunk of part.body) received.push(Buffer.from(chunk));
        })().catch((e: MultipartError) => e.code);
        parts.push({ head: Buffer.concat(received).toString('latin1'), ...(error ? { error } : {}) });
      }
      expect(parts).toEqual([{ head: oversized.slice(0, 1000), error: 'part-too-large' }]);
    }
  });

  it('still holds the parts after an oversized one to maxTotalBytes', async () => {
    const limits = { maxPartBytes: 1000, maxTotalBytes: 5000 };
    await expect(readAll(text(body('z'.repeat(3000), 'x'.repeat(3000)), 256), 'b', limits)).rejects.toMatchObject({ code: 'too-large' });
  });
});

describe('multipart responses', () => {
  it('makes random boundaries that need no quoting', () => {
    const a = multipartBoundary();
    expect(a).toMatch(/^[0-9a-z-]{1,70}$/);
    expect(multipartBoundary()).not.toBe(a);
  });

  it('quotes the type parameter, and others only when they are not tokens', () => {
    expect(multipartContentType('application/dicom', 'abc')).toBe('multipart/related; type="application/dicom"; boundary=abc');
    expect(multipartContentType('application/octet-stream', 'a b', { 'transfer-syntax': '1.2.840.10008.1.2.1', start: '<1@x>' })).toBe(
      'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1; start="<1@x>"; boundary="a b"',
    );
    const round = parseMultipartRelated(multipartContentType('application/dicom', "a b'c"));
    expect(round).toEqual({ boundary: "a b'c", type: 'application/dicom' });
  });

  it('refuses header values that would write their own lines', async () => {
    expect(() => multipartContentType('application/dicom\r\nX-Evil: 1', 'abc')).toThrow(TypeError);
    const parts = (async function* () {
      yield { contentType: 'a/b', headers: { 'Content-Location': 'x\r\n--b' }, body: new Uint8Array(0) };
    })();
    await expect(collect(multipartBody(parts, 'b'))).rejects.toThrow(TypeError);
  });
});
