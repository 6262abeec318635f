import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CatalogUnavailable, type Catalog } from '../../src/catalog/catalog.js';
import { SqliteCatalog } from '../../src/catalog/sqlite.js';
import { newUid } from '../../src/dicom/write.js';
import { GroupCommit } from '../../src/ingest/group-commit.js';
import { FailureReason, IngestBatch, type IngestDeps, type InstanceOutcome } from '../../src/ingest/ingest.js';
import { FileObjectStore } from '../../src/storage/fs.js';
import { StoreUnavailable, type ObjectStore } from '../../src/storage/object-store.js';
import { syntheticInstance } from '../fixtures/synthetic.js';

/** The filesystem store, failing from its Nth object put on (counted across putFiles batches). */
class FailingStore extends FileObjectStore {
  private puts = 0;
  constructor(
    root: string,
    private readonly failAt: number,
    private readonly failure: () => Error,
  ) {
    super(root);
  }
  override async putFiles(batch: ReadonlyArray<{ key: string; localPath: string; sha256: string }>): Promise<void> {
    const fine = batch.slice(0, Math.max(0, this.failAt - 1 - this.puts));
    this.puts += batch.length;
    await super.putFiles(fine);
    if (fine.length < batch.length) throw this.failure();
  }
}

/** The index, with its database gone away for the calls named. */
function away(catalog: Catalog, calls: Array<keyof Catalog>): Catalog {
  return new Proxy(catalog, {
    get(target, name, receiver) {
      if (calls.includes(name as keyof Catalog)) return () => Promise.reject(new CatalogUnavailable('the database is away'));
      const value = Reflect.get(target, name, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const silent = pino({ level: 'silent' });
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

let dir: string;
let catalog: SqliteCatalog;
let store: FileObjectStore;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ingest-batch-'));
  await fs.mkdir(path.join(dir, 'spool'));
  catalog = SqliteCatalog.open(dir);
  store = await new FileObjectStore(path.join(dir, 'objects')).init();
});
afterEach(async () => {
  await catalog.close();
  await fs.rm(dir, { recursive: true, force: true });
});

function deps(options: { overwrite?: boolean; store?: ObjectStore; catalog?: Catalog } = {}): IngestDeps {
  return {
    durable: new GroupCommit(options.store ?? store, options.catalog ?? catalog, options.overwrite ?? false, silent),
    spoolDir: path.join(dir, 'spool'),
    maxInstanceBytes: 64 * 1024 * 1024,
    log: silent,
  };
}

/** One batch of these bodies: the outcome of each, in order. */
async function ingest(d: IngestDeps, bodies: Buffer[]): Promise<InstanceOutcome[]> {
  const batch = new IngestBatch(d);
  const receipts = [];
  for (const body of bodies) receipts.push(await batch.add(Readable.from([body])));
  await batch.commit();
  return Promise.all(receipts.map((r) => r.outcome));
}

async function objects(): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of store.list('studies/')) keys.push(key);
  return keys.sort();
}

async function indexed(): Promise<Map<string, string>> {
  const rows = new Map<string, string>();
  for await (const o of catalog.allObjects()) rows.set(o.sopUid, o.sha256);
  return rows;
}

async function shaOfObject(key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of await store.get(key)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function spoolLeft(): Promise<string[]> {
  return fs.readdir(path.join(dir, 'spool'));
}

const study = newUid();
const instance = (sopInstanceUID: string, patientName = 'Doe^Jane') => syntheticInstance({ studyUID: study, sopInstanceUID, patientName });

describe('IngestBatch over GroupCommit, SQLite and a filesystem store', () => {
  it('stores new instances and tells each one stored, with its UIDs', async () => {
    const bodies = [instance(newUid()), instance(newUid())];
    const outcomes = await ingest(deps(), bodies);
    expect(outcomes.map((o) => o.status)).toEqual(['stored', 'stored']);
    expect(outcomes[0]).toMatchObject({ studyUid: study, sopInstanceUid: expect.any(String), seriesUid: expect.any(String), sopClassUid: expect.any(String) });
    expect([...(await indexed()).values()].sort()).toEqual(bodies.map(sha).sort());
    expect(await objects()).toHaveLength(2);
    expect(await spoolLeft()).toEqual([]);
  });

  it('acknowledges the same bytes as a duplicate and refuses other bytes, keeping the first', async () => {
    const sop = newUid();
    const first = instance(sop, 'First^One');
    await ingest(deps(), [first]);
    const [again, other] = await ingest(deps(), [first, instance(sop, 'Other^One')]);
    expect(again).toMatchObject({ status: 'duplicate', sopInstanceUid: sop });
    expect(other).toMatchObject({ status: 'failed', failureReason: FailureReason.DuplicateSopInstance, sopInstanceUid: sop });
    expect(await indexed()).toEqual(new Map([[sop, sha(first)]]));
    const [key] = await objects();
    expect(await shaOfObject(key!)).toBe(sha(first));
    expect(await spoolLeft()).toEqual([]);
  });

  it('replaces other bytes when overwriting is allowed', async () => {
    const sop = newUid();
    await ingest(deps(), [instance(sop, 'First^One')]);
    const second = instance(sop, 'Second^One');
    expect(await ingest(deps({ overwrite: true }), [second])).toMatchObject([{ status: 'stored', sopInstanceUid: sop }]);
    expect(await indexed()).toEqual(new Map([[sop, sha(second)]]));
    const [key, ...others] = await objects();
    expect(others, 'the former version is removed').toEqual([]);
    expect(await shaOfObject(key!)).toBe(sha(second));
  });

  it('reads a store written before versions in place, and replaces its instance with a version of its own', async () => {
    const sop = newUid();
    const first = instance(sop, 'First^One');
    const [stored] = await ingest(deps(), [first]);
    // What a store from before versions holds: the object at <sop>.dcm, and the row naming it.
    const legacy = `studies/${study}/series/${stored!.seriesUid}/instances/${sop}.dcm`;
    const [versioned] = await objects();
    await fs.rename(path.join(store.root, versioned!), path.join(store.root, legacy));
    const db = new Database(path.join(dir, 'index.sqlite'));
    db.prepare('UPDATE instances SET object_key = ? WHERE sop_uid = ?').run(legacy, sop);
    db.close();
    expect(await ingest(deps(), [first])).toMatchObject([{ status: 'duplicate' }]);
    expect(await objects()).toEqual([legacy]);
    const second = instance(sop, 'Second^One');
    expect(await ingest(deps({ overwrite: true }), [second])).toMatchObject([{ status: 'stored' }]);
    const [key, ...others] = await objects();
    expect(others, 'the former object is removed').toEqual([]);
    expect(key).toMatch(new RegExp(`/instances/${sop.replaceAll('.', '\\.')}_[0-9a-f]{16}-[0-9a-f]{12}\\.dcm$`));
    expect(await shaOfObject(key!)).toBe(sha(second));
  });

  it('stores an instance sent twice in one batch once, and refuses other bytes for it in the same batch', async () => {
    const sop = newUid();
    const first = instance(sop, 'First^One');
    const outcomes = await ingest(deps({ overwrite: true }), [first, first, instance(sop, 'Other^One')]);
    expect(outcomes.map((o) => o.status)).toEqual(['stored', 'duplicate', 'failed']);
    expect(await indexed()).toEqual(new Map([[sop, sha(first)]]));
    expect(await objects()).toHaveLength(1);
  });

  it('lets the first of two racing batches of one instance win', async () => {
    const sop = newUid();
    const d = deps();
    const [a, b] = [instance(sop, 'Racer^A'), instance(sop, 'Racer^B')];
    const [fromA, fromB] = await Promise.all([ingest(d, [a]), ingest(d, [b])]);
    expect([fromA[0]!.status, fromB[0]!.status].sort()).toEqual(['failed', 'stored']);
    const winner = fromA[0]!.status === 'stored' ? a : b;
    expect(await indexed()).toEqual(new Map([[sop, sha(winner)]]));
    const [key] = await objects();
    expect(await shaOfObject(key!)).toBe(sha(winner));
  });

  it('fails an empty or unreadable part at once, and its neighbours go on', async () => {
    const batch = new IngestBatch(deps());
    const empty = await batch.add(Readable.from([Buffer.alloc(0)]));
    const junk = await batch.add(Readable.from([Buffer.from('not a DICOM file at all')]));
    const good = await batch.add(Readable.from([instance(newUid())]));
    expect(await empty.outcome).toMatchObject({ status: 'failed', failureReason: FailureReason.CannotUnderstand });
    expect(await junk.outcome).toMatchObject({ status: 'failed', failureReason: FailureReason.CannotUnderstand });
    await batch.commit();
    expect(await good.outcome).toMatchObject({ status: 'stored' });
  });

  it('fails a batch whose store fails on its Nth put as a processing failure, and keeps nothing of it', async () => {
    const failing = await new FailingStore(path.join(dir, 'objects'), 2, () => new Error('EIO on the third disk')).init();
    const outcomes = await ingest(deps({ store: failing }), [instance(newUid()), instance(newUid()), instance(newUid())]);
    expect(outcomes.map((o) => o.status === 'failed' && o.failureReason)).toEqual([FailureReason.ProcessingFailure, FailureReason.ProcessingFailure, FailureReason.ProcessingFailure]);
    expect(await objects()).toEqual([]);
    expect(await indexed()).toEqual(new Map());
    expect(await spoolLeft()).toEqual([]);
  });

  it('rejects the whole batch while the store is away, with every outcome, and keeps nothing', async () => {
    const failing = await new FailingStore(path.join(dir, 'objects'), 1, () => new StoreUnavailable('test store', 'unreachable')).init();
    const batch = new IngestBatch(deps({ store: failing }));
    const receipt = await batch.add(Readable.from([instance(newUid())]));
    await expect(batch.commit()).rejects.toBeInstanceOf(StoreUnavailable);
    await expect(receipt.outcome).rejects.toBeInstanceOf(StoreUnavailable);
    expect(await objects()).toEqual([]);
    expect(await spoolLeft()).toEqual([]);
  });

  it('rejects the whole batch while the index is away, before any object is put', async () => {
    const batch = new IngestBatch(deps({ catalog: away(catalog, ['checksumsOf', 'index']) }));
    const receipt = await batch.add(Readable.from([instance(newUid())]));
    await expect(batch.commit()).rejects.toBeInstanceOf(CatalogUnavailable);
    await expect(receipt.outcome).rejects.toBeInstanceOf(CatalogUnavailable);
    expect(await objects()).toEqual([]);
    expect(await indexed()).toEqual(new Map());
    expect(await spoolLeft()).toEqual([]);
  });

  it('goes on storing once the index is back', async () => {
    const d = deps({ catalog: away(catalog, ['index']) });
    await expect(ingest(d, [instance(newUid())])).rejects.toBeInstanceOf(CatalogUnavailable);
    expect(await indexed()).toEqual(new Map());
    expect(await ingest(deps(), [instance(newUid())])).toMatchObject([{ status: 'stored' }]);
  });

  it('drops everything received when the batch is aborted', async () => {
    const batch = new IngestBatch(deps());
    const receipt = await batch.add(Readable.from([instance(newUid())]));
    await batch.abort();
    await expect(receipt.outcome).rejects.toThrow(/aborted/);
    expect(await spoolLeft()).toEqual([]);
    expect(await objects()).toEqual([]);
  });
});
