import type { Logger } from 'pino';
import { RateWindows, countedAddress, type Window } from './rate-windows.js';
import type { AccessRecords, AuditEvent, AuditFilter } from './records.js';

/** A write per request would cost a commit each; events are written together, a few times a second. */
const FLUSH_AFTER_MS = 200;
const FLUSH_AT_EVENTS = 500;
/** While the database is unreachable events wait in memory, up to this many; older ones are then dropped, loudly. */
const MAX_PENDING = 100_000;
/** Long fields are cut to this many characters; a refused request, which anyone can send, to fewer. */
const FIELD_CHARS = 2048;
const REFUSED_FIELD_CHARS = 256;
const UID_CHARS = 64;
const SUMMARY_EVERY_MS = 10_000;

/**
 * The audit trail of access to patient data (DESIGN decision 8). Requests without an accepted credential cost
 * their sender nothing, so one address adds at most `refusedPerMinute` of them a minute, cut short; the rest are
 * counted and written as one summary event when the minute is over (counted in this process's memory).
 */
export class AuditLog {
  private pending: AuditEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly refused = new RateWindows(60_000, 10_000, (ip, window) => this.summarize(ip, window));
  private readonly summaries: NodeJS.Timeout;

  constructor(
    private readonly records: AccessRecords,
    private readonly log: Logger,
    private readonly refusedPerMinute: number,
  ) {
    this.summaries = setInterval(() => this.summarizeClosed(), SUMMARY_EVERY_MS).unref();
  }

  record(event: AuditEvent): void {
    const refused = event.credential === 'none' || event.credential.startsWith('rejected:');
    // Counted by the client's address, not by the proxy it came through (`<client> via <proxy>`).
    if (refused && this.refused.add(countedAddress(event.ip?.split(' via ')[0] ?? 'unknown')).count > this.refusedPerMinute) return;
    this.enqueue(compact(event, refused ? REFUSED_FIELD_CHARS : FIELD_CHARS));
  }

  private enqueue(event: AuditEvent): void {
    this.pending.push(event);
    if (this.pending.length > MAX_PENDING) {
      const dropped = this.pending.splice(0, this.pending.length - MAX_PENDING);
      this.log.error({ dropped: dropped.length }, 'audit events dropped: the index has not accepted writes for a long while');
    }
    if (this.pending.length >= FLUSH_AT_EVENTS) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), FLUSH_AFTER_MS);
  }

  private summarizeClosed(now = Date.now()): void {
    for (const [ip, window] of this.refused.takeClosed(now)) this.summarize(ip, window);
  }

  /** One event for the refused requests of a minute that were counted but not recorded one by one. */
  private summarize(ip: string, window: Window): void {
    const unrecorded = window.count - this.refusedPerMinute;
    if (unrecorded <= 0) return;
    this.log.warn({ ip, unrecorded }, 'refused requests from one address beyond the audit limit were counted, not recorded one by one');
    this.enqueue({
      at: window.start,
      credential: 'none',
      ip,
      method: 'SUMMARY',
      path: '(refused requests beyond PACS_AUDIT_REFUSED_PER_MINUTE)',
      query: `count=${unrecorded}&from=${new Date(window.start).toISOString()}&to=${new Date(Math.min(Date.now(), window.start + this.refused.windowMs)).toISOString()}`,
      studyUid: null,
      seriesUid: null,
      sopUid: null,
      status: 429,
      requestId: `summary-${window.start}`,
    });
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
    clearInterval(this.summaries);
    this.summarizeClosed(Infinity);
    return this.flush();
  }
}

/** The event with its long fields cut, saying how long they were. */
function compact(event: AuditEvent, chars: number): AuditEvent {
  return {
    ...event,
    credential: clip(event.credential, 100)!,
    ip: clip(event.ip, 100),
    path: clip(event.path, chars)!,
    query: clip(event.query, chars),
    studyUid: clip(event.studyUid, UID_CHARS),
    seriesUid: clip(event.seriesUid, UID_CHARS),
    sopUid: clip(event.sopUid, UID_CHARS),
    requestId: clip(event.requestId, 100)!,
  };
}

function clip(text: string | null, chars: number): string | null {
  return text === null || text.length <= chars ? text : `${text.slice(0, chars)}…[${text.length} characters]`;
}
