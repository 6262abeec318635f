import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/** `head` keeps the first bytes in memory so that parsing the header needs no read back. */
export type Spooled = { path: string; size: number; sha256: string; head: Buffer };

/** Enough for the header of nearly every instance; larger ones are read back from the file. */
const HEAD_BYTES = 1024 * 1024;
/** Chunks are gathered into writes of this size: fewer round trips to the thread pool. */
const WRITE_BYTES = 1024 * 1024;

export class TooLarge extends Error {
  constructor(
    readonly limit: number,
    detail = `the instance is larger than the ${formatBytes(limit)} limit (PACS_MAX_INSTANCE_BYTES)`,
  ) {
    super(detail);
  }
}

/**
 * Writes a part to a local temp file while hashing and counting it, so nothing is held in memory and the
 * checksum costs no second pass. The caller owns the file afterwards (moves it into the store or removes it).
 */
export async function spool(body: AsyncIterable<Uint8Array>, dir: string, maxBytes: number): Promise<Spooled> {
  const file = path.join(dir, `${randomUUID()}.part`);
  const handle = await fs.open(file, 'w');
  const hash = createHash('sha256');
  let size = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const head: Buffer[] = [];
  let headBytes = 0;
  const flush = async () => {
    if (pendingBytes === 0) return;
    await handle.writev(pending);
    pending = [];
    pendingBytes = 0;
  };
  try {
    for await (const chunk of body) {
      size += chunk.byteLength;
      if (size > maxBytes) throw new TooLarge(maxBytes);
      hash.update(chunk);
      // Readers hand over fresh chunks (Node request bodies, multipart slices): holding views is safe.
      const owned = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      if (headBytes < HEAD_BYTES) {
        head.push(owned);
        headBytes += owned.length;
      }
      pending.push(owned);
      pendingBytes += owned.length;
      if (pendingBytes >= WRITE_BYTES) await flush();
    }
    await flush();
  } catch (e) {
    await handle.close();
    await fs.rm(file, { force: true });
    throw e;
  }
  await handle.close();
  return { path: file, size, sha256: hash.digest('hex'), head: Buffer.concat(head).subarray(0, Math.min(size, HEAD_BYTES)) };
}

export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${units[i]}`;
}
