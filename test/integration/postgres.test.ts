import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { decodeJwt } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeys } from '../../src/auth/api-keys.js';
import { PgCatalog } from '../../src/catalog/pg.js';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { adminFetch, readMultipartResponse, startServer, stow, stowBody, TEST_ADMIN_KEY, type RunningServer } from '../helpers/server.js';

/** The server with its index in Postgres (PACS_DATABASE_URL): the same DICOMweb, access and audit, and its faults. */

type Fixture = { path: string; studyUID: string; seriesUID: string; sopInstanceUID: string; numberOfFrames: number; sha256: string; transferSyntaxUID: string };

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const manifest: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';

let postgres: TestPostgres;
let databaseUrl: string;
let server: RunningServer;

beforeAll(async () => {
  postgres = await startPostgres();
  databaseUrl = await postgres.createDatabase();
  server = await startServer({ env: { PACS_DATABASE_URL: databaseUrl, PACS_VIEWER_URL: 'https://viewer.example' } });
  const response = await stow(server.dicomweb, manifest.map((f) => readFileSync(path.join(FIXTURES, f.path))));
  expect(response.status, await response.text()).toBe(200);
});
afterAll(async () => {
  await server?.stop();
  await postgres?.close();
});

async function inDatabase<T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

describe('DICOMweb over a Postgres index', () => {
  it('keeps the index in Postgres, not in the storage folder', async () => {
    expect(existsSync(path.join(server.dataDir, 'index.sqlite'))).toBe(false);
    const [row] = await inDatabase<{ n: string }>('SELECT count(*) AS n FROM instances');
    expect(Number(row!.n)).toBe(manifest.length);
  });

  it('answers QIDO with every study, its counts and modalities', async () => {
    const response = await adminFetch(`${server.dicomweb}/studies?limit=1000`);
    const body = await response.json();
    const studies = new Set(manifest.map((f) => f.studyUID));
    expect(body.map((s: any) => s['0020000D'].Value[0]).sort()).toEqual([...studies].sort());
    for (const study of body) {
      const files = manifest.filter((f) => f.studyUID === study['0020000D'].Value[0]);
      expect(study['00201208'].Value).toEqual([files.length]);
      expect(study['00201206'].Value).toEqual([new Set(files.map((f) => f.seriesUID)).size]);
    }
  });

  it('serves every instance, its metadata and its frames', async () => {
    for (const f of manifest) {
      const instance = `${server.dicomweb}/studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}`;
      const [part] = await readMultipartResponse(await adminFetch(instance, { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } }));
      expect(sha256(part!.body), f.path).toBe(f.sha256);
      const [json] = await (await adminFetch(`${instance}/metadata`)).json();
      expect(json['00080018'].Value, f.path).toEqual([f.sopInstanceUID]);
      expect((json['00280008']?.Value ?? [1]).map(Number), f.path).toEqual([f.numberOfFrames]);
      const frames = await adminFetch(`${instance}/frames/${f.numberOfFrames}`, { headers: { Accept: FRAME_ACCEPT } });
      expect(frames.status, f.path).toBe(200);
      expect((await readMultipartResponse(frames))[0]!.body.length, f.path).toBeGreaterThan(0);
    }
  });

  it('issues a viewer link whose token reads its study, and keeps the audit trail in Postgres', async () => {
    const study = manifest[0]!;
    const requestId = randomUUID();
    const link = await (await adminFetch(`${server.url}/api/v1/studies/${study.studyUID}/viewer-url`)).json();
    const token = new URL(link.viewer_url).searchParams.get('token')!;
    const metadata = await fetch(`${server.dicomweb}/studies/${study.studyUID}/metadata?token=${token}`, { headers: { 'X-Request-Id': requestId } });
    expect(metadata.status).toBe(200);
    const revoked = await adminFetch(`${server.url}/api/v1/viewer-tokens/${decodeJwt(token).jti}`, { method: 'DELETE' });
    expect(revoked.status).toBeLessThan(300);
    expect((await fetch(`${server.dicomweb}/studies/${study.studyUID}/metadata?token=${token}`)).status).toBe(401);
    const events = await (await adminFetch(`${server.url}/api/v1/audit?study=${study.studyUID}`)).json();
    expect(events.find((e: any) => e.requestId === requestId)).toMatchObject({ credential: `token:${decodeJwt(token).jti}`, status: 200, studyUid: study.studyUID });
    const rows = await inDatabase('SELECT status FROM audit_events WHERE request_id = $1', [requestId]);
    expect(rows).toEqual([{ status: 200 }]);
  });
});

