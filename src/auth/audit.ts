import type { Logger } from 'pino';
import { WriteBehind } from '../catalog/write-behind.js';
import { RateWindows, countedAddress, type Window } from './rate-windows.js';
import type { AccessRecords, AuditEvent, AuditFilter } from './records.js';

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
  /** Written together, a few times a second (catalog/write-behind.ts). */
  private readonly events: WriteBehind<AuditEvent>;
  private readonly refused = new RateWindows(60_000, 10_000, (ip, window) => this.summarize(ip, window));
  private readonly summaries: NodeJS.Timeout;

  constructor(
    private readonly records: AccessRecords,
    private readonly log: Logger,
    private readonly refusedPerMinute: number,
  ) {
    this.events = new WriteBehind((batch) => records.appendAudit(batch), log, 'audit events');
    this.summaries = setInterval(() => this.summarizeClosed(), SUMMARY_EVERY_MS).unref();
  }

  record(event: AuditEvent): void {
    const refused = event.credential === 'none' || event.credential.startsWith('rejected:');
    // Counted by the client's address, not by the proxy it came through (`<client> via <proxy>`).
    if (refused && this.refused.add(countedAddress(event.ip?.split(' via ')[0] ?? 'unknown')).count > this.refusedPerMinute) return;
    this.events.add(compact(event, refused ? REFUSED_FIELD_CHARS : FIELD_CHARS));
  }

  private summarizeClosed(now = Date.now()): void {
    for (const [ip, window] of this.refused.takeClosed(now)) this.summarize(ip, window);
  }

  /** One event for the refused requests of a minute that were counted but not recorded one by one. */
  private summarize(ip: string, window: Window): void {
    const unrecorded = window.count - this.refusedPerMinute;
    if (unrecorded <= 0) return;
    this.log.warn({ ip, unrecorded }, 'refused requests from one address beyond the audit limit were counted, not recorded one by one');
    this.events.add({
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
    return this.events.flush();
  }

  async query(filter: AuditFilter): Promise<AuditEvent[]> {
    await this.flush();
    return this.records.audit(filter);
  }

  close(): Promise<void> {
    clearInterval(this.summaries);
    this.summarizeClosed(Infinity);
    return this.events.close();
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
