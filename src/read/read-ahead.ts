/** Something whose bytes are read when asked: a ZIP entry, a file to send. */
export type WithBody = { size: number; body: () => AsyncIterable<Uint8Array> };

type Read = { chunks: Uint8Array[] } | { error: unknown };

/**
 * The bytes every response together may hold read ahead. Without a bound, each slow client held its files ahead (sixty
 * slow downloads of a study held 2 GB); past it, a response reads each file when it reaches it, as without read-ahead.
 */
export class ReadAheadBudget {
  private used = 0;

  constructor(readonly total: number) {}

  /** Takes `bytes` if they fit (true), to be given back once they are let go. */
  take(bytes: number): boolean {
    if (this.used + bytes > this.total) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }
}

/**
 * The items with the bodies of the next `files` small ones (up to `wholeBytes`) read whole ahead of the one being
 * consumed, as far as `budget` allows: their opens, reads and checksums overlap the sending of this one, where one
 * file after another would leave the disk idle while the network sends and the network idle while the disk reads. A
 * larger body is read when it is reached, streamed: read ahead, it would wait with its file or S3 connection open
 * while a slow client takes the files before it (and S3 closes a response idle for a minute). An item's body is
 * consumed before the next item is asked for (a ZIP, a multipart body): its memory goes back to the budget then. A
 * read ahead whose item is never reached (the client went away) ends by itself, its body read whole and let go; an
 * item's read error is its body's error, met when that body is reached.
 */
export async function* readAhead<T extends WithBody>(items: readonly T[], files: number, wholeBytes: number, budget: ReadAheadBudget): AsyncGenerator<T> {
  const ahead = new Map<number, Promise<Read>>();
  /** The item being sent, while the budget holds its bytes. */
  let sending: T | undefined;
  try {
    for (let i = 0; i < items.length; i++) {
      for (let next = i; next <= i + files && next < items.length; next++) {
        const item = items[next]!;
        if (item.size > wholeBytes || ahead.has(next)) continue;
        // In order: a later file is not read ahead of an earlier one that did not fit.
        if (!budget.take(item.size)) break;
        ahead.set(next, readWhole(item.body()));
      }
      const read = ahead.get(i);
      ahead.delete(i);
      sending = read && items[i];
      yield read ? { ...items[i]!, body: () => replay(read) } : items[i]!;
      if (sending) budget.give(sending.size);
      sending = undefined;
    }
  } finally {
    if (sending) budget.give(sending.size);
    for (const [n, read] of ahead) void read.then(() => budget.give(items[n]!.size));
  }
}

async function readWhole(body: AsyncIterable<Uint8Array>): Promise<Read> {
  try {
    const chunks: Uint8Array[] = [];
    for await (const chunk of body) chunks.push(chunk);
    return { chunks };
  } catch (error) {
    return { error };
  }
}

async function* replay(read: Promise<Read>): AsyncGenerator<Uint8Array> {
  const done = await read;
  if ('error' in done) throw done.error;
  yield* done.chunks;
}
