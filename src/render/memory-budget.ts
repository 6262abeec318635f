import { RenderError } from './types.js';

type Waiter = { bytes: number; admit: (release: () => void) => void };

/**
 * Admits work by the memory it will hold, not by count (DESIGN decision 12): renderings whose estimates fit in
 * the budget together run at once, the rest wait in order of arrival. One that needs more than the whole budget
 * runs alone, once nothing else holds any. First come, first served, so a large one is never starved by small ones.
 */
export class MemoryBudget {
  private used = 0;
  private readonly waiting: Waiter[] = [];

  constructor(
    readonly total: number,
    /** Renderings that may wait before more are refused with 503. */
    private readonly maxWaiting = 64,
  ) {}

  /** Resolves when `bytes` may be used, with the function that gives them back (call it once, when done). */
  async acquire(bytes: number): Promise<() => void> {
    if (this.waiting.length === 0 && this.fits(bytes)) return this.take(bytes);
    if (this.waiting.length >= this.maxWaiting) {
      throw new RenderError(503, `${this.waiting.length} renderings are already waiting for memory to decode in; try again shortly`);
    }
    return new Promise((admit) => this.waiting.push({ bytes, admit }));
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.total;
  }

  private take(bytes: number): () => void {
    this.used += bytes;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.used -= bytes;
      this.wake();
    };
  }

  private wake(): void {
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) {
      const next = this.waiting.shift()!;
      // Taken here, before its continuation runs, so that the next waiter sees it counted.
      next.admit(this.take(next.bytes));
    }
  }
}
