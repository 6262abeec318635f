import { and, eq, gte, lte, type Column, type SQL } from 'drizzle-orm';
import type { AuditFilter } from '../auth/records.js';

/** The WHERE of an audit trail search, over either dialect's audit_events table. */
export function auditWhere(filter: AuditFilter, events: { studyUid: Column; credential: Column; at: Column }): SQL | undefined {
  const where: SQL[] = [];
  if (filter.studyUid) where.push(eq(events.studyUid, filter.studyUid));
  if (filter.credential) where.push(eq(events.credential, filter.credential));
  if (filter.since !== undefined) where.push(gte(events.at, filter.since));
  if (filter.until !== undefined) where.push(lte(events.at, filter.until));
  return and(...where);
}
