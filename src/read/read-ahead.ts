/** Something whose bytes are read when asked: a ZIP entry, a file to send. */
export type WithBody = { body: () => AsyncIterable<Uint8Array> };

/**
 * The items with their bodies read `files` ahead of the one being consumed, each holding at most `bytesEach`
 * before its reader waits: the next files' opens, reads and checksums overlap the sending of this one, where one
 * file after another would leave the disk idle while the network sends and the network idle while the disk reads.
 * Memory stays within `files × bytesEach` whatever the number of items. An item's read error is its body's error,
 * met when that body is reached. Stopping early (the client went away) stops and closes every read begun.
 */
export async function* readAhead<T extends WithBody>(items: readonly T[], files: number, bytesEach: number): AsyncGenerator<T> {
  const begun: Prefetch[] = [];
  const begin = (i: number) => {
    if (i < items.length && !begun[i]) begun[i] = new Prefetch(items[i]!.body(), bytesEach);
  };
  try {
    for (let i = 0; i < items.length; i++) {
      for (let ahead = i; ahead <= i + files; ahead++) begin(ahead);
      const prefetch = begun[i]!;
      yield { ...items[i]!, body: () => prefetch.chunks() };
      prefetch.stop();
      delete begun[i];
    }
  } finally {
    for (const prefetch of begun) prefetch?.stop();
  }
}

/** One body read into a bounded queue by a loop of its own, drained by `chunks()`. */
class Prefetch {
  private readonly queue: Uint8Array[] = [];
  private held = 0;
  private ended = false;
  private stopped = false;
  private error: unknown;
  /** Whoever waits for the other side: the consumer for a chunk, the reader for room. */
  private wake?: () => void;

  constructor(
    body: AsyncIterable<Uint8Array>,
    private readonly bytesEach: number,
  ) {
    void this.read(body);
  }

  async *chunks(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const chunk = this.queue.shift();
      if (chunk) {
        this.held -= chunk.byteLength;
        this.signal();
        yield chunk;
      } else if (this.ended) {
        if (this.error !== undefined) throw this.error;
        return;
      } else {
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.signal();
  }

  private async read(body: AsyncIterable<Uint8Array>): Promise<void> {
    const iterator = body[Symbol.asyncIterator]();
    try {
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        if (this.stopped) break;
        this.queue.push(next.value);
        this.held += next.value.byteLength;
        this.signal();
        while (this.held >= this.bytesEach && !this.stopped) await new Promise<void>((resolve) => (this.wake = resolve));
        if (this.stopped) break;
      }
    } catch (e) {
      this.error = e;
    } finally {
      // A read stopped early closes its file (and leaves its checksum unchecked: nobody takes its bytes).
      if (this.stopped) await iterator.return?.().catch(() => undefined);
      this.ended = true;
      this.signal();
    }
  }

  private signal(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
