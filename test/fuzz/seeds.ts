import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import dicomParser from 'dicom-parser';

/**
 * The fuzzers start from the real files of test/fixtures/dicom: every transfer syntax, sequences, multi-frame,
 * fragments, character sets. Each seed comes with where its length fields are, so that a mutation can aim at them.
 */

export type Seed = {
  name: string;
  bytes: Buffer;
  /** Offsets of 16- and 32-bit length fields: just before each element's value. */
  lengthFields: number[];
  /** A deflated file split at its meta header, so that mutations can act on the inflated data set and deflate again. */
  deflated?: { meta: Buffer; dataSet: Buffer; lengthFields: number[] };
};

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const DEFLATED = '1.2.840.10008.1.2.1.99';

let loaded: Seed[] | undefined;

/** Every .dcm fixture, read once. */
export function seeds(): Seed[] {
  loaded ??= fs
    .readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.dcm'))
    .sort()
    .map((name) => seedOf(name, fs.readFileSync(path.join(FIXTURES, name))));
  loaded.push(deflateBomb(loaded.find((s) => s.deflated)!));
  return loaded;
}

/** The deflated fixture with 6 MB of zeros after its data set, deflated to a few KB: past the read-header target's limit. */
function deflateBomb(seed: Seed): Seed {
  const { meta, dataSet } = seed.deflated!;
  return { name: 'deflate-bomb', bytes: deflate(meta, Buffer.concat([dataSet, Buffer.alloc(6 * 1024 * 1024)])), lengthFields: seed.lengthFields };
}

function seedOf(name: string, bytes: Buffer): Seed {
  const dataSet = dicomParser.parseDicom(bytes, { inflater: (whole: Buffer, at: number) => Buffer.concat([whole.subarray(0, at), zlib.inflateRawSync(whole.subarray(at))]) } as never);
  const syntax = dataSet.string('x00020010')?.replace(/\0/g, '').trim();
  if (syntax !== DEFLATED) return { name, bytes, lengthFields: lengthFieldsOf(dataSet) };
  // The meta header is never deflated (PS3.5 A.5): it ends where its group length says.
  const metaEnd = 144 + bytes.readUInt32LE(140);
  const inflated = dataSet.byteArray as Buffer;
  return {
    name,
    bytes,
    lengthFields: lengthFieldsOf(dataSet).filter((at) => at < metaEnd),
    deflated: {
      meta: bytes.subarray(0, metaEnd),
      dataSet: inflated.subarray(metaEnd),
      lengthFields: lengthFieldsOf(dataSet).filter((at) => at >= metaEnd).map((at) => at - metaEnd),
    },
  };
}

function lengthFieldsOf(dataSet: dicomParser.DataSet): number[] {
  const fields: number[] = [];
  const walk = (set: dicomParser.DataSet) => {
    for (const element of Object.values(set.elements)) {
      fields.push(element.dataOffset - 4, element.dataOffset - 2);
      for (const item of element.items ?? []) {
        fields.push(item.dataOffset - 4);
        if (item.dataSet) walk(item.dataSet);
      }
      for (const fragment of element.fragments ?? []) fields.push(fragment.position - 4);
    }
  };
  walk(dataSet);
  return [...new Set(fields)].filter((at) => at >= 0).sort((a, b) => a - b);
}

export function deflate(meta: Buffer, dataSet: Buffer): Buffer {
  return Buffer.concat([meta, zlib.deflateRawSync(dataSet, { level: 1 })]);
}
