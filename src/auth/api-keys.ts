import { createHash, randomBytes } from 'node:crypto';
import { Unauthorized } from '../errors.js';
import type { Principal, Role } from './principal.js';
import type { AccessRecords, ApiKeyRecord } from './records.js';

const KEY_PREFIX = 'pacs_';
const NOT_VALID = 'the API key is not known to this server, or was revoked or has expired; ask the administrator for a valid one';

/** Keys are 192 random bits, so a plain SHA-256 is enough to keep them: there is nothing to guess. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** API keys: made here, shown once, kept only as a hash. */
export class ApiKeys {
  constructor(private readonly records: AccessRecords) {}

  async create(opts: { name: string; role: Role; expiresAt?: number }): Promise<{ key: string; record: ApiKeyRecord }> {
    const key = KEY_PREFIX + randomBytes(24).toString('base64url');
    const record = await this.add(key, `${key.slice(0, KEY_PREFIX.length + 4)}…`, opts.name, opts.role, opts.expiresAt ?? null);
    return { key, record };
  }

  /** Makes the operator's PACS_ADMIN_KEY an admin key, once; a key since revoked stays revoked. */
  async seedAdmin(key: string): Promise<ApiKeyRecord> {
    const known = await this.records.keyByHash(hashKey(key));
    if (known) return known;
    try {
      return await this.add(key, '(PACS_ADMIN_KEY)', 'PACS_ADMIN_KEY', 'admin', null);
    } catch (e) {
      // Replicas starting together race to seed it; the loser finds the winner's row (the hash is unique).
      const seeded = await this.records.keyByHash(hashKey(key));
      if (seeded) return seeded;
      throw e;
    }
  }

  list(): Promise<ApiKeyRecord[]> {
    return this.records.keys();
  }

  revoke(id: string): Promise<boolean> {
    return this.records.revokeKey(id, Date.now());
  }

  /**
   * The principal a presented key stands for, or a 401. Unknown, revoked and expired keys are refused in the same
   * words, so that a guess learns nothing; the audit trail names the key when there is one (`key:<id>`).
   */
  async authenticate(key: string): Promise<Principal> {
    const record = await this.records.keyByHash(hashKey(key));
    if (!record) throw new Unauthorized(NOT_VALID, true);
    if (record.revokedAt !== null || (record.expiresAt !== null && record.expiresAt <= Date.now())) throw new Unauthorized(NOT_VALID, true, `key:${record.id}`);
    return { kind: 'key', id: record.id, name: record.name, role: record.role };
  }

  private async add(key: string, hint: string, name: string, role: Role, expiresAt: number | null): Promise<ApiKeyRecord> {
    const record: ApiKeyRecord = {
      id: randomBytes(6).toString('hex'),
      name,
      role,
      hint,
      createdAt: Date.now(),
      expiresAt,
      revokedAt: null,
    };
    await this.records.addKey(record, hashKey(key));
    return record;
  }
}