describe('access records in Postgres', () => {
  it('makes, lists and revokes API keys, and revokes every viewer link of a study', async () => {
    const made = await adminFetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'reader', role: 'read' }) });
    expect(made.status).toBe(201);
    const { id, key } = await made.json();
    const asReader = { headers: { Authorization: `Bearer ${key}` } };
    expect((await fetch(`${server.dicomweb}/studies?limit=1`, asReader)).status).toBe(200);
    expect((await (await adminFetch(`${server.url}/api/v1/keys`)).json()).map((k: any) => k.id)).toContain(id);
    expect((await adminFetch(`${server.url}/api/v1/keys/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await adminFetch(`${server.url}/api/v1/keys/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await adminFetch(`${server.url}/api/v1/keys/nosuchkey`, { method: 'DELETE' })).status).toBe(404);
    expect((await fetch(`${server.dicomweb}/studies?limit=1`, asReader)).status).toBe(401);

    const study = manifest[1]!.studyUID;
    const link = await (await adminFetch(`${server.url}/api/v1/studies/${study}/viewer-url`)).json();
    const metadata = `${server.dicomweb}/studies/${study}/metadata?token=${new URL(link.viewer_url).searchParams.get('token')}`;
    expect((await fetch(metadata)).status).toBe(200);
    expect((await adminFetch(`${server.url}/api/v1/studies/${study}/viewer-tokens`, { method: 'DELETE' })).status).toBe(204);
    expect((await fetch(metadata)).status).toBe(401);
  });
});

describe('migrations', () => {
  it('migrate an empty database once when several catalogs open it at the same moment', async () => {
    const url = await postgres.createDatabase();
    const catalogs = await Promise.all([1, 2, 3].map(() => PgCatalog.open(url)));
    for (const catalog of catalogs) await catalog.check();
    await Promise.all(catalogs.map((c) => c.close()));
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const applied = await client.query('SELECT hash FROM drizzle.__drizzle_migrations');
    await client.end();
    const journal = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../../migrations/pg/meta/_journal.json'), 'utf8'));
    expect(applied.rows).toHaveLength(journal.entries.length);
  });

  it('seeds PACS_ADMIN_KEY once when several replicas start at the same moment', async () => {
    const url = await postgres.createDatabase();
    const catalogs = await Promise.all([1, 2, 3].map(() => PgCatalog.open(url)));
    const seeded = await Promise.all(catalogs.map((c) => new ApiKeys(c.access()).seedAdmin(TEST_ADMIN_KEY)));
    expect(new Set(seeded.map((k) => k.id)).size).toBe(1);
    expect(await new ApiKeys(catalogs[0]!.access()).list()).toHaveLength(1);
    await Promise.all(catalogs.map((c) => c.close()));
  });
});

describe('when Postgres goes away', () => {
  it('answers 503 with Retry-After and a reason, writes nothing, and recovers by itself when it returns', async (context) => {
    if (!postgres.restartable) return context.skip();
    const lost = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid() };
    const requestId = randomUUID();
    // A STOW that has passed authentication and is still sending its body when the database stops.
    const { body, contentType } = stowBody([syntheticInstance(lost)]);
    let sendRest!: () => void;
    const rest = new Promise<void>((resolve) => (sendRest = resolve));
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(new Uint8Array(body.subarray(0, 1000)));
        await rest;
        controller.enqueue(new Uint8Array(body.subarray(1000)));
        controller.close();
      },
    });
    const upload = adminFetch(`${server.dicomweb}/studies`, {
      method: 'POST',
      headers: { 'Content-Type': contentType, Accept: 'application/dicom+json', 'X-Request-Id': requestId },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    await new Promise((r) => setTimeout(r, 300));
    await postgres.stop();
    try {
      sendRest();
      for (const response of [await upload, await adminFetch(`${server.dicomweb}/studies?PatientID=x`)]) {
        expect(response.status).toBe(503);
        expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
        const error = await response.json();
        expect(error).toMatchObject({ error: 'index-unavailable', detail: expect.stringMatching(/^the index database cannot be reached \(.+\); nothing was changed/) });
      }
      const health = await fetch(`${server.url}/healthz`);
      expect(health.status).toBe(503);
      expect((await health.json()).index).toMatch(/index database cannot be reached/);
    } finally {
      await postgres.start();
    }

    // Back by itself: no restart of the server.
    let answer: Response | undefined;
    for (const started = Date.now(); Date.now() - started < 20_000; await new Promise((r) => setTimeout(r, 200))) {
      answer = await adminFetch(`${server.dicomweb}/studies?StudyInstanceUID=${lost.studyUID}`);
      if (answer.status === 200) break;
    }
    expect(answer!.status).toBe(200);
    expect(await answer!.json()).toEqual([]);
    expect(existsSync(path.join(server.dataDir, 'objects', 'studies', lost.studyUID))).toBe(false);
    expect(await inDatabase('SELECT sop_uid FROM instances WHERE study_uid = $1', [lost.studyUID])).toEqual([]);

    expect((await stow(server.dicomweb, [syntheticInstance(lost)])).status).toBe(200);
    const [found] = await (await adminFetch(`${server.dicomweb}/studies?StudyInstanceUID=${lost.studyUID}`)).json();
    expect(found['00201208'].Value).toEqual([1]);
    // The audit events of the outage were kept in memory and written once the database was back.
    const events = await (await adminFetch(`${server.url}/api/v1/audit?limit=1000`)).json();
    expect(events.find((e: any) => e.requestId === requestId)).toMatchObject({ status: 503, method: 'POST' });
    // The database URL carries a password: it appears in no log line, errors included.
    const password = decodeURIComponent(new URL(databaseUrl).password);
    expect(server.logs.join('\n')).not.toContain(password);
    expect(server.logs.join('\n')).not.toContain(TEST_ADMIN_KEY);
  });
});
