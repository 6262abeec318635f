import fc from 'fast-check';
import { deflate, seeds, type Seed } from './seeds.js';

/**
 * Mutations of a seed file, as the attack run made them by hand: bit flips, truncations, lengths written over
 * length fields (huge, odd, undefined), delimiters and deep nesting inserted, ranges deleted or repeated.
 * Positions are taken modulo the current length, so that fast-check shrinks a failure to few, small mutations.
 */
export type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'truncate'; at: number }
  | { op: 'length'; field: number; width: 2 | 4; value: number }
  | { op: 'insert'; at: number; bytes: Uint8Array; times: number }
  | { op: 'delete'; at: number; count: number }
  | { op: 'repeat'; at: number; count: number; times: number };

const HUGE_LENGTHS = [0, 1, 2, 3, 7, 8, 0xfffe, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

/** A tag with a VR and an undefined length (a sequence) or an item, a delimiter: the pieces of nesting. */
const STRUCTURE = [
  Buffer.from([0x08, 0x00, 0x15, 0x11, 0x53, 0x51, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff]), // (0008,1115) SQ, undefined length
  Buffer.from([0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]), // item, undefined length
  Buffer.from([0xfe, 0xff, 0x0d, 0xe0, 0x00, 0x00, 0x00, 0x00]), // item delimiter
  Buffer.from([0xfe, 0xff, 0x0d, 0xe0, 0x04, 0x00, 0x00, 0x00]), // item delimiter with a non-zero length
  Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0x00, 0x00, 0x00, 0x00]), // sequence delimiter
  Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff]), // (7FE0,0010) OB, undefined length
  Buffer.from([0x08, 0x00, 0x18, 0x00, 0x55, 0x49, 0x08, 0x00, 0x31, 0x2e, 0x32, 0x00, 0x33, 0x2e, 0x34, 0x00]), // SOPInstanceUID "1.2\0 3.4\0"
  Buffer.from('DICM'),
];

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }), weight: 1 },
  {
    arbitrary: fc.record({
      op: fc.constant('length' as const),
      field: fc.nat(),
      width: fc.constantFrom(2 as const, 4 as const),
      value: fc.oneof(fc.constantFrom(...HUGE_LENGTHS), fc.nat({ max: 0x1ffff }), fc.nat()),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      op: fc.constant('insert' as const),
      at: fc.nat(),
      bytes: fc.oneof(fc.constantFrom(...STRUCTURE).map((b) => new Uint8Array(b)), fc.uint8Array({ minLength: 1, maxLength: 16 })),
      times: fc.oneof({ arbitrary: fc.constant(1), weight: 4 }, { arbitrary: fc.integer({ min: 2, max: 3000 }), weight: 1 }),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 64 }) }), weight: 1 },
  {
    arbitrary: fc.record({ op: fc.constant('repeat' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 64 }), times: fc.integer({ min: 1, max: 200 }) }),
    weight: 1,
  },
);

export function mutate(bytes: Buffer, lengthFields: number[], mutations: Mutation[]): Buffer {
  let b = Buffer.from(bytes);
  for (const m of mutations) {
    if (b.length === 0) break;
    switch (m.op) {
      case 'flip': {
        const at = m.at % b.length;
        b[at]! ^= 1 << m.bit;
        break;
      }
      case 'truncate':
        b = b.subarray(0, m.at % b.length);
        break;
      case 'length': {
        const at = lengthFields.length ? lengthFields[m.field % lengthFields.length]! : m.field % b.length;
        if (at + m.width > b.length) break;
        if (m.width === 2) b.writeUInt16LE(m.value & 0xffff, at);
        else b.writeUInt32LE(m.value >>> 0, at);
        break;
      }
      case 'insert': {
        const at = m.at % (b.length + 1);
        b = Buffer.concat([b.subarray(0, at), ...Array<Uint8Array>(m.times).fill(m.bytes), b.subarray(at)]);
        break;
      }
      case 'delete': {
        const at = m.at % b.length;
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.count)]);
        break;
      }
      case 'repeat': {
        const at = m.at % b.length;
        const range = b.subarray(at, at + m.count);
        b = Buffer.concat([b.subarray(0, at), ...Array<Buffer>(m.times).fill(range), b.subarray(at)]);
        break;
      }
    }
  }
  return b;
}

/** A fixture file, mutated: as stored, or (for a deflated file) its data set mutated and deflated again. */
export function mutatedPart10(): fc.Arbitrary<Buffer> {
  const all = seeds();
  return fc
    .record({ seed: fc.nat({ max: all.length - 1 }), inside: fc.boolean(), mutations: fc.array(mutation, { minLength: 0, maxLength: 6 }) })
    .map(({ seed, inside, mutations }) => mutateSeed(all[seed]!, inside, mutations));
}

function mutateSeed(seed: Seed, inside: boolean, mutations: Mutation[]): Buffer {
  if (inside && seed.deflated) return deflate(seed.deflated.meta, mutate(seed.deflated.dataSet, seed.deflated.lengthFields, mutations));
  return mutate(seed.bytes, seed.lengthFields, mutations);
}

/** Bytes of any kind mutated the same way, for inputs that are not Part 10 files. */
export function mutatedBytes(from: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.tuple(from, fc.array(mutation, { maxLength: 4 })).map(([bytes, mutations]) => mutate(bytes, [], mutations));
}
