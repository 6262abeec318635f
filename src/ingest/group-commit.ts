import type { Logger } from 'pino';
import type { Catalog, Indexed, IndexOutcome } from '../catalog/catalog.js';
import type { IndexRecord } from '../catalog/record.js';
import { decideUploads, outcomeOf, takes } from '../catalog/decision.js';
import { DiskFull } from '../errors.js';
import { derivedPrefix, instanceKeyParts } from '../storage/keys.js';
import { deleteUnder, type ObjectStore } from '../storage/object-store.js';

type Item = { record: IndexRecord; localPath: string };
type Waiting = { records: IndexRecord[]; resolve: (r: Indexed) => void; reject: (e: unknown) => void };

/**
 * DESIGN decision 2, group commit, as a pipeline: each batch makes its objects durable as soon as its files are
 * synced, beside the others (concurrent folder syncs are shared, storage/coalesced-sync.ts); batches whose objects
 * are durable while the index is committing another group wait and are then indexed together, in one transaction.
 * So the fsyncs of one batch run while another is being indexed, and no batch waits for another's fsyncs.
 */
/**
 * Batches between their first look at the index and their outcome at once. Each holds a connection for its instance
 * locks on Postgres, and needs another now and then: well inside the pool's 10 (pg-pool.ts).
 */
const MAX_BATCHES_IN_FLIGHT = 4;

export class GroupCommit {
  private readonly indexQueue: Waiting[] = [];
  private indexing = false;
  /** Batches under way (shared turns), or -1 while an exclusive job runs. */
  private holders = 0;
  /** Turns not yet given, in order: a waiting exclusive job holds back the batches that come after it. */
  private readonly turns: Array<{ exclusive: boolean; start: () => void }> = [];

  constructor(
    private readonly store: ObjectStore,
    private readonly catalog: Catalog,
    private readonly overwrite: boolean,
    private readonly log?: Logger,
  ) {}

  /** Resolves once the objects are durable and indexed, with one outcome per item. */
  commit(items: Item[]): Promise<IndexOutcome[]> {
    return this.inTurn(false, () => this.catalog.withInstanceLocks(items.map((i) => i.record.sopUid), () => this.storeAndIndex(items)));
  }

  /**
   * Runs `work` while no batch is between its first look at the index and its outcome: a deletion then cannot remove
   * a file that an upload of the same instance has just moved into place and is about to index, and a verify pass
   * does not take such a file for an orphan. Batches that come meanwhile wait for it.
   */
  exclusive(work: () => Promise<void>): Promise<void> {
    return this.inTurn(true, work);
  }

  private async inTurn<T>(exclusive: boolean, work: () => Promise<T>): Promise<T> {
    await new Promise<void>((start) => {
      this.turns.push({ exclusive, start });
      this.giveTurns();
    });
    try {
      return await work();
    } finally {
      this.holders = exclusive ? 0 : this.holders - 1;
      this.giveTurns();
    }
  }

  private giveTurns(): void {
    for (let next = this.turns[0]; next; next = this.turns[0]) {
      const free = next.exclusive ? this.holders === 0 : this.holders >= 0 && this.holders < MAX_BATCHES_IN_FLIGHT;
      if (!free) return;
      this.turns.shift();
      this.holders = next.exclusive ? -1 : this.holders + 1;
      next.start();
    }
  }

  /**
   * Decided here first, to put no object for an upload the index already holds, and again by the index transaction
   * (decision.ts) against the rows as they are then: a batch indexed meanwhile may have stored the same instance.
   * Replicas sharing the index and the store decide one at a time too, per instance (Catalog.withInstanceLocks).
   * Every object put has a key of its own (storage/keys.ts), so no put ever touches bytes another upload or the index
   * relies on, and an object the index does not take is simply removed.
   */
  private async storeAndIndex(items: Item[]): Promise<IndexOutcome[]> {
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
      // Even with nothing to store: the answer then waits for the commit of whatever it found indexed.
      indexed = await this.index(toStore.map((i) => i.record));
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
    // A replaced instance's renderings go with its former bytes (their keys name those bytes' checksum anyway).
    for (const former of indexed.superseded.map(instanceKeyParts)) {
      if (!former) continue;
      await deleteUnder(this.store, derivedPrefix({ studyUid: former.studyUid, seriesUid: former.seriesUid, sopUid: former.sopUid }), (err, key) =>
        this.log?.warn({ err, objectKey: key }, 'derived object of a replaced instance left in the store'),
      );
    }
    return items.map((item, i) => outcomes.get(item) ?? outcomeOf(decisions[i]!));
  }

  /** Indexes these records with those of every batch that is ready meanwhile, in one transaction; this batch's share of it. */
  private index(records: IndexRecord[]): Promise<Indexed> {
    return new Promise((resolve, reject) => {
      this.indexQueue.push({ records, resolve, reject });
      if (!this.indexing) void this.drainIndexQueue();
    });
  }

  private async drainIndexQueue(): Promise<void> {
    this.indexing = true;
    while (this.indexQueue.length > 0) {
      const group = this.indexQueue.splice(0);
      try {
        const indexed = await this.catalog.index(group.flatMap((w) => w.records), this.overwrite);
        let at = 0;
        const shares = group.map((waiting) => ({ waiting, outcomes: indexed.outcomes.slice(at, (at += waiting.records.length)), superseded: [] as string[] }));
        // Each former version goes to the batch whose upload replaced it: in one group, one upload of an instance is stored.
        const storedBy = new Map(shares.flatMap((share) => share.waiting.records.filter((_, i) => share.outcomes[i] === 'stored').map((r) => [r.sopUid, share] as const)));
        for (const key of indexed.superseded) (storedBy.get(instanceKeyParts(key)?.sopUid ?? '') ?? shares[0]!).superseded.push(key);
        for (const { waiting, outcomes, superseded } of shares) waiting.resolve({ outcomes, superseded });
      } catch (e) {
        for (const waiting of group) waiting.reject(e);
      }
    }
    this.indexing = false;
  }

  /** Best effort: an object that cannot be removed now is logged, and `verify` reports it as unindexed. */
  private async removeObjects(keys: string[], leftover: string): Promise<void> {
    await Promise.all(keys.map((key) => this.store.delete(key).catch((err: unknown) => this.log?.error({ err, objectKey: key }, leftover))));
  }
}
