import { and, asc, desc, eq, inArray, lt, lte, or, sql } from 'drizzle-orm';
import type { Announcement, Delivery, DeliveryOutcome, DeliverySearch, EventType, Webhook, WebhookRecords } from './catalog.js';
import type { IndexTables } from './index-tables.js';
import { execute, type Plan } from './plan.js';
import { assignments, changed, columnsOf, insertInto, ListStatement, SelectList, type Run } from './sql-rows.js';

type Tables = Pick<IndexTables, 'studies' | 'studyAnnouncements' | 'webhooks' | 'webhookDeliveries'>;
type WebhookRow = Omit<Webhook, 'events'> & { events: string };

/** WebhookRecords over the webhooks, study_announcements and webhook_deliveries tables, one text of SQL for both dialects. */
export class SqlWebhooks implements WebhookRecords {
  private readonly hooks: SelectList<WebhookRow>;
  private readonly outbox: SelectList<Delivery>;
  private readonly due: SelectList<Announcement>;

  constructor(
    private readonly t: Tables,
    private readonly read: Run,
    private readonly write: Run,
  ) {
    this.hooks = new SelectList(columnsOf(t.webhooks));
    const { leaseOwner: _owner, leaseUntil: _until, ...delivery } = columnsOf(t.webhookDeliveries);
    this.outbox = new SelectList<Delivery>(delivery);
    this.due = new SelectList(columnsOf(t.studyAnnouncements));
  }

  async webhooks(): Promise<Webhook[]> {
    const rows = await this.read(this.hooks.select(sql`FROM ${this.t.webhooks} ORDER BY ${asc(this.t.webhooks.createdAt)}, ${asc(this.t.webhooks.id)}`));
    return rows.map((r) => ({ ...r, events: r.events.split(',') as EventType[] }));
  }

  async addWebhook(webhook: Webhook): Promise<void> {
    await this.write(insertInto(this.t.webhooks, [{ ...webhook, events: webhook.events.join(',') }]));
  }

  async removeWebhook(id: string): Promise<boolean> {
    const { webhooks: w, webhookDeliveries: d } = this.t;
    return this.write(
      (function* () {
        yield* execute(sql`DELETE FROM ${d} WHERE ${eq(d.webhookId, id)}`);
        return (yield* changed(sql`DELETE FROM ${w} WHERE ${eq(w.id, id)}`, w.id)) > 0;
      })(),
    );
  }

  dueAnnouncements(quietSince: number, limit: number): Promise<Announcement[]> {
    const a = this.t.studyAnnouncements;
    return this.read(
      this.due.select(sql`FROM ${a} WHERE ${lt(a.announcedVersion, a.version)} AND (${a.removed} OR ${lte(a.changedAt, quietSince)}) ORDER BY ${a.changedAt} LIMIT ${limit}`),
    );
  }

  announce(announcement: Announcement, deliveries: Delivery[]): Promise<boolean> {
    const { studyAnnouncements: a, webhookDeliveries: d } = this.t;
    return this.write(
      (function* () {
        const unchanged = and(eq(a.studyUid, announcement.studyUid), eq(a.version, announcement.version), lt(a.announcedVersion, a.version));
        const won = yield* changed(sql`UPDATE ${a} SET ${assignments(a, { announcedVersion: announcement.version })} WHERE ${unchanged}`, a.studyUid);
        if (won === 0) return false;
        if (announcement.removed) yield* execute(sql`DELETE FROM ${a} WHERE ${eq(a.studyUid, announcement.studyUid)}`);
        yield* insertInto(d, deliveries.map((delivery) => ({ ...delivery, leaseOwner: null, leaseUntil: 0 })));
        return true;
      })(),
    );
  }

  dueDeliveries(now: number, limit: number): Promise<Delivery[]> {
    const d = this.t.webhookDeliveries;
    return this.read(this.outbox.select(sql`FROM ${d} WHERE ${and(eq(d.status, 'pending'), lte(d.nextAttemptAt, now), lt(d.leaseUntil, now))} ORDER BY ${d.nextAttemptAt} LIMIT ${limit}`));
  }

  async claimDelivery(id: string, owner: string, leaseUntil: number, now: number): Promise<boolean> {
    const d = this.t.webhookDeliveries;
    const free = and(eq(d.id, id), eq(d.status, 'pending'), lte(d.nextAttemptAt, now), lt(d.leaseUntil, now));
    return (await this.write(changed(sql`UPDATE ${d} SET ${assignments(d, { leaseOwner: owner, leaseUntil })} WHERE ${free}`, d.id))) > 0;
  }

