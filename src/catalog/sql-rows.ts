import { getTableColumns, is, Param, Placeholder, SQL, sql, type Column, type Table } from 'drizzle-orm';
import { fetchRows, type Plan } from './plan.js';

/*
 * Rows read and written by the schema's own columns, for SQL that both dialects speak: a dialect hands its tables,
 * whose columns name what is asked and decode what its driver answers, and how a plan runs.
 */

/** A table of either dialect's schema with these columns (test/unit/schema-parity.test.ts keeps the two alike). */
export type TableOf<Row> = Table & { [K in keyof Row]: Column };

/** Runs a plan: as reads come, or in one transaction. */
export type Run = <T>(plan: Plan<T>) => Promise<T>;

/** How a dialect renders SQL (drizzle's SQLiteSyncDialect, PgDialect). */
export type Dialect = { sqlToQuery(query: SQL): { sql: string; params: unknown[] } };

/**
 * A fragment that binds no value (a select list, a join, an order) as the text the dialect makes of it, so that a
 * statement built from it per request does not render its columns again: that cost more than a small query ran.
 */
export function renderedOnce(dialect: Dialect): (fragment: SQL) => SQL {
  return (fragment) => {
    const { sql: text, params } = dialect.sqlToQuery(fragment);
    if (params.length > 0) throw new Error(`a fragment rendered once must bind no value: ${text}`);
    return sql.raw(text);
  };
}

/** Parameters one statement binds at most: SQLite's limit (Postgres's is 65535). */
const MAX_PARAMETERS = 32766;

/** The columns of a table by their schema names, the keys its rows are read and written with. */
export function columnsOf<Row>(table: TableOf<Row>): { [K in keyof Row]: Column } {
  return getTableColumns(table) as { [K in keyof Row]: Column };
}

/** Columns named `<prefix><key>`, so that the columns of a join's two tables cannot collide. */
export function prefixed(prefix: string, columns: Record<string, Column>): Record<string, Column> {
  return Object.fromEntries(Object.entries(columns).map(([key, column]) => [prefix + key, column]));
}

/**
 * Columns each named by its key, as a SELECT or RETURNING lists them, built once; the rows they read come back
 * decoded as each dialect's driver requires (Postgres gives bigint as text, SQLite a boolean as 0 or 1).
 */
export class SelectList<Row> {
  private readonly entries: Array<[string, Column]>;
  readonly list: SQL;

  /** With `render`, the list is rendered once (renderedOnce). */
  constructor(columns: Record<string, Column>, render: (fragment: SQL) => SQL = (fragment) => fragment) {
    this.entries = Object.entries(columns);
    this.list = render(sql.join(this.entries.map(([key, column]) => sql`${column} AS ${sql.identifier(key)}`), sql`, `));
  }

  /** SELECT of these columns, then the rest of the query (FROM …). */
  select(rest: SQL): Plan<Row[]> {
    return this.rows(sql`SELECT ${this.list} ${rest}`);
  }

  /** A write that answers these columns of the rows it changed. */
  returning(statement: SQL): Plan<Row[]> {
    return this.rows(sql`${statement} RETURNING ${this.list}`);
  }

  /** With values, the query's placeholders are filled and it is prepared once. */
  *rows(query: SQL, values?: Record<string, unknown>): Plan<Row[]> {
    const rows = yield* fetchRows<Record<string, unknown>>(query, values);
    for (const row of rows) for (const [key, column] of this.entries) if (row[key] !== null) row[key] = column.mapFromDriverValue(row[key]);
    return rows as Row[];
  }
}

/** A SELECT built once, with sql.placeholder()s for what changes, so that each dialect prepares it once. */
export class Selection<Row> {
  private readonly list: SelectList<Row>;
  private readonly query: SQL;

  constructor(columns: Record<string, Column> | SelectList<Row>, rest: SQL) {
    this.list = columns instanceof SelectList ? columns : new SelectList(columns);
    this.query = sql`SELECT ${this.list.list} ${rest}`;
  }

  rows(values: Record<string, unknown>): Plan<Row[]> {
    return this.list.rows(this.query, values);
  }
}

export function select<Row>(columns: Record<string, Column>, rest: SQL): Plan<Row[]> {
  return new SelectList<Row>(columns).select(rest);
}

/**
 * A statement's parameters from the values of its placeholders, sorted out once per statement: drizzle's
 * fillPlaceholders asks what each parameter is on every call, which on the ingest path cost more than binding.
 */
export function binder(params: readonly unknown[]): (values: Record<string, unknown>) => unknown[] {
  const fills = params.map((p): ((values: Record<string, unknown>) => unknown) => {
    const named = is(p, Placeholder) ? { name: p.name } : is(p, Param) && is(p.value, Placeholder) ? { name: p.value.name, encoder: p.encoder } : undefined;
    if (!named) return () => p;
    const { name, encoder } = named;
    return (values) => {
      if (!(name in values)) throw new Error(`no value for the placeholder "${name}"`);
      return encoder ? encoder.mapToDriverValue(values[name]) : values[name];
    };
  });
  return (values) => fills.map((fill) => fill(values));
}

/**
 * Statements whose text depends only on how many values they bind (an IN list, a multi-row INSERT), built once per
 * count with placeholders, so that each dialect renders and prepares each of them once.
 */
class ByCount {
  private readonly built = new Map<string, SQL>();

  of(key: string, build: () => SQL): SQL {
    let query = this.built.get(key);
    if (!query) this.built.set(key, (query = build()));
    return query;
  }
}

