import { createHash } from 'node:crypto';
import { HttpError } from '../errors.js';
import { RateWindows, countedAddress, type Window } from './rate-windows.js';

const WINDOW_MS = 60_000;

/** 429: too many failed credentials from one address or for one key prefix; says when to try again. */
export class TooManyFailures extends HttpError {
  constructor(detail: string, retryAfter: number) {
    super(429, 'too-many-failures', detail, { 'Retry-After': String(retryAfter) });
  }
}

/** What reached its limit just now, to be audited once a window. */
export type LimitReached = { by: 'address'; address: string } | { by: 'key-prefix'; prefix: string };

/**
 * Slows guessing (issue 10): past `limit` distinct failed credentials a minute from one address, or for one API key
 * prefix (many addresses aiming at one key), every credential from there is 429 until the minute is over, checked or
 * not, so that a guess cannot be confirmed meanwhile. Kept in this process's memory: each replica counts its own.
 */
export class AuthFailures {
  private readonly byAddress = new RateWindows(WINDOW_MS);
  private readonly byPrefix = new RateWindows(WINDOW_MS);

  constructor(private readonly limit: number) {}

  /** Throws 429 when the address or the credential's key prefix is over its limit this minute. */
  check(client: string, credential: string): void {
    const address = countedAddress(client);
    const now = Date.now();
    const prefix = keyPrefix(credential);
    const limits: Array<[Window | undefined, string]> = [
      [this.byAddress.current(address, now), 'from this address'],
      [prefix === undefined ? undefined : this.byPrefix.current(prefix, now), 'for API keys beginning like this one'],
    ];
    for (const [window, who] of limits) {
      if (!window || window.count < this.limit) continue;
      const retryAfter = this.byAddress.retryAfter(window, now);
      throw new TooManyFailures(`too many failed credentials ${who} in the last minute; try again in ${retryAfter} s`, retryAfter);
    }
  }

  /** Counts a refused credential; names what reached its limit with it, once a window. */
  fail(client: string, credential: string): LimitReached[] {
    const address = countedAddress(client);
    // Counted by a digest: the guesses themselves are not kept.
    const digest = createHash('sha256').update(credential).digest('base64url').slice(0, 22);
    const reached: LimitReached[] = [];
    if (this.reaches(this.byAddress.add(address, digest))) reached.push({ by: 'address', address });
    const prefix = keyPrefix(credential);
    if (prefix !== undefined && this.reaches(this.byPrefix.add(prefix, digest))) reached.push({ by: 'key-prefix', prefix });
    return reached;
  }

  private reaches(window: Window): boolean {
    if (window.count < this.limit || window.flagged) return false;
    window.flagged = true;
    return true;
  }
}

/**
 * The part of an API key its hint shows (`pacs_abcd`), by which guesses aimed at one key are counted together.
 * Viewer tokens are signed, not guessed, and all begin alike: they are counted by address only.
 */
function keyPrefix(credential: string): string | undefined {
  if (credential.includes('.')) return undefined;
  return credential.slice(0, credential.startsWith('pacs_') ? 9 : 4);
}
