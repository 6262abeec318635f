import type { Logger } from 'pino';

/** A write per request would cost a commit each; records are written together, a few times a second. */
const FLUSH_AFTER_MS = 200;
const FLUSH_AT = 500;
/** While the index is unreachable records wait in memory, up to this many; older ones are then dropped, loudly. */
const MAX_PENDING = 100_000;

/**
 * Records of what happened (the audit trail, the upload log) written to the index in batches behind the requests
 * that made them: the request does not wait for a commit of its own. Those handed in before `flush()` are stored
 * when it resolves; whoever reads them flushes first. A failed write is retried, never lost while the process lives.
 */
export class WriteBehind<T> {
  private pending: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

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
    else this.timer ??= setTimeout(() => void this.flush(), FLUSH_AFTER_MS);
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
        this.pending = [...batch, ...this.pending];
        this.log.error({ err, waiting: this.pending.length }, `${this.what} could not be written; retrying`);
        this.timer ??= setTimeout(() => void this.flush(), 5 * FLUSH_AFTER_MS);
      }
    });
    return this.flushing;
  }
}
