import type { AuditEvent } from '../auth/records.js';

/**
 * The events of `incoming` that `present` (the rows already in the index over the same span of time) does not hold,
 * counted as a multiset: an event is the same as another when every field is, as a copied one is.
 */
export function eventsMissing(incoming: AuditEvent[], present: AuditEvent[]): AuditEvent[] {
  const held = new Map<string, number>();
  for (const e of present) held.set(signature(e), (held.get(signature(e)) ?? 0) + 1);
  return incoming.filter((e) => {
    const n = held.get(signature(e)) ?? 0;
    if (n > 0) held.set(signature(e), n - 1);
    return n === 0;
  });
}

/** The time span a batch of events covers, for the query that fetches what is present over it. */
export function spanOf(events: AuditEvent[]): { from: number; to: number } {
  let from = Infinity;
  let to = -Infinity;
  for (const e of events) {
    from = Math.min(from, e.at);
    to = Math.max(to, e.at);
  }
  return { from, to };
}

function signature(e: AuditEvent): string {
  return JSON.stringify([e.at, e.credential, e.ip, e.method, e.path, e.query, e.studyUid, e.seriesUid, e.sopUid, e.status, e.requestId]);
}
