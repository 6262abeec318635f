import fs from 'node:fs/promises';
import path from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import Database from 'better-sqlite3';
import pg from 'pg';
import { projectBackend, type ServerBackend } from './backend.js';

/**
 * What a test server has stored, seen from outside it and asked the same way on every backend: the keys and bytes
 * of its object store (files under <data>/objects, or its S3 bucket) and the rows of its index (index.sqlite, or its
 * Postgres database). Keys are the server's own, without PACS_S3_PREFIX.
 */

type Target = { dataDir: string; backend: ServerBackend };

/** Keys of every object in the store under `prefix`, in order. */
export async function objectKeys(server: Target, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  if (server.backend.store === 's3') {
    const { client, bucket, keyPrefix } = s3Of(server);
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: keyPrefix + prefix, ContinuationToken: token }));
      for (const object of page.Contents ?? []) keys.push(object.Key!.slice(keyPrefix.length));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  } else {
    const root = objectsFolder(server);
    const start = path.join(root, prefix.slice(0, prefix.lastIndexOf('/') + 1));
    const entries = await fs.readdir(start, { recursive: true, withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [];
      throw e;
    });
    for (const entry of entries) {
      const key = path.relative(root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/');
      if (!entry.isDirectory() && key.startsWith(prefix)) keys.push(key);
    }
  }
  return keys.sort();
}

export async function readObject(server: Target, key: string): Promise<Buffer> {
  if (server.backend.store === 'fs') return fs.readFile(path.join(objectsFolder(server), key));
  const { client, bucket, keyPrefix } = s3Of(server);
  const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: keyPrefix + key }));
  return Buffer.from(await response.Body!.transformToByteArray());
}

/** Replaces an object's bytes behind the server's back. */
export async function writeObject(server: Target, key: string, bytes: Buffer): Promise<void> {
  if (server.backend.store === 'fs') {
    await fs.mkdir(path.dirname(path.join(objectsFolder(server), key)), { recursive: true });
    return fs.writeFile(path.join(objectsFolder(server), key), bytes);
  }
  const { client, bucket, keyPrefix } = s3Of(server);
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: keyPrefix + key, Body: bytes }));
}

/**
 * Something that changes whenever the object is written again, even with the same bytes: the file's inode and
 * mtime. S3 says when an object was written only to the second, so for the project's s3rver it is the same of the
 * file s3rver keeps the object in.
 */
export async function objectVersion(server: Target, key: string): Promise<string> {
  const stat = await fs.stat(backingFile(server, key));
  return `${stat.ino}@${stat.mtimeMs}`;
}

/** Makes an object look written `seconds` ago, as the store reports it (file mtime; s3rver's LastModified is its file's). */
export async function backdateObject(server: Target, key: string, seconds: number): Promise<void> {
  const then = new Date(Date.now() - seconds * 1000);
  await fs.utimes(backingFile(server, key), then, then);
}

/** Removes an object behind the server's back. */
export async function deleteObject(server: Target, key: string): Promise<void> {
  if (server.backend.store === 'fs') return fs.rm(path.join(objectsFolder(server), key));
  const { client, bucket, keyPrefix } = s3Of(server);
  await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: keyPrefix + key }));
}

/** The local file holding an object: in the data folder, or the one the project's s3rver keeps it in. */
function backingFile(server: Target, key: string): string {
  if (server.backend.store === 'fs') return path.join(objectsFolder(server), key);
  const s3rver = projectBackend().s3;
  const { bucket, keyPrefix } = s3Of(server);
  if (!s3rver || server.backend.env.PACS_S3_ENDPOINT !== s3rver.endpoint) throw new Error('only the project\'s s3rver keeps objects in files this test can reach');
  return path.join(s3rver.directory, bucket, `${keyPrefix}${key}._S3rver_object`);
}

/**
 * Rows of a query on the server's index database. Write SQL both dialects read, with `?` for parameters;
 * Postgres gives counts and other 64-bit integers as text.
 */
export async function indexRows<T = Record<string, unknown>>(server: Target, sql: string, params: unknown[] = []): Promise<T[]> {
  if (server.backend.index === 'sqlite') {
    const db = new Database(sqliteFile(server), { readonly: true, fileMustExist: true });
    try {
      return db.prepare(sql).all(...params) as T[];
    } finally {
      db.close();
    }
  }
  let n = 0;
  return withPostgres(server, async (client) => (await client.query(sql.replace(/\?/g, () => `$${++n}`), params)).rows as T[]);
}

/** Changes rows of the server's index behind its back (SQL both dialects read, `?` for parameters), as an older version would have left them. */
export async function changeIndexRows(server: Target, sql: string, params: unknown[] = []): Promise<void> {
  if (server.backend.index === 'sqlite') {
    const db = new Database(sqliteFile(server), { fileMustExist: true });
    try {
      db.pragma('busy_timeout = 10000');
      db.prepare(sql).run(...params);
    } finally {
      db.close();
    }
    return;
  }
  let n = 0;
  await withPostgres(server, (client) => client.query(sql.replace(/\?/g, () => `$${++n}`), params));
}

/**
 * Everything the index database holds, to look for a value in: the bytes of index.sqlite and its WAL, or the text
 * of every row of every table in the Postgres database.
 */
export async function indexContents(server: Target): Promise<Buffer> {
  if (server.backend.index === 'sqlite') {
    const file = sqliteFile(server);
    return Buffer.concat(await Promise.all([file, `${file}-wal`].map((f) => fs.readFile(f).catch(() => Buffer.alloc(0)))));
  }
  return withPostgres(server, async (client) => {
    const tables = await client.query<{ name: string }>("SELECT table_schema || '.' || table_name AS name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')");
    const texts: string[] = [];
    for (const { name } of tables.rows) {
      const [schema, table] = name.split('.');
      const rows = await client.query<{ row: string }>(`SELECT t::text AS row FROM "${schema}"."${table}" AS t`);
      texts.push(...rows.rows.map((r) => r.row));
    }
    return Buffer.from(texts.join('\n'));
  });
}

const objectsFolder = (server: Target) => path.join(server.dataDir, 'objects');
const sqliteFile = (server: Target) => path.join(server.dataDir, 'index.sqlite');

async function withPostgres<T>(server: Target, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: server.backend.env.PACS_DATABASE_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

const clients = new Map<string, S3Client>();

/** A client of the test's own for the server's bucket, with the server's endpoint and credentials. */
function s3Of(server: Target): { client: S3Client; bucket: string; keyPrefix: string } {
  const env = server.backend.env;
  const endpoint = env.PACS_S3_ENDPOINT!;
  let client = clients.get(endpoint);
  if (!client) {
    client = new S3Client({
      endpoint,
      region: env.PACS_S3_REGION || 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
    });
    clients.set(endpoint, client);
  }
  const prefix = env.PACS_S3_PREFIX ?? '';
  return { client, bucket: env.PACS_S3_BUCKET!, keyPrefix: prefix && !prefix.endsWith('/') ? `${prefix}/` : prefix };
}
