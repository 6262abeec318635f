import type { SQL } from 'drizzle-orm';
import type { rowsOf } from './record.js';

/** Row values of each index table, as rowsOf makes them. */
type Rows = ReturnType<typeof rowsOf>;
export type IndexTable = 'studies' | 'series' | 'instances';
export type RowOf<T extends IndexTable> = { studies: Rows['study']; series: Rows['series']; instances: Rows['instance'] }[T];

/**
 * One statement of a plan; `rows` steps get their rows back, the others an empty list. A `rows` step with values is
 * built once with sql.placeholder()s and prepared once per connection: on a hot path, rendering cost more than running.
 */
export type Step =
  | { kind: 'rows'; sql: SQL; values?: Record<string, unknown> }
  | { kind: 'run'; sql: SQL }
  | { [T in IndexTable]: { kind: 'insert'; into: T; rows: RowOf<T>[]; ignoreConflicts: boolean } }[IndexTable]
  | { [T in IndexTable]: { kind: 'upsert'; into: T; row: RowOf<T> } }[IndexTable];

/**
 * The index's work, written once for both dialects: a generator that yields each statement and is handed its
 * rows. SQLite runs a plan inside its synchronous transaction, Postgres awaits each statement in turn.
 */
export type Plan<T> = Generator<Step, T, unknown[]>;

/** A statement whose rows the plan reads: a SELECT, or a write with RETURNING. */
export function* fetchRows<R>(query: SQL, values?: Record<string, unknown>): Plan<R[]> {
  return (yield { kind: 'rows', sql: query, values }) as R[];
}

export function* execute(statement: SQL): Plan<void> {
  yield { kind: 'run', sql: statement };
}

/** A multi-row INSERT; with ignoreConflicts, rows whose key is taken are left as they are (ON CONFLICT DO NOTHING). */
export function* insert<T extends IndexTable>(into: T, values: RowOf<T>[], ignoreConflicts = false): Plan<void> {
  if (values.length > 0) yield { kind: 'insert', into, rows: values, ignoreConflicts } as Step;
}

/** One row, replacing the row with its key if there is one (ON CONFLICT DO UPDATE). */
export function* upsert<T extends IndexTable>(into: T, row: RowOf<T>): Plan<void> {
  yield { kind: 'upsert', into, row } as Step;
}

/** Runs a plan synchronously: each step's rows come from `perform`. */
export function runPlan<T>(plan: Plan<T>, perform: (step: Step) => unknown[]): T {
  let next = plan.next();
  while (!next.done) next = plan.next(perform(next.value));
  return next.value;
}

/** Runs a plan one awaited statement at a time. */
export async function runPlanAsync<T>(plan: Plan<T>, perform: (step: Step) => Promise<unknown[]>): Promise<T> {
  let next = plan.next();
  while (!next.done) next = plan.next(await perform(next.value));
  return next.value;
}
