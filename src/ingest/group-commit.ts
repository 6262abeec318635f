import type { Logger } from 'pino';
import type { Catalog, Indexed, IndexOutcome } from '../catalog/catalog.js';
import type { IndexRecord } from '../catalog/record.js';
import { decideUploads, outcomeOf, takes } from '../catalog/decision.js';
import { DiskFull } from '../errors.js';
import { derivedPrefix } from '../storage/keys.js';
import { deleteUnder, type ObjectStore } from '../storage/object-store.js';

type Item = { record: IndexRecord; localPath: string };
type Waiting = { items: Item[]; resolve: (r: IndexOutcome[]) => void; reject: (e: unknown) => void };
type Job = { run: () => Promise<void>; resolve: () => void; reject: (e: unknown) => void };

/**
 * DESIGN decision 2, group commit: batches that finish receiving while another is being made durable
 * wait and then go together, so concurrent uploads share one round of fsyncs and one index transaction.
 */
export class GroupCommit {
  private readonly queue: Array<Waiting | Job> = [];
  private running = false;

  constructor(
    private readonly store: ObjectStore,
    private readonly catalog: Catalog,
    private readonly overwrite: boolean,
    private readonly log?: Logger,
  ) {}

  /** Resolves once the objects are durable and indexed, with one outcome per item. */
  commit(items: Item[]): Promise<IndexOutcome[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ items, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  /**
   * Runs `work` between groups, never beside one: a deletion then cannot remove a file that an upload
   * of the same instance has just moved into place and is about to index.
   */
  exclusive(work: () => Promise<void>): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ run: work, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) {
      const first = this.queue[0]!;
      if ('run' in first) {
        this.queue.shift();
        await first.run().then(first.resolve, first.reject);
        continue;
      }
      const jobAt = this.queue.findIndex((w) => 'run' in w);
      const group = this.queue.splice(0, jobAt < 0 ? this.queue.length : jobAt) as Waiting[];
      const items = group.flatMap((w) => w.items);
      try {
        const outcomes = await this.storeGroup(items);
        let at = 0;
        for (const waiting of group) {
          waiting.resolve(outcomes.slice(at, at + waiting.items.length));
          at += waiting.items.length;
        }
      } catch (e) {
        for (const waiting of group) waiting.reject(e);
      }
    }
    this.running = false;
  }

  /**
   * Decided here, where groups go one at a time, and again by the index transaction (decision.ts). Replicas sharing
   * the index and the store decide one at a time too, per instance (Catalog.withInstanceLocks). Every object put has
   * a key of its own (storage/keys.ts), so no put ever touches bytes another upload or the index relies on.
   */
  private storeGroup(items: Item[]): Promise<IndexOutcome[]> {
    return this.catalog.withInstanceLocks(
      items.map((i) => i.record.sopUid),
      () => this.storeLockedGroup(items),
    );
  }

  private async storeLockedGroup(items: Item[]): Promise<IndexOutcome[]> {
    const known = await this.catalog.checksumsOf(items.map((i) => i.record.sopUid));
    const decisions = decideUploads(items.map((i) => i.record), known, this.overwrite);
    const toStore = items.filter((_, i) => takes(decisions[i]!));
    const ownKeys = (of: Item[]) => of.map((i) => i.record.objectKey);
    // A refused write leaves nothing behind (DESIGN decision 11): no object without its row.
    try {
      await this.store.putFiles(toStore.map((i) => ({ key: i.record.objectKey, localPath: i.localPath, sha256: i.record.sha256 })));
    } catch (e) {
      await this.removeObjects(ownKeys(toStore), 'object of a refused upload left in the store');
      throw e;
    }
    let indexed: Indexed;
    try {
      indexed = await this.catalog.index(toStore.map((i) => i.record), this.overwrite);
    } catch (e) {
      // A full disk surely rolled the transaction back. Another failure (a connection lost in the commit) may not
      // have: its objects stay, since a row without its object would be worse, and `verify` finds them.
      if (DiskFull.of(e)) await this.removeObjects(ownKeys(toStore), 'object of a refused upload left in the store');
      throw e;
    }
    const outcomes = new Map(toStore.map((item, n) => [item, indexed.outcomes[n]!]));
    await this.removeObjects(ownKeys(toStore.filter((i) => outcomes.get(i) !== 'stored')), 'object of an upload the index did not take left in the store');
    // The former versions go once the switch has committed, as the transaction named them (a deletion may have come first).
    await this.removeObjects(indexed.superseded, 'former version of a replaced instance left in the store');
    const replaced = items.filter((item, i) => decisions[i] === 'replace' && outcomes.get(item) === 'stored');
    // An overwritten instance's renderings go with its former bytes (their keys name those bytes' checksum anyway).
    for (const { record } of replaced) {
      await deleteUnder(this.store, derivedPrefix({ studyUid: record.studyUid, seriesUid: record.seriesUid, sopUid: record.sopUid }), (err, key) =>
        this.log?.warn({ err, objectKey: key }, 'derived object of a replaced instance left in the store'),
      );
    }
    return items.map((item, i) => outcomes.get(item) ?? outcomeOf(decisions[i]!));
  }

  /** Best effort: an object that cannot be removed now is logged, and `verify` reports it as unindexed. */
  private async removeObjects(keys: string[], leftover: string): Promise<void> {
    await Promise.all(keys.map((key) => this.store.delete(key).catch((err: unknown) => this.log?.error({ err, objectKey: key }, leftover))));
  }
}
