import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuthFailures, TooManyFailures } from '../../src/auth/auth-failures.js';
import { RateWindows, countedAddress } from '../../src/auth/rate-windows.js';

/** The counting behind 429s for guessed credentials, in memory (issue 10). */

const guess = () => `pacs_${randomBytes(24).toString('base64url')}`;

/** Fails `count` distinct guesses from the addresses `at(i)` gives; the limits reached on the way. */
function failMany(failures: AuthFailures, count: number, at: (i: number) => string, key: () => string = guess) {
  return Array.from({ length: count }, (_, i) => failures.fail(at(i), key())).flat();
}

describe('countedAddress', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['2001:db8:1:2:aaaa:bbbb:cccc:dddd', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002::1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1:2:3:4', 'fe80:0:0:0::/64'],
  ])('counts %s as %s', (address, counted) => {
    expect(countedAddress(address)).toBe(counted);
  });
});

describe('AuthFailures', () => {
  it('refuses an address once it sent `limit` distinct failed credentials, and says so once', () => {
    const failures = new AuthFailures(5);
    const reached = failMany(failures, 5, () => '203.0.113.7');
    expect(reached).toEqual([{ by: 'address', address: '203.0.113.7' }]);
    expect(() => failures.check('203.0.113.7', guess())).toThrow(TooManyFailures);
    expect(() => failures.check('203.0.113.8', guess())).not.toThrow();
    // Past the limit nothing more is announced for this window.
    expect(failMany(failures, 3, () => '203.0.113.7')).toEqual([]);
  });

  it('counts an IPv6 client by its /64, which it could otherwise walk through', () => {
    const failures = new AuthFailures(5);
    failMany(failures, 5, (i) => `2001:db8:1:2::${i + 1}`);
    expect(() => failures.check('2001:db8:1:2:ffff::9', guess())).toThrow(TooManyFailures);
    expect(() => failures.check('2001:db8:1:3::1', guess())).not.toThrow();
  });

  it('refuses a key prefix guessed from many addresses, and not other prefixes or viewer tokens', () => {
    const failures = new AuthFailures(5);
    const reached = failMany(failures, 5, (i) => `198.51.100.${i}`, () => `pacs_AbCd${randomBytes(20).toString('base64url')}`);
    expect(reached).toEqual([{ by: 'key-prefix', prefix: 'pacs_AbCd' }]);
    const error = (() => {
      try {
        failures.check('198.51.100.200', 'pacs_AbCdwhatever');
      } catch (e) {
        return e as TooManyFailures;
      }
    })();
    expect(error?.status).toBe(429);
    expect(Number(error?.headers['Retry-After'])).toBeGreaterThanOrEqual(59);
    expect(() => failures.check('198.51.100.200', 'pacs_XyZwwhatever')).not.toThrow();
    expect(() => failures.check('198.51.100.200', 'eyJhbGciOiJIUzI1NiJ9.e30.sig')).not.toThrow();
  });

  it('counts one credential sent again and again once', () => {
    const failures = new AuthFailures(5);
    const stale = guess();
    expect(failMany(failures, 50, () => '203.0.113.9', () => stale)).toEqual([]);
    expect(() => failures.check('203.0.113.9', stale)).not.toThrow();
  });
});

describe('RateWindows', () => {
  it('starts a new window when the old one is over', () => {
    const windows = new RateWindows(1000);
    expect(windows.add('a', undefined, 0).count).toBe(1);
    expect(windows.add('a', undefined, 999).count).toBe(2);
    expect(windows.add('a', undefined, 1000).count).toBe(1);
  });

  it('keeps at most maxKeys windows, telling of each one pushed out', () => {
    const evicted: string[] = [];
    const windows = new RateWindows(60_000, 3, (key) => evicted.push(key));
    for (const key of ['a', 'b', 'c', 'd', 'e']) windows.add(key, undefined, 0);
    expect(evicted).toEqual(['a', 'b']);
    expect(windows.current('a', 1)).toBeUndefined();
    expect(windows.current('e', 1)?.count).toBe(1);
  });

  it('hands over closed windows once', () => {
    const windows = new RateWindows(1000);
    windows.add('a', undefined, 0);
    windows.add('b', undefined, 500);
    expect([...windows.takeClosed(1200)].map(([key]) => key)).toEqual(['a']);
    expect([...windows.takeClosed(1200)]).toEqual([]);
  });
});
