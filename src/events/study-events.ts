import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Logger } from 'pino';
import { studyQuery, summary } from '../api/studies.js';
import type { Announcement, Catalog, Delivery, DeliveryOutcome, EventType, Webhook } from '../catalog/catalog.js';
import { send } from './send.js';
import { RepeatedTurn, type StopSignal } from '../stop-signal.js';

/** How often the index is asked for studies due and deliveries due: often enough to send within a second or two. */
const POLL_MS = 1000;
/** A try takes at most 10 s (send.ts); a replica that holds a delivery longer has gone away, and another takes it. */
const LEASE_MS = 60_000;
/** A delivery is tried for this long after it was made (or replayed), then given up. */
export const RETRY_FOR_MS = 24 * 3600_000;
/** The longest wait between tries, however many failed. */
const MAX_BACKOFF_MS = 3600_000;
/** Delivered and given-up deliveries are kept this long, for the admin page, then forgotten. */
const KEEP_MS = 30 * 24 * 3600_000;
const PRUNE_EVERY_MS = 3600_000;
/** Receivers tried at once: one that hangs holds one of these for its timeout, not the others. */
const SENDING_AT_ONCE = 4;
const BATCH = 100;

/**
 * Study-available events (issue 16). A study is announced once no instance has arrived for the quiet time, again when
 * more arrive later, and at once when it is deleted; each announcement puts a delivery per subscribed webhook in the
 * outbox in the transaction that marks it made, and deliveries are sent, signed, and retried with a doubling delay for
 * a day. Every replica runs this: the index's conditional updates let one announce a change and one send a delivery.
 */
export class StudyEvents {
  private readonly owner = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly turns: RepeatedTurn;
  private readonly signal: StopSignal;
  private prunedAt = 0;

  constructor(
    private readonly catalog: Catalog,
    private readonly log: Logger,
    private readonly timing: { quietMs: number; retryMs: number },
  ) {
    this.turns = new RepeatedTurn('study events', log, POLL_MS, async () => {
      const webhooks = await this.catalog.webhooks();
      await this.announceDue(webhooks);
      await this.sendDue(new Map(webhooks.map((w) => [w.id, w])));
      await this.prune();
    });
    this.signal = this.turns.signal;
  }

  start(): void {
    this.turns.start();
  }

  stop(): Promise<void> {
    return this.turns.stop();
  }

  private async announceDue(webhooks: Webhook[]): Promise<void> {
    const now = Date.now();
    for (const due of await this.catalog.dueAnnouncements(now - this.timing.quietMs, BATCH)) {
      if (this.signal.stopped) return;
      const event = await this.eventOf(due, now);
      const deliveries = event ? webhooks.filter((w) => w.events.includes(event.type)).map((w) => deliveryOf(w, event, due.studyUid, now)) : [];
      if (await this.catalog.announce(due, deliveries)) this.log.info({ studyUid: due.studyUid, event: event?.type ?? 'none', deliveries: deliveries.length }, 'study announced');
    }
  }

  /** The event for an announcement; none for a study deleted before it was ever announced. */
  private async eventOf(a: Announcement, now: number): Promise<StudyEvent | undefined> {
    const base = { id: randomUUID(), created_at: new Date(now).toISOString() };
    if (a.removed) {
      if (a.announcedVersion === 0) return undefined;
      return { ...base, type: 'study.deleted', study: { study_uid: a.studyUid, patient_id: a.patientId, accession_number: a.accessionNumber } };
    }
    const [row] = await this.catalog.studies(studyQuery([], a.studyUid, 1));
    // Gone since it was read: its deletion raised the version, and is announced at the next turn.
    if (!row) return undefined;
    return { ...base, type: 'study.available', study: { ...summary(row), announced_before: a.announcedVersion > 0 } };
  }

  private async sendDue(webhooks: Map<string, Webhook>): Promise<void> {
    const now = Date.now();
    const due = await this.catalog.dueDeliveries(now, BATCH);
    const queue = due.filter((d) => webhooks.has(d.webhookId));
    await Promise.all(
      Array.from({ length: Math.min(SENDING_AT_ONCE, queue.length) }, async () => {
        for (let d = queue.shift(); d && !this.signal.stopped; d = queue.shift()) await this.tryOnce(webhooks.get(d.webhookId)!, d);
      }),
    );
  }

  private async tryOnce(webhook: Webhook, delivery: Delivery): Promise<void> {
    const started = Date.now();
    if (!(await this.catalog.claimDelivery(delivery.id, this.owner, started + LEASE_MS, started))) return;
    const sent = await send(webhook, delivery);
    const now = Date.now();
    const attempts = delivery.attempts + 1;
    let outcome: DeliveryOutcome;
    if (sent.error === null) {
      outcome = { status: 'delivered', attempts, nextAttemptAt: now, lastStatus: sent.status, lastError: null, lastAttemptAt: now, deliveredAt: now };
    } else {
      const next = now + Math.min(this.timing.retryMs * 2 ** (attempts - 1), MAX_BACKOFF_MS);
      const status = next > delivery.giveUpAt ? 'failed' : 'pending';
      outcome = { status, attempts, nextAttemptAt: next, lastStatus: sent.status, lastError: sent.error.slice(0, 500), lastAttemptAt: now, deliveredAt: null };
    }
    await this.catalog.settleDelivery(delivery.id, this.owner, outcome);
    const fields = { delivery: delivery.id, webhook: webhook.id, event: delivery.eventType, studyUid: delivery.studyUid, attempts, status: sent.status };
    if (outcome.status === 'delivered') this.log.info(fields, 'webhook delivered');
    else if (outcome.status === 'failed') this.log.error({ ...fields, error: sent.error }, 'webhook delivery given up after a day of tries; replay it from the admin page once the receiver works');
    else this.log.warn({ ...fields, error: sent.error, nextAttemptAt: new Date(outcome.nextAttemptAt).toISOString() }, 'webhook delivery failed; it is tried again');
  }

  private async prune(): Promise<void> {
    const now = Date.now();
    if (now - this.prunedAt < PRUNE_EVERY_MS) return;
    this.prunedAt = now;
    await this.catalog.pruneDeliveries(now - KEEP_MS);
  }
}

/** What a receiver is sent (the body is signed as it is). */
type StudyEvent = { id: string; type: EventType; created_at: string; study: Record<string, unknown> };

function deliveryOf(webhook: Webhook, event: StudyEvent, studyUid: string, now: number): Delivery {
  return {
    id: randomUUID(),
    webhookId: webhook.id,
    eventType: event.type,
    studyUid,
    body: JSON.stringify(event),
    createdAt: now,
    status: 'pending',
    attempts: 0,
    nextAttemptAt: now,
    giveUpAt: now + RETRY_FOR_MS,
    lastStatus: null,
    lastError: null,
    lastAttemptAt: null,
    deliveredAt: null,
  };
}
