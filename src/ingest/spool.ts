import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { syncAndClose } from '../storage/coalesced-sync.js';

/**
 * A part received into a local temp file. `head` keeps the first bytes in memory so that parsing the header
 * needs no read back. The file is written and flushed in the background while the next part is received:
 * `written` resolves once every byte is in the file (it may then be read), `synced` once it is also on disk
 * and closed. Both must be awaited (or the file discarded) before the file is moved or removed.
 */
export type Spooled = { path: string; size: number; sha256: string; head: Buffer; written: Promise<void>; synced: Promise<void> };

/** Enough for the header of nearly every instance; larger ones are read back from the file. */
const HEAD_BYTES = 256 * 1024;
/** Chunks are gathered into writes of this size: fewer round trips to the thread pool. */
const WRITE_BYTES = 1024 * 1024;
/** Received bytes waiting for the disk, per part: past this the reader waits, so a slow disk slows the client down. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

export class TooLarge extends Error {
  /** The first bytes received, when refused while receiving: its meta information may still name the instance. */
  head?: Buffer;

  constructor(
    readonly limit: number,
    detail = `the instance is larger than the ${formatBytes(limit)} limit (PACS_MAX_INSTANCE_BYTES)`,
  ) {
    super(detail);
  }
}

/**
 * Writes a part to a local temp file while hashing and counting it, so nothing is held in memory and the
 * checksum costs no second pass. Writes and the fsync run behind the reader: receiving never waits on the disk
 * until MAX_QUEUED_BYTES are queued (DESIGN decision 2, paid while the rest of the request arrives).
 * The caller owns the file afterwards (moves it into the store or discards it).
 */
export async function spool(body: AsyncIterable<Uint8Array>, dir: string, maxBytes: number): Promise<Spooled> {
  const file = path.join(dir, `${randomUUID()}.part`);
  const writer = new BackgroundFile(file);
  const hash = createHash('sha256');
  let size = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const head: Buffer[] = [];
  let headBytes = 0;
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
      if (pendingBytes >= WRITE_BYTES) {
        writer.write(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        if (writer.queuedBytes > MAX_QUEUED_BYTES) await writer.written();
      }
    }
    writer.write(pending, pendingBytes);
  } catch (e) {
    await discardFile(file, writer.close());
    if (e instanceof TooLarge) e.head ??= Buffer.concat(head);
    throw e;
  }
  const written = writer.written();
  const synced = writer.syncAndClose();
  synced.catch(() => undefined); // reported to whoever awaits it, never as an unhandled rejection
  return { path: file, size, sha256: hash.digest('hex'), head: Buffer.concat(head).subarray(0, Math.min(size, HEAD_BYTES)), written, synced };
}

/** Removes a spooled file once its background writes have settled, whatever their outcome. */
export async function discard(spooled: Spooled): Promise<void> {
  await discardFile(spooled.path, spooled.synced);
}

async function discardFile(file: string, settled: Promise<void>): Promise<void> {
  await settled.catch(() => undefined);
  await fs.rm(file, { force: true });
}

/** A file written by a chain of writes that run in order on the thread pool, while the caller goes on. */
class BackgroundFile {
  private readonly opened: Promise<fs.FileHandle>;
  private chain: Promise<void>;
  queuedBytes = 0;
  /** Every byte handed to write(): what the file must hold once synced. */
  private totalBytes = 0;

  constructor(file: string) {
    // Patient data: readable by the server's user only, whatever the umask.
    this.opened = fs.open(file, 'w', 0o600);
    this.chain = this.opened.then(() => undefined);
    this.chain.catch(() => undefined);
  }

  write(buffers: Buffer[], bytes: number): void {
    if (bytes === 0) return;
    this.queuedBytes += bytes;
    this.totalBytes += bytes;
    this.chain = this.chain.then(async () => {
      await writeAll(await this.opened, buffers, bytes);
      this.queuedBytes -= bytes;
    });
    // A failed write is reported by written()/syncAndClose(), whoever asks first; never as an unhandled rejection.
    this.chain.catch(() => undefined);
  }

  written(): Promise<void> {
    return this.chain;
  }

  /** Resolves once the file is on disk; it is closed behind that (storage/coalesced-sync.ts, syncAndClose). */
  async syncAndClose(): Promise<void> {
    await syncAndClose(await this.opened, async (handle) => {
      await this.chain;
      // The data and the size it needs to be read back (the times of the file are not worth a journal commit), and
      // the bytes hashed must be the bytes kept (DESIGN decision 11): checked once more on the file.
      const [, { size }] = await Promise.all([handle.datasync(), handle.stat()]);
      if (size !== this.totalBytes) throw new Error(`the spooled file holds ${size} bytes, not the ${this.totalBytes} received`);
    });
  }

  /** Closes the file without syncing it (it is about to be removed). */
  async close(): Promise<void> {
    const handle = await this.opened;
    await this.chain.catch(() => undefined);
    await handle.close();
  }
}

/**
 * writev may write fewer bytes than asked, as when the disk fills up mid-write: the rest is written again until every
 * byte is in the file or the disk says why not (ENOSPC, EDQUOT, EIO).
 */
async function writeAll(handle: fs.FileHandle, buffers: Buffer[], bytes: number): Promise<void> {
  let left = buffers;
  for (let remaining = bytes; remaining > 0; ) {
    const { bytesWritten } = await handle.writev(left);
    if (bytesWritten === 0) throw new Error('the disk took none of the bytes written to the spooled file');
    remaining -= bytesWritten;
    left = after(left, bytesWritten);
  }
}

/** The buffers past their first `n` bytes. */
function after(buffers: Buffer[], n: number): Buffer[] {
  let i = 0;
  for (; i < buffers.length && n >= buffers[i]!.length; i++) n -= buffers[i]!.length;
  const rest = buffers.slice(i);
  if (n > 0) rest[0] = rest[0]!.subarray(n);
  return rest;
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
