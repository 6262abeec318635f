import { and, eq, sql } from 'drizzle-orm';
import type { IntegrityPasses, PassRow } from './catalog.js';
import type { IndexTables } from './index-tables.js';
import { execute, type Plan } from './plan.js';
import { assignments, changed, columnsOf, fromExcluded, insertInto, select, type Run } from './sql-rows.js';

type Passes = IndexTables['integrityPasses'];

/** IntegrityPasses over the integrity_passes table; each change is one write transaction, so claims cannot interleave. */
export class SqlIntegrityPasses implements IntegrityPasses {
  constructor(
    private readonly t: Passes,
    private readonly read: Run,
    private readonly write: Run,
  ) {}

  claim(name: string, owner: string, leaseMs: number, dueBy: number, freshProgress: string): Promise<PassRow | undefined> {
    return this.write(claiming(this.t, name, owner, leaseMs, dueBy, freshProgress));
  }

  async advance(name: string, owner: string, leaseMs: number, cursor: string, progress: string): Promise<boolean> {
    const t = this.t;
    const held = await this.write(
      changed(sql`UPDATE ${t} SET ${assignments(t, { cursor, progress, leaseUntil: Date.now() + leaseMs })} WHERE ${and(eq(t.name, name), eq(t.owner, owner))}`, t.name),
    );
    return held > 0;
  }

  async finish(name: string, owner: string, last: string): Promise<void> {
    const t = this.t;
    await this.write(execute(sql`UPDATE ${t} SET ${assignments(t, { owner: null, leaseUntil: 0, last })} WHERE ${and(eq(t.name, name), eq(t.owner, owner))}`));
  }

  async state(name: string): Promise<PassRow | undefined> {
    const [row] = await this.read(selectPass(this.t, name));
    return row;
  }
}

function selectPass(t: Passes, name: string): Plan<PassRow[]> {
  const { name: _name, ...pass } = columnsOf(t);
  return select<PassRow>(pass, sql`FROM ${t} WHERE ${eq(t.name, name)}`);
}

function* claiming(t: Passes, name: string, owner: string, leaseMs: number, dueBy: number, freshProgress: string): Plan<PassRow | undefined> {
  const now = Date.now();
  const [row] = yield* selectPass(t, name);
  if (row?.owner && row.owner !== owner && row.leaseUntil > now) return undefined;
  if (row?.owner) {
    // Under way, and its holder gone quiet (or it is ours): resumed from its cursor.
    yield* execute(sql`UPDATE ${t} SET ${assignments(t, { owner, leaseUntil: now + leaseMs })} WHERE ${eq(t.name, name)}`);
    return { ...row, owner, leaseUntil: now + leaseMs };
  }
  if (row && row.startedAt > dueBy) return undefined;
  const fresh: PassRow = { owner, leaseUntil: now + leaseMs, startedAt: now, cursor: '', progress: freshProgress, last: row?.last ?? null };
  // A new pass keeps the last one's report until it finishes.
  const renewed = fromExcluded(t, ['owner', 'leaseUntil', 'startedAt', 'cursor', 'progress']);
  yield* insertInto(t, [{ name, ...fresh, last: null }], sql`ON CONFLICT (${sql.identifier(t.name.name)}) DO UPDATE SET ${renewed}`);
  return fresh;
}
