import fs, { type FileHandle } from 'node:fs/promises';

/**
 * Group fsync of one file or folder: callers that need it on disk share a sync, provided it starts after they ask
 * (one already under way may have begun before their change). Any number of callers cost at most two syncs in a row,
 * not one each, and nobody waits for more than the one under way and the next.
 */
export class CoalescedSync {
  private readonly pending = new Map<string, { running: Promise<void>; next?: Promise<void> }>();

  constructor(private readonly flush: (file: string) => Promise<void> = fsyncPath) {}

  /** Resolves once `file` has been synced by a sync that began after this call. */
  sync(file: string): Promise<void> {
    const entry = this.pending.get(file);
    if (!entry) return this.run(file);
    entry.next ??= entry.running.then(settle, settle).then(() => this.run(file));
    return entry.next;
  }

  private run(file: string): Promise<void> {
    const running = this.flush(file);
    this.pending.set(file, { running });
    void running.then(settle, settle).then(() => {
      const entry = this.pending.get(file);
      if (entry?.running === running && !entry.next) this.pending.delete(file);
    });
    return running;
  }
}

function settle(): void {}

/** fsync of a file or a folder (a folder's sync makes the names created or renamed in it durable). */
export async function fsyncPath(file: string): Promise<void> {
  await syncAndClose(await fs.open(file, 'r'), (handle) => handle.sync());
}

/**
 * Runs a sync on an open file and closes it, without waiting for the close once the sync has succeeded: closing cannot
 * undo it, and a commit waits for one thread-pool round trip less.
 */
export async function syncAndClose(handle: FileHandle, sync: (handle: FileHandle) => Promise<void>): Promise<void> {
  try {
    await sync(handle);
  } catch (e) {
    await handle.close().catch(() => undefined);
    throw e;
  }
  void handle.close().catch(() => undefined);
}