/** A statement over a list of values, `column IN (…)`, built once per length of list; `build` wraps the IN list. */
export class ListStatement<Row = never> {
  private readonly shapes = new ByCount();

  constructor(
    private readonly column: Column,
    private readonly build: (inList: SQL) => SQL,
    private readonly list?: SelectList<Row>,
  ) {}

  /** The rows the statement answers for `values` (in chunks of at most `chunk`); `more` fills its other placeholders. */
  *rows(values: readonly unknown[], chunk: number, more: Record<string, unknown> = {}): Plan<Row[]> {
    const rows: Row[] = [];
    for (let at = 0; at < values.length; at += chunk) {
      const part = values.slice(at, at + chunk);
      const query = this.shapes.of(String(part.length), () =>
        this.build(sql`${this.column} IN (${sql.join(part.map((_, n) => sql.param(sql.placeholder(`in${n}`), this.column)), sql`, `)})`),
      );
      const bound: Record<string, unknown> = { ...more };
      part.forEach((value, n) => (bound[`in${n}`] = value));
      rows.push(...(this.list ? yield* this.list.rows(query, bound) : yield* fetchRows<Row>(query, bound)));
    }
    return rows;
  }
}

/**
 * Multi-row INSERTs of a table's rows (keys as its columns, the first row's keys for all), built once per number of
 * rows and set of columns; `onConflict` ends each statement.
 */
export class RowInserts<Row extends object> {
  private readonly shapes = new ByCount();

  constructor(
    private readonly table: TableOf<Row>,
    private readonly onConflict: (columns: Array<keyof Row & string>) => SQL = () => sql``,
  ) {}

  *insert(rows: Array<Partial<Row>>): Plan<void> {
    if (rows.length === 0) return;
    const keys = columnsIn(this.table, rows[0]!).map(([key]) => key);
    const perStatement = Math.floor(MAX_PARAMETERS / keys.length);
    for (let at = 0; at < rows.length; at += perStatement) {
      const part = rows.slice(at, at + perStatement);
      const query = this.shapes.of(`${part.length}:${keys.join()}`, () => {
        const names = sql.join(keys.map((key) => sql.identifier(this.table[key].name)), sql`, `);
        const tuples = part.map((_, r) => sql`(${sql.join(keys.map((key) => sql.param(sql.placeholder(`${key}_${r}`), this.table[key])), sql`, `)})`);
        return sql`INSERT INTO ${this.table} (${names}) VALUES ${sql.join(tuples, sql`, `)} ${this.onConflict(keys)}`;
      });
      const bound: Record<string, unknown> = {};
      part.forEach((row, r) => {
        for (const key of keys) bound[`${key}_${r}`] = row[key] ?? null;
      });
      yield* fetchRows(query, bound);
    }
  }
}

/** The table's columns that a row (keys as the table's columns) has a key for: what an INSERT of it names. */
function columnsIn<Row>(table: TableOf<Row>, row: Partial<Row>): Array<[keyof Row & string, Column]> {
  return Object.entries(columnsOf<Row>(table)).filter(([key]) => key in row) as Array<[keyof Row & string, Column]>;
}

/** A multi-row INSERT of these rows (keys as the table's columns), in chunks; resolves with the rows inserted. */
export function* insertInto<Row extends object>(table: TableOf<Row>, rows: Row[], onConflict: SQL = sql``): Plan<number> {
  if (rows.length === 0) return 0;
  const columns = columnsIn(table, rows[0]!);
  const names = sql.join(columns.map(([, c]) => sql.identifier(c.name)), sql`, `);
  const perStatement = Math.floor(MAX_PARAMETERS / columns.length);
  let inserted = 0;
  for (let i = 0; i < rows.length; i += perStatement) {
    const values = rows.slice(i, i + perStatement).map((row) => sql`(${sql.join(columns.map(([key, c]) => sql.param(row[key], c)), sql`, `)})`);
    inserted += yield* changed(sql`INSERT INTO ${table} (${names}) VALUES ${sql.join(values, sql`, `)} ${onConflict}`, columns[0]![1]);
  }
  return inserted;
}

/**
 * The SET list of an UPDATE: each key's column by its bare name, as SET wants it, to its value bound as the column
 * binds it, or to an expression.
 */
export function assignments<Row>(table: TableOf<Row>, values: { [K in keyof Row]?: Row[K] | SQL }): SQL {
  const columns = Object.keys(values) as Array<keyof Row>;
  return sql.join(
    columns.map((key) => {
      const value = values[key];
      return sql`${sql.identifier(table[key].name)} = ${is(value, SQL) ? value : sql.param(value, table[key])}`;
    }),
    sql`, `,
  );
}

/** The SET list of an upsert's DO UPDATE: these keys' columns take the values of the row that met the conflict. */
export function fromExcluded<Row>(table: TableOf<Row>, keys: ReadonlyArray<keyof Row>): SQL {
  return sql.join(
    keys.map((key) => {
      const column = sql.identifier(table[key].name);
      return sql`${column} = excluded.${column}`;
    }),
    sql`, `,
  );
}

/** How many rows a write changed: counted by RETURNING, which both dialects speak, rather than by each driver's own count. */
export function* changed(statement: SQL, anyColumn: Column): Plan<number> {
  return (yield* fetchRows(sql`${statement} RETURNING ${sql.identifier(anyColumn.name)}`)).length;
}
