import { crc32 } from 'node:zlib';

/**
 * A ZIP archive written as its entries are read (APPNOTE 6.3.10): entries stored, not compressed (DICOM pixels hardly
 * compress, and it keeps the download at the speed of the reads), each followed by a data descriptor with its CRC-32,
 * ZIP64 where a size, an offset or the count of entries needs it. Memory stays at one chunk whatever the archive's size.
 */
export type ZipEntry = { name: string; size: number; modified: Date; body: () => AsyncIterable<Uint8Array> };

const LOCAL_HEADER = 0x04034b50;
const DATA_DESCRIPTOR = 0x08074b50;
const CENTRAL_HEADER = 0x02014b50;
const END = 0x06054b50;
const END64 = 0x06064b50;
const END64_LOCATOR = 0x07064b50;
/** Bit 3: sizes and CRC follow the data; bit 11: names are UTF-8. */
const FLAGS = 0x0008 | 0x0800;
const VERSION = 20;
const VERSION64 = 45;
const MAX32 = 0xffffffff;
const MAX16 = 0xffff;

type Written = { name: Buffer; crc: number; size: number; offset: number; time: number; date: number; zip64: boolean };

export async function* zipStream(entries: Iterable<ZipEntry> | AsyncIterable<ZipEntry>): AsyncGenerator<Buffer> {
  const written: Written[] = [];
  let offset = 0;
  for await (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const zip64 = entry.size >= MAX32 || offset >= MAX32;
    const { time, date } = dosTime(entry.modified);
    const extra = zip64 ? zip64Extra([0, 0]) : Buffer.alloc(0);
    const header = Buffer.alloc(30);
    header.writeUInt32LE(LOCAL_HEADER, 0);
    header.writeUInt16LE(zip64 ? VERSION64 : VERSION, 4);
    header.writeUInt16LE(FLAGS, 6);
    header.writeUInt16LE(0, 8);
    header.writeUInt16LE(time, 10);
    header.writeUInt16LE(date, 12);
    // CRC-32 and sizes: in the data descriptor (bit 3); 0xFFFFFFFF with ZIP64 says they are in its extra field.
    header.writeUInt32LE(zip64 ? MAX32 : 0, 18);
    header.writeUInt32LE(zip64 ? MAX32 : 0, 22);
    header.writeUInt16LE(name.length, 26);
    header.writeUInt16LE(extra.length, 28);
    yield Buffer.concat([header, name, extra]);
    let crc = 0;
    let size = 0;
    for await (const chunk of entry.body()) {
      crc = crc32(chunk, crc);
      size += chunk.byteLength;
      yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
    if (size !== entry.size) throw new Error(`${entry.name} held ${size} bytes, not the ${entry.size} announced`);
    const descriptor = Buffer.alloc(zip64 ? 24 : 16);
    descriptor.writeUInt32LE(DATA_DESCRIPTOR, 0);
    descriptor.writeUInt32LE(crc, 4);
    if (zip64) {
      descriptor.writeBigUInt64LE(BigInt(size), 8);
      descriptor.writeBigUInt64LE(BigInt(size), 16);
    } else {
      descriptor.writeUInt32LE(size, 8);
      descriptor.writeUInt32LE(size, 12);
    }
    yield descriptor;
    written.push({ name, crc, size, offset, time, date, zip64 });
    offset += 30 + name.length + extra.length + size + descriptor.length;
  }
  const directoryOffset = offset;
  for (const w of written) {
    const big = w.zip64 || w.offset >= MAX32;
    const extra = big ? zip64Extra([w.size, w.size, w.offset]) : Buffer.alloc(0);
    const header = Buffer.alloc(46);
    header.writeUInt32LE(CENTRAL_HEADER, 0);
    header.writeUInt16LE(big ? VERSION64 : VERSION, 4);
    header.writeUInt16LE(big ? VERSION64 : VERSION, 6);
    header.writeUInt16LE(FLAGS, 8);
    header.writeUInt16LE(0, 10);
    header.writeUInt16LE(w.time, 12);
    header.writeUInt16LE(w.date, 14);
    header.writeUInt32LE(w.crc, 16);
    header.writeUInt32LE(big ? MAX32 : w.size, 20);
    header.writeUInt32LE(big ? MAX32 : w.size, 24);
    header.writeUInt16LE(w.name.length, 28);
    header.writeUInt16LE(extra.length, 30);
    header.writeUInt32LE(big ? MAX32 : w.offset, 42);
    yield Buffer.concat([header, w.name, extra]);
    offset += 46 + w.name.length + extra.length;
  }
  const directorySize = offset - directoryOffset;
  const count = written.length;
  if (count >= MAX16 || directoryOffset >= MAX32 || directorySize >= MAX32) {
    const end64 = Buffer.alloc(56);
    end64.writeUInt32LE(END64, 0);
    end64.writeBigUInt64LE(44n, 4);
    end64.writeUInt16LE(VERSION64, 12);
    end64.writeUInt16LE(VERSION64, 14);
    end64.writeBigUInt64LE(BigInt(count), 24);
    end64.writeBigUInt64LE(BigInt(count), 32);
    end64.writeBigUInt64LE(BigInt(directorySize), 40);
    end64.writeBigUInt64LE(BigInt(directoryOffset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(END64_LOCATOR, 0);
    locator.writeBigUInt64LE(BigInt(offset), 8);
    locator.writeUInt32LE(1, 16);
    yield Buffer.concat([end64, locator]);
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(END, 0);
  end.writeUInt16LE(Math.min(count, MAX16), 8);
  end.writeUInt16LE(Math.min(count, MAX16), 10);
  end.writeUInt32LE(Math.min(directorySize, MAX32), 12);
  end.writeUInt32LE(Math.min(directoryOffset, MAX32), 16);
  yield end;
}

/** The ZIP64 extended information extra field (APPNOTE 4.5.3) with these 8-byte values. */
function zip64Extra(values: number[]): Buffer {
  const extra = Buffer.alloc(4 + 8 * values.length);
  extra.writeUInt16LE(0x0001, 0);
  extra.writeUInt16LE(8 * values.length, 2);
  values.forEach((v, i) => extra.writeBigUInt64LE(BigInt(v), 4 + 8 * i));
  return extra;
}

/** MS-DOS date and time, as ZIP keeps them (local time, 2-second steps, from 1980). */
function dosTime(at: Date): { time: number; date: number } {
  const year = Math.max(1980, at.getFullYear());
  return {
    time: (at.getHours() << 11) | (at.getMinutes() << 5) | Math.floor(at.getSeconds() / 2),
    date: ((year - 1980) << 9) | ((at.getMonth() + 1) << 5) | at.getDate(),
  };
}
