import { randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The one-time link that lets the first admin be made in the browser (issue 14), printed at the first start of an
 * empty store. Kept in the memory of the process that printed it: it opens that server only, once, for a while.
 */
export class SetupCode {
  private code?: { value: Buffer; expiresAt: number };

  issue(ttlMs: number): string {
    const value = randomBytes(24).toString('base64url');
    this.code = { value: Buffer.from(value), expiresAt: Date.now() + ttlMs };
    return value;
  }

  /** Whether the code is the one issued and still valid; it is not used up until `consume`. */
  valid(given: string | undefined): boolean {
    const code = this.code;
    if (!code || !given || Date.now() >= code.expiresAt) return false;
    const bytes = Buffer.from(given);
    return bytes.length === code.value.length && timingSafeEqual(bytes, code.value);
  }

  consume(): void {
    this.code = undefined;
  }
}
