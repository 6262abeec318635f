import { describe, expect, it } from 'vitest';
import { readAhead, ReadAheadBudget } from '../../src/read/read-ahead.js';

/** Items of `size` bytes whose bodies say when they are opened. */
function items(count: number, size: number, opened: number[]) {
  return Array.from({ length: count }, (_, i) => ({
    size,
    body: async function* () {
      opened.push(i);
      yield new Uint8Array(size).fill(i);
    },
  }));
}

async function consume(body: AsyncIterable<Uint8Array>): Promise<number[]> {
  const bytes: number[] = [];
  for await (const chunk of body) bytes.push(...chunk);
  return bytes;
}

describe('read-ahead', () => {
  it('reads ahead only what the budget shared by all responses allows, and gives it back as bodies are sent', async () => {
    const budget = new ReadAheadBudget(300);
    const opened: number[] = [];
    const sent: number[] = [];
    for await (const item of readAhead(items(10, 100, opened), 8, 1000, budget)) {
      // Of the 8 files it may read ahead, only the budget's three are read at once, this one among them.
      expect(opened.length).toBeLessThanOrEqual(sent.length + 3);
      sent.push((await consume(item.body()))[0]!);
    }
    expect(sent).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(opened).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(budget.take(300), 'the whole budget is free again').toBe(true);
  });

  it('sends every file when another response holds the whole budget, reading each as it is reached', async () => {
    const budget = new ReadAheadBudget(300);
    expect(budget.take(300)).toBe(true);
    const opened: number[] = [];
    const sent: number[] = [];
    for await (const item of readAhead(items(5, 100, opened), 8, 1000, budget)) {
      expect(opened).toEqual(sent);
      sent.push((await consume(item.body()))[0]!);
    }
    expect(sent).toEqual([0, 1, 2, 3, 4]);
    budget.give(300);
  });

  it('gives back what it read ahead for a client that went away, once those reads end', async () => {
    const budget = new ReadAheadBudget(500);
    const opened: number[] = [];
    for await (const item of readAhead(items(10, 100, opened), 8, 1000, budget)) {
      await consume(item.body());
      break;
    }
    await new Promise((r) => setImmediate(r));
    expect(budget.take(500), 'the whole budget is free again').toBe(true);
  });
});
