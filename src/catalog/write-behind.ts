import type { Logger } from 'pino';

/** A write per request would cost a commit each; records are written together, a few times a second. */
const FLUSH_AFTER_MS = 200;
const FLUSH_AT = 500;
/** While the index is unreachable records wait in memory, up to this many; older ones are then dropped, loudly. */
const MAX_PENDING = 100_000;
/** Records of a refused batch tried alone before the index is taken to be down rather than refusing one of them. */
const PROBES = 3;

/**
 * Records of what happened (the audit trail, the upload log) written to the index in batches behind the requests
 * that made them: the request does not wait for a commit of its own. `flush()` writes those handed in before it,
 * and whoever reads them flushes first. A batch the index refuses waits for the next try, unless a record of its
 * own is what the index refuses: that one is logged and dropped, and the others are written.
 */
export class WriteBehind<T> {
  private pending: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly write: (batch: T[]) => Promise<void>,
    private readonly log: Logger,
    /** What the records are, for the log: "audit events". */
    private readonly what: string,
  ) {}

  add(record: T): void {
    this.pending.push(record);
    if (this.pending.length > MAX_PENDING) {
      const dropped = this.pending.splice(0, this.pending.length - MAX_PENDING);
      this.log.error({ dropped: dropped.length }, `${this.what} dropped: the index has not accepted writes for a long while`);
    }
    if (this.pending.length >= FLUSH_AT) void this.flush();
    else if (!this.closed) this.timer ??= setTimeout(() => void this.flush(), FLUSH_AFTER_MS);
  }

  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flushing = this.flushing.then(async () => {
      const batch = this.pending;
      if (batch.length === 0) return;
      this.pending = [];
      try {
        await this.write(batch);
      } catch (err) {
        const kept = await this.oneByOne(batch, err);
        if (kept.length === 0) return;
        this.pending = [...kept, ...this.pending];
        this.log.error({ err, waiting: this.pending.length }, `${this.what} could not be written; retrying`);
        if (!this.closed) this.timer ??= setTimeout(() => void this.flush(), 5 * FLUSH_AFTER_MS);
      }
    });
    return this.flushing;
  }

  /** The last write; nothing is retried after it (the index is about to close). */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    clearTimeout(this.timer);
  }

  /**
   * After a batch failed, its records one at a time: when some are written, the index is up and refuses the others,
   * which are logged and dropped. When none is (the first few all fail), the index is down: the rest are kept whole.
   */
  private async oneByOne(batch: T[], batchError: unknown): Promise<T[]> {
    const refused: Array<{ record: T; err: unknown }> = [];
    let written = 0;
    for (const record of batch) {
      try {
        await this.write([record]);
        written++;
      } catch (err) {
        refused.push({ record, err });
        if (written === 0 && refused.length === PROBES) return batch;
      }
    }
    if (written === 0) return batch;
    for (const { record, err } of refused) this.log.error({ err, batchError, record }, `one of the ${this.what} was refused by the index and is dropped`);
    return [];
  }
}
