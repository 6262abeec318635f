import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { is, Table } from 'drizzle-orm';
import { getTableConfig as pgTableConfig, type PgColumn } from 'drizzle-orm/pg-core';
import { getTableConfig as sqliteTableConfig, type SQLiteColumn } from 'drizzle-orm/sqlite-core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgCatalog } from '../../src/catalog/pg.js';
import * as pgSchema from '../../src/catalog/schema.pg.js';
import * as sqliteSchema from '../../src/catalog/schema.sqlite.js';
import { SqliteCatalog } from '../../src/catalog/sqlite.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

/**
 * The index has two drizzle schemas and two folders of migrations, written side by side: a column added to one
 * dialect and forgotten in the other, or a schema edited without its migration, fails here rather than in a clinic.
 */

type Column = { type: string; notNull: boolean; primary: boolean };
type Shape = Record<string, { columns: Record<string, Column>; indexes: Record<string, string>; foreignKeys: string[] }>;
/** What a column of one dialect must share with the other's, beyond its Column: where the types differ, their kind. */
type Declared = Record<string, Record<string, Column & { kind: string; default: unknown; generated: boolean; enum?: string[] }>>;

type Config = ReturnType<typeof sqliteTableConfig> | ReturnType<typeof pgTableConfig>;
const tablesOf = (schema: object) => Object.values(schema).filter((t): t is Table => is(t, Table));

/** The schema as declared, column types in the dialect's own words (as its migrations write them). */
function declared(schema: object, config: (t: never) => Config): { shape: Shape; columns: Declared } {
  const shape: Shape = {};
  const columns: Declared = {};
  for (const table of tablesOf(schema)) {
    const { name, columns: cols, indexes, primaryKeys, uniqueConstraints, foreignKeys } = config(table as never);
    const inPrimaryKey = new Set(primaryKeys.flatMap((pk) => pk.columns.map((c) => c.name)));
    const entry: Shape[string] = { columns: {}, indexes: {}, foreignKeys: [] };
    columns[name] = {};
    for (const c of cols as Array<SQLiteColumn | PgColumn>) {
      const generated = ('autoIncrement' in c && c.autoIncrement === true) || c.columnType.includes('Serial');
      // A serial is an integer with a sequence's default, as the database describes it.
      const type = c.getSQLType().replace(/^bigserial$/, 'bigint').replace(/^serial$/, 'integer');
      const column = { type, notNull: c.notNull, primary: c.primary || inPrimaryKey.has(c.name) };
      entry.columns[c.name] = column;
      columns[name][c.name] = { ...column, kind: kindOf(c), default: c.default, generated, ...(c.enumValues ? { enum: c.enumValues } : {}) };
      if (c.isUnique) entry.indexes[c.uniqueName ?? `${name}_${c.name}_unique`] = index(true, [c.name]);
    }
    for (const i of indexes) entry.indexes[i.config.name!] = index(i.config.unique ?? false, i.config.columns.map((c) => (c as { name: string }).name));
    for (const u of uniqueConstraints) entry.indexes[u.getName()!] = index(true, u.columns.map((c) => c.name));
    for (const fk of foreignKeys) {
      const ref = fk.reference();
      entry.foreignKeys.push(foreignKey(ref.columns.map((c) => c.name), (ref.foreignTable as unknown as { [k: symbol]: string })[Symbol.for('drizzle:Name')]!, ref.foreignColumns.map((c) => c.name), fk.onDelete ?? 'no action'));
    }
    entry.foreignKeys.sort();
    shape[name] = entry;
  }
  return { shape, columns };
}

/** Types the two dialects may spell apart and still hold the same values: SQLite's integer is 64-bit, Postgres's text may carry a collation. */
function kindOf(c: SQLiteColumn | PgColumn): string {
  if (c.dataType === 'boolean') return 'boolean';
  const type = c.getSQLType().toLowerCase();
  if (type.startsWith('text')) return 'text';
  if (['integer', 'bigint', 'bigserial', 'serial', 'smallint'].includes(type)) return 'integer';
  return type;
}

const index = (unique: boolean, columns: string[]) => `${unique ? 'unique ' : ''}(${columns.join(', ')})`;
const foreignKey = (columns: string[], table: string, to: string[], onDelete: string) => `(${columns.join(', ')}) -> ${table}(${to.join(', ')}) on delete ${onDelete.toLowerCase()}`;

