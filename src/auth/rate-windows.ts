import { isIP } from 'node:net';

/** One key's count in the current window; `distinct` holds what was counted when only distinct items count. */
export type Window = { start: number; count: number; distinct?: Set<string>; flagged: boolean };

/**
 * Counts per key (an address, a key prefix) in fixed windows, in this process's memory only. At most `maxKeys`
 * keys are kept: a flood of new addresses pushes out the oldest windows, never grows memory.
 */
export class RateWindows {
  private readonly windows = new Map<string, Window>();

  constructor(
    readonly windowMs: number,
    private readonly maxKeys = 10_000,
    /** Told of a window pushed out before it closed, so that what it counted is not lost without a word. */
    private readonly evicted?: (key: string, window: Window) => void,
  ) {}

  /** The key's window now, if it has counted anything in it. */
  current(key: string, now = Date.now()): Window | undefined {
    const window = this.windows.get(key);
    return window && now - window.start < this.windowMs ? window : undefined;
  }

  /** Counts one for `key`, or one per distinct `item` when given (a client retrying one bad credential counts once). */
  add(key: string, item?: string, now = Date.now()): Window {
    let window = this.current(key, now);
    if (!window) {
      this.windows.delete(key);
      if (this.windows.size >= this.maxKeys) {
        const [oldest, old] = this.windows.entries().next().value!;
        this.windows.delete(oldest);
        this.evicted?.(oldest, old);
      }
      window = { start: now, count: 0, distinct: item === undefined ? undefined : new Set(), flagged: false };
      this.windows.set(key, window);
    }
    if (item === undefined) window.count += 1;
    else if (!window.distinct!.has(item)) {
      window.distinct!.add(item);
      window.count = window.distinct!.size;
    }
    return window;
  }

  /** Seconds until the key's window closes, at least 1. */
  retryAfter(window: Window, now = Date.now()): number {
    return Math.max(1, Math.ceil((window.start + this.windowMs - now) / 1000));
  }

  /** Removes and yields the windows that have closed, for a summary of what they counted. */
  *takeClosed(now = Date.now()): Generator<[string, Window]> {
    for (const [key, window] of this.windows) {
      if (now - window.start >= this.windowMs) {
        this.windows.delete(key);
        yield [key, window];
      }
    }
  }
}

/**
 * What a client's address is counted as: itself, or for IPv6 its /64, which one host is given whole and could
 * otherwise spend one address a request from.
 */
export function countedAddress(address: string): string {
  if (isIP(address) !== 6) return address;
  const [head = '', tail] = address.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
