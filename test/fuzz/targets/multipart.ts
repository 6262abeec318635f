import fc from 'fast-check';
import { MultipartError, parseMultipartRelated, readMultipart } from '../../../src/dicomweb/multipart.js';
import { stowBody } from '../../helpers/server.js';
import { Crash, refusesOnlyWith, type Target } from '../harness.js';
import { mutate, type Mutation } from '../mutations.js';
import { seeds } from '../seeds.js';

type Input = {
  contentType: string;
  body: Buffer;
  /** The sizes the body arrives in, repeated; a client's chunks fall anywhere, a boundary split across two. */
  chunks: number[];
  maxPartBytes: number;
  maxTotalBytes: number;
  /** Per part, whether its body is read (else left for the reader to skip). */
  reads: boolean[];
  /** The parts as sent, when the body was not mutated: then they must come back as they were. */
  intact?: Buffer[];
};

const BOUNDARY = 'fuzz-b0undary';

/** Framing pieces a broken client or an attacker puts in a body. */
const FRAMING = ['\r\n', `--${BOUNDARY}`, `\r\n--${BOUNDARY}`, `\r\n--${BOUNDARY}--`, '--', 'Content-Type: application/dicom\r\n', '\r\n\r\n', ' \t', ':'];

const contentTypes = fc.oneof(
  { arbitrary: fc.constant(`multipart/related; type="application/dicom"; boundary=${BOUNDARY}`), weight: 8 },
  { arbitrary: fc.constantFrom(`multipart/related; boundary="${BOUNDARY}"; type=application/dicom`, `Multipart/Related;boundary=${BOUNDARY}`), weight: 1 },
  { arbitrary: fc.string({ maxLength: 120 }).map((s) => `multipart/related; type="application/dicom"; boundary=${s}`), weight: 1 },
  { arbitrary: fc.string({ maxLength: 120 }), weight: 1 },
);

/** The STOW-RS multipart reader, on bodies of fixture parts, mutated, in any chunking, under small limits. */
export const multipart: Target<Input> = {
  name: 'multipart',
  extension: '.json',
  async open() {
    const files = seeds().map((s) => s.bytes.subarray(0, 4096));
    const framing = fc.record({
      op: fc.constant('insert' as const),
      at: fc.nat(),
      bytes: fc.constantFrom(...FRAMING).map((s) => new Uint8Array(Buffer.from(s))),
      times: fc.oneof(fc.constant(1), fc.integer({ min: 2, max: 2000 })),
    });
    const bytewise = fc.oneof(
      fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
      fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 64 }) }),
    );
    return {
      arbitrary: fc
        .record({
          contentType: contentTypes,
          parts: fc.array(fc.nat({ max: files.length - 1 }), { maxLength: 5 }),
          mutations: fc.array(fc.oneof(framing, bytewise) as fc.Arbitrary<Mutation>, { maxLength: 4 }),
          chunks: fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 6 }),
          maxPartBytes: fc.oneof(fc.constant(1 << 20), fc.integer({ min: 1, max: 5000 })),
          maxTotalBytes: fc.oneof(fc.constant(1 << 24), fc.integer({ min: 1, max: 30000 })),
          reads: fc.array(fc.boolean(), { maxLength: 6 }),
        })
        .map(({ parts, mutations, ...rest }) => {
          const sent = parts.map((i) => files[i]!);
          const { body } = stowBody(sent, BOUNDARY);
          return { ...rest, body: mutate(body, [], mutations), ...(mutations.length ? {} : { intact: sent }) };
        }),
      check: (input) => readAll(input),
      encode: ({ intact, body, ...input }) => Buffer.from(JSON.stringify({ ...input, body: body.toString('base64'), intact: intact?.map((b) => b.toString('base64')) })),
      decode(file) {
        const json = JSON.parse(file.toString()) as Omit<Input, 'body' | 'intact'> & { body: string; intact?: string[] };
        return { ...json, body: Buffer.from(json.body, 'base64'), intact: json.intact?.map((b) => Buffer.from(b, 'base64')) };
      },
      async close() {},
    };
  },
};

async function* chunked(body: Buffer, sizes: number[]): AsyncGenerator<Uint8Array> {
  for (let at = 0, i = 0; at < body.length; i++) {
    const size = sizes[i % sizes.length]!;
    yield body.subarray(at, at + size);
    at += size;
  }
}

async function readAll(input: Input): Promise<void> {
  const parsed = await refusesOnlyWith([MultipartError], () => parseMultipartRelated(input.contentType));
  if (!parsed) return;
  const limits = { maxPartBytes: input.maxPartBytes, maxTotalBytes: input.maxTotalBytes };
  const received: Array<Buffer | 'too-large' | 'left'> = [];
  let handedOut = 0;
  await refusesOnlyWith([MultipartError], async () => {
    for await (const part of readMultipart(chunked(input.body, input.chunks), parsed.boundary, limits)) {
      if (!input.reads[received.length % Math.max(1, input.reads.length)]) {
        received.push('left');
        continue;
      }
      const chunks: Buffer[] = [];
      try {
        for await (const chunk of part.body) chunks.push(Buffer.from(chunk));
      } catch (e) {
        if (!(e instanceof MultipartError && e.code === 'part-too-large')) throw e;
        received.push('too-large');
        continue;
      }
      const body = Buffer.concat(chunks);
      if (body.length > input.maxPartBytes) throw new Crash(`a part of ${body.length} bytes was handed out past the ${input.maxPartBytes}-byte limit`);
      handedOut += body.length;
      received.push(body);
    }
  });
  if (handedOut > input.body.length) throw new Crash(`${handedOut} bytes were handed out of a ${input.body.length}-byte body`);
  const fits = input.body.length <= input.maxTotalBytes && (input.intact ?? []).every((p) => p.length <= input.maxPartBytes);
  if (input.intact && fits && parsed.boundary === BOUNDARY) {
    const expected = input.intact.map((p, i) => (input.reads[i % Math.max(1, input.reads.length)] ? p : 'left'));
    const same = received.length === expected.length && received.every((r, i) => (Buffer.isBuffer(r) ? r.equals(expected[i] as Buffer) : r === expected[i]));
    if (!same) throw new Crash(`an intact body of ${expected.length} parts was read back as ${received.length} different ones`);
  }
}