/** The tables the SQLite migrations made, as SQLite describes them. */
function sqliteShape(db: Database.Database): Shape {
  const shape: Shape = {};
  const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_\\_drizzle%' ESCAPE '\\'`).all() as Array<{ name: string }>;
  for (const { name } of tables) {
    const entry: Shape[string] = { columns: {}, indexes: {}, foreignKeys: [] };
    for (const c of db.pragma(`table_info(${name})`) as Array<{ name: string; type: string; notnull: number; pk: number }>) {
      entry.columns[c.name] = { type: c.type.toLowerCase(), notNull: c.notnull === 1, primary: c.pk > 0 };
    }
    for (const i of db.pragma(`index_list(${name})`) as Array<{ name: string; unique: number; origin: string }>) {
      if (i.origin === 'pk') continue;
      const cols = (db.pragma(`index_info(${i.name})`) as Array<{ seqno: number; name: string }>).sort((a, b) => a.seqno - b.seqno);
      entry.indexes[i.name] = index(i.unique === 1, cols.map((c) => c.name));
    }
    const fks = new Map<number, { table: string; from: string[]; to: string[]; onDelete: string }>();
    for (const f of db.pragma(`foreign_key_list(${name})`) as Array<{ id: number; table: string; from: string; to: string; on_delete: string }>) {
      const fk = fks.get(f.id) ?? { table: f.table, from: [], to: [], onDelete: f.on_delete };
      fk.from.push(f.from);
      fk.to.push(f.to);
      fks.set(f.id, fk);
    }
    entry.foreignKeys = [...fks.values()].map((f) => foreignKey(f.from, f.table, f.to, f.onDelete)).sort();
    shape[name] = entry;
  }
  return shape;
}

const PG_ON_DELETE: Record<string, string> = { a: 'no action', r: 'restrict', c: 'cascade', n: 'set null', d: 'set default' };

/** The tables the Postgres migrations made, as Postgres's catalog describes them. */
async function pgShape(client: pg.Client): Promise<Shape> {
  const shape: Shape = {};
  const entry = (table: string) => (shape[table] ??= { columns: {}, indexes: {}, foreignKeys: [] });
  const { rows: columns } = await client.query<{ table: string; name: string; type: string; collation: string | null; notNull: boolean }>(`
    SELECT c.relname AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull",
           CASE WHEN a.attcollation <> t.typcollation THEN co.collname END AS collation
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_collation co ON co.oid = a.attcollation
    WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped`);
  for (const c of columns) entry(c.table).columns[c.name] = { type: c.collation ? `${c.type} COLLATE "${c.collation}"` : c.type, notNull: c.notNull, primary: false };
  const { rows: indexes } = await client.query<{ table: string; name: string; unique: boolean; primary: boolean; columns: string[] }>(`
    SELECT t.relname AS table, i.relname AS name, x.indisunique AS unique, x.indisprimary AS primary,
           array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.ord)::text[] AS columns
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = 'public'`);
  for (const i of indexes) {
    if (i.primary) for (const c of i.columns) entry(i.table).columns[c]!.primary = true;
    else entry(i.table).indexes[i.name] = index(i.unique, i.columns);
  }
  const { rows: fks } = await client.query<{ table: string; target: string; from: string[]; to: string[]; onDelete: string }>(`
    SELECT t.relname AS table, f.relname AS target, c.confdeltype AS "onDelete",
           array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.ord)::text[] AS from,
           array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord) JOIN pg_attribute a ON a.attrelid = f.oid AND a.attnum = k.attnum ORDER BY k.ord)::text[] AS to
    FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class f ON f.oid = c.confrelid JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = 'public' AND c.contype = 'f'`);
  for (const f of fks) entry(f.table).foreignKeys.push(foreignKey(f.from, f.target, f.to, PG_ON_DELETE[f.onDelete]!));
  for (const table of Object.values(shape)) table.foreignKeys.sort();
  return shape;
}

const sqlite = declared(sqliteSchema, sqliteTableConfig as never);
const postgres = declared(pgSchema, pgTableConfig as never);

describe('the SQLite and the Postgres schema', () => {
  it('declare the same tables', () => {
    expect(Object.keys(postgres.shape).sort()).toEqual(Object.keys(sqlite.shape).sort());
  });

  it('declare the same columns, nullable, keyed, defaulted and generated alike, of compatible types', () => {
    const portable = (columns: Declared) =>
      Object.fromEntries(Object.entries(columns).map(([table, cols]) => [table, Object.fromEntries(Object.entries(cols).map(([name, { type: _type, ...c }]) => [name, c]))]));
    expect(portable(postgres.columns)).toEqual(portable(sqlite.columns));
  });

  it('declare the same indexes, unique constraints and foreign keys', () => {
    const keys = (shape: Shape) => Object.fromEntries(Object.entries(shape).map(([table, { indexes, foreignKeys }]) => [table, { indexes, foreignKeys }]));
    expect(keys(postgres.shape)).toEqual(keys(sqlite.shape));
  });
});

describe("each dialect's migrations", () => {
  let dir: string;
  let server: TestPostgres | undefined;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-schema-'));
  });
  afterAll(async () => {
    await server?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('make exactly the SQLite schema', async () => {
    // Applied as the server applies them at start, on a fresh index.
    await SqliteCatalog.open(dir).close();
    const db = new Database(path.join(dir, 'index.sqlite'), { readonly: true });
    try {
      expect(sqliteShape(db)).toEqual(sqlite.shape);
    } finally {
      db.close();
    }
  });

  it('make exactly the Postgres schema', async () => {
    server = await startPostgres();
    const url = await server.createDatabase();
    await (await PgCatalog.open(url)).close();
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      expect(await pgShape(client)).toEqual(postgres.shape);
    } finally {
      await client.end();
    }
  });
});