  async settleDelivery(id: string, owner: string, outcome: DeliveryOutcome): Promise<void> {
    const d = this.t.webhookDeliveries;
    await this.write(execute(sql`UPDATE ${d} SET ${assignments(d, { ...outcome, leaseOwner: null, leaseUntil: 0 })} WHERE ${and(eq(d.id, id), eq(d.leaseOwner, owner))}`));
  }

  deliveries(search: DeliverySearch): Promise<Delivery[]> {
    const d = this.t.webhookDeliveries;
    const conditions = [search.webhookId === undefined ? undefined : eq(d.webhookId, search.webhookId), search.status === undefined ? undefined : eq(d.status, search.status)].filter(
      (c) => c !== undefined,
    );
    const where = conditions.length > 0 ? sql`WHERE ${and(...conditions)}` : sql``;
    return this.read(this.outbox.select(sql`FROM ${d} ${where} ORDER BY ${desc(d.createdAt)}, ${desc(d.id)} LIMIT ${search.limit} OFFSET ${search.offset}`));
  }

  async delivery(id: string): Promise<Delivery | undefined> {
    const d = this.t.webhookDeliveries;
    const [row] = await this.read(this.outbox.select(sql`FROM ${d} WHERE ${eq(d.id, id)}`));
    return row;
  }

  replayDelivery(id: string, now: number, giveUpAt: number): Promise<Delivery | undefined> {
    const { t, outbox } = this;
    const d = t.webhookDeliveries;
    return this.write(
      (function* (): Plan<Delivery | undefined> {
        // A try under way keeps its lease: its outcome is settled, then the replay's tries follow.
        yield* execute(sql`UPDATE ${d} SET ${assignments(d, { status: 'pending', nextAttemptAt: now, giveUpAt })} WHERE ${eq(d.id, id)}`);
        const [row] = yield* outbox.select(sql`FROM ${d} WHERE ${eq(d.id, id)}`);
        return row;
      })(),
    );
  }

  pruneDeliveries(before: number): Promise<number> {
    const d = this.t.webhookDeliveries;
    return this.write(changed(sql`DELETE FROM ${d} WHERE ${and(lt(d.createdAt, before), or(eq(d.status, 'delivered'), eq(d.status, 'failed')))}`, d.id));
  }
}

/**
 * In the index transaction that stored into or removed from these studies: each one's version goes up, so that it is
 * announced (again) once quiet, with the patient and accession it has now.
 */
export function* touchAnnouncements(t: Tables, studyUids: string[], now: number, chunk: number): Plan<void> {
  let touch = touches.get(t.studyAnnouncements);
  if (!touch) touches.set(t.studyAnnouncements, (touch = touchStatement(t)));
  yield* touch.rows(studyUids, chunk, { now });
}

/** Built once per schema: each commit of an upload runs it, and rendering and preparing it cost more than running it. */
const touches = new WeakMap<object, ListStatement>();

function touchStatement(t: Tables): ListStatement {
  const { studies: s, studyAnnouncements: a } = t;
  return new ListStatement(
    s.studyUid,
    (inList) => sql`INSERT INTO ${a} (${column(a.studyUid)}, ${column(a.version)}, ${column(a.announcedVersion)}, ${column(a.changedAt)}, ${column(a.removed)}, ${column(a.patientId)}, ${column(a.accessionNumber)})
      SELECT ${s.studyUid}, 1, 0, ${sql.param(sql.placeholder('now'), a.changedAt)}, false, ${s.patientId}, ${s.accessionNumber} FROM ${s} WHERE ${inList}
      ON CONFLICT (${column(a.studyUid)}) DO UPDATE SET ${column(a.version)} = ${a}.${column(a.version)} + 1, ${column(a.changedAt)} = excluded.${column(a.changedAt)},
        ${column(a.removed)} = false, ${column(a.patientId)} = excluded.${column(a.patientId)}, ${column(a.accessionNumber)} = excluded.${column(a.accessionNumber)}`,
  );
}

/** In the same transaction, after touchAnnouncements: these studies are gone whole. */
export function* markRemoved(t: Tables, studyUids: string[], chunk: number): Plan<void> {
  const a = t.studyAnnouncements;
  for (let i = 0; i < studyUids.length; i += chunk) {
    yield* execute(sql`UPDATE ${a} SET ${column(a.removed)} = true WHERE ${inArray(a.studyUid, studyUids.slice(i, i + chunk))}`);
  }
}

/** A column by its bare name, as INSERT's column list and SET want it. */
function column(c: { name: string }) {
  return sql.identifier(c.name);
}
