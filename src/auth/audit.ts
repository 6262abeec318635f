import type { Logger } from 'pino';
import type { AccessRecords, AuditEvent, AuditFilter } from './records.js';

/** A write per request would cost a commit each; events are written together, a few times a second. */
const FLUSH_AFTER_MS = 200;
const FLUSH_AT_EVENTS = 500;
/** While the database is unreachable events wait in memory, up to this many; older ones are then dropped, loudly. */
const MAX_PENDING = 100_000;

/** The audit trail of access to patient data (DESIGN decision 8). */
export class AuditLog {
  private pending: AuditEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly records: AccessRecords,
    private readonly log: Logger,
  ) {}

  record(event: AuditEvent): void {
    this.pending.push(event);
    if (this.pending.length > MAX_PENDING) {
      const dropped = this.pending.splice(0, this.pending.length - MAX_PENDING);
      this.log.error({ dropped: dropped.length }, 'audit events dropped: the index has not accepted writes for a long while');
    }
    if (this.pending.length >= FLUSH_AT_EVENTS) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), FLUSH_AFTER_MS);
  }

  /** Writes what waits; events recorded before the call are stored when it resolves. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flushing = this.flushing.then(async () => {
      const batch = this.pending;
      if (batch.length === 0) return;
      this.pending = [];
      try {
        await this.records.appendAudit(batch);
      } catch (err) {
        this.pending = [...batch, ...this.pending];
        this.log.error({ err, waiting: this.pending.length }, 'audit events could not be written; retrying');
        this.timer ??= setTimeout(() => void this.flush(), 5 * FLUSH_AFTER_MS);
      }
    });
    return this.flushing;
  }

  async query(filter: AuditFilter): Promise<AuditEvent[]> {
    await this.flush();
    return this.records.audit(filter);
  }

  close(): Promise<void> {
    return this.flush();
  }
}
