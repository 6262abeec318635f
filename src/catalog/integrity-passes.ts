import { sql } from 'drizzle-orm';
import type { IntegrityPasses, PassRow } from './catalog.js';
import { execute, fetchRows, type Plan } from './plan.js';

type Run = <T>(plan: Plan<T>) => Promise<T>;
type DriverRow = Omit<PassRow, 'leaseUntil' | 'startedAt'> & { leaseUntil: number | string; startedAt: number | string };

/** IntegrityPasses over the integrity_passes table; each change is one write transaction, so claims cannot interleave. */
export class SqlIntegrityPasses implements IntegrityPasses {
  constructor(
    private readonly read: Run,
    private readonly write: Run,
  ) {}

  claim(name: string, owner: string, leaseMs: number, dueBy: number, freshProgress: string): Promise<PassRow | undefined> {
    return this.write(claiming(name, owner, leaseMs, dueBy, freshProgress));
  }

  advance(name: string, owner: string, leaseMs: number, cursor: string, progress: string): Promise<boolean> {
    return this.write(
      (function* () {
        const held = yield* fetchRows<{ name: string }>(sql`UPDATE integrity_passes SET cursor = ${cursor}, progress = ${progress}, lease_until = ${Date.now() + leaseMs}
          WHERE name = ${name} AND owner = ${owner} RETURNING name`);
        return held.length > 0;
      })(),
    );
  }

  finish(name: string, owner: string, last: string): Promise<void> {
    return this.write(execute(sql`UPDATE integrity_passes SET owner = NULL, lease_until = 0, last = ${last} WHERE name = ${name} AND owner = ${owner}`));
  }

  async state(name: string): Promise<PassRow | undefined> {
    const [row] = await this.read(selectPass(name));
    return row && passRow(row);
  }
}

function selectPass(name: string): Plan<DriverRow[]> {
  return fetchRows<DriverRow>(sql`SELECT owner, lease_until AS "leaseUntil", started_at AS "startedAt", cursor, progress, last
    FROM integrity_passes WHERE name = ${name}`);
}

function* claiming(name: string, owner: string, leaseMs: number, dueBy: number, freshProgress: string): Plan<PassRow | undefined> {
  const now = Date.now();
  const [found] = yield* selectPass(name);
  const row = found && passRow(found);
  if (row?.owner && row.owner !== owner && row.leaseUntil > now) return undefined;
  if (row?.owner) {
    // Under way, and its holder gone quiet (or it is ours): resumed from its cursor.
    yield* execute(sql`UPDATE integrity_passes SET owner = ${owner}, lease_until = ${now + leaseMs} WHERE name = ${name}`);
    return { ...row, owner, leaseUntil: now + leaseMs };
  }
  if (row && row.startedAt > dueBy) return undefined;
  yield* execute(sql`INSERT INTO integrity_passes (name, owner, lease_until, started_at, cursor, progress, last)
    VALUES (${name}, ${owner}, ${now + leaseMs}, ${now}, '', ${freshProgress}, NULL)
    ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until, started_at = excluded.started_at,
      cursor = excluded.cursor, progress = excluded.progress`);
  return { owner, leaseUntil: now + leaseMs, startedAt: now, cursor: '', progress: freshProgress, last: row?.last ?? null };
}

function passRow(r: DriverRow): PassRow {
  return { ...r, leaseUntil: Number(r.leaseUntil), startedAt: Number(r.startedAt) };
}
