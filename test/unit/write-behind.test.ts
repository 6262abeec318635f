import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { WriteBehind } from '../../src/catalog/write-behind.js';

/**
 * The audit trail's and the upload log's writer: records written together; a batch the index refuses for one of its
 * records writes the others and drops that one; an index that is down keeps them all for the next try.
 */
const silent = pino({ level: 'silent' });

describe('WriteBehind', () => {
  it('writes the records handed in before a flush in one batch', async () => {
    const batches: number[][] = [];
    const queue = new WriteBehind<number>(async (batch) => void batches.push(batch), silent, 'records');
    for (const n of [1, 2, 3]) queue.add(n);
    await queue.flush();
    expect(batches).toEqual([[1, 2, 3]]);
  });

  it('drops only the record the index refuses, and writes the others', async () => {
    const stored: number[] = [];
    const queue = new WriteBehind<number>(
      async (batch) => {
        if (batch.includes(2)) throw new Error('constraint failed');
        stored.push(...batch);
      },
      silent,
      'records',
    );
    for (const n of [1, 2, 3]) queue.add(n);
    await queue.flush();
    queue.add(4);
    await queue.close();
    expect(stored).toEqual([1, 3, 4]);
  });

  it('keeps every record while the index is down, and writes them once it is back', async () => {
    let down = true;
    const stored: number[] = [];
    const queue = new WriteBehind<number>(
      async (batch) => {
        if (down) throw new Error('the index is unreachable');
        stored.push(...batch);
      },
      silent,
      'records',
    );
    for (const n of [1, 2, 3, 4, 5]) queue.add(n);
    await queue.flush();
    expect(stored).toEqual([]);
    down = false;
    await queue.close();
    expect(stored).toEqual([1, 2, 3, 4, 5]);
  });
});
