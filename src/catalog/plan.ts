import type { SQL } from 'drizzle-orm';

/**
 * One statement of a plan; `rows` steps get their rows back, the others an empty list. A `rows` step with values is
 * built once with sql.placeholder()s and prepared once per connection: on a hot path, rendering cost more than running.
 */
export type Step =
  | { kind: 'rows'; sql: SQL; values?: Record<string, unknown> }
  | { kind: 'run'; sql: SQL };

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
