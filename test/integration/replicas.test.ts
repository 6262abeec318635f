import { createHash, randomBytes } from 'node:crypto';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { cli } from '../helpers/cli.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startS3, type RunningS3 } from '../helpers/s3.js';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';
import { indexRows, objectKeys, readObject } from '../helpers/stored.js';
import { startReceiver } from '../helpers/webhook-receiver.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Several replicas (issue 3): two server processes over one S3 bucket and one Postgres database, each with its own
 * data folder and port, take uploads at the same moment, the same instances included, and then answer alike:
 * every instance through either, stored once, counted the same. S3 + Postgres whatever the test project, since
 * that is what replicas share.
 */

const BUCKET = 'pacs-replicas';
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const INSTANCE_ACCEPT = { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' };
const DICOM_JSON = { Accept: 'application/dicom+json' };
const DuplicateSopInstance = 0x0111;

type Instance = { studyUID: string; seriesUID: string; sopInstanceUID: string; bytes: Buffer };

let s3: RunningS3;
let postgres: TestPostgres;
/** What both replicas are given: the bucket, the database, one viewer-link signing key. */
let env: Record<string, string>;
let a: RunningServer;
let b: RunningServer;
/** Hears every study event; both replicas run the announcer and the outbox. */
let receiver: Awaited<ReturnType<typeof startReceiver>>;

function series(studyUID: string, count: number, o: { patientName?: string; modality?: 'CT' | 'MR' } = {}): Instance[] {
  const seriesUID = newUid();
  return Array.from({ length: count }, (_, i) => {
    const sopInstanceUID = newUid();
    return { studyUID, seriesUID, sopInstanceUID, bytes: syntheticInstance({ ...o, studyUID, seriesUID, sopInstanceUID, instanceNumber: i + 1, rows: 256, columns: 256 }) };
  });
}

const instanceUrl = (server: RunningServer, i: Omit<Instance, 'bytes'>) => `${server.dicomweb}/studies/${i.studyUID}/series/${i.seriesUID}/instances/${i.sopInstanceUID}`;

async function stowAll(server: RunningServer, instances: Instance[]): Promise<Response> {
  return stow(server.dicomweb, instances.map((i) => i.bytes));
}

async function retrieve(server: RunningServer, i: Omit<Instance, 'bytes'>): Promise<Buffer> {
  const response = await adminFetch(instanceUrl(server, i), { headers: INSTANCE_ACCEPT });
  expect(response.status, `${server.url}: ${i.sopInstanceUID}`).toBe(200);
  const [part] = await readMultipartResponse(response);
  return part!.body;
}

async function json(server: RunningServer, path: string): Promise<any[]> {
  const response = await adminFetch(`${server.dicomweb}${path}`, { headers: DICOM_JSON });
  expect(response.status, `${server.url}${path}`).toBe(200);
  return response.json();
}

beforeAll(async () => {
  [s3, postgres] = await Promise.all([startS3(), startPostgres()]);
  env = {
    ...s3.env(BUCKET),
    PACS_DATABASE_URL: await postgres.createDatabase(),
    PACS_VIEWER_SIGNING_KEY: randomBytes(32).toString('base64'),
    PACS_VIEWER_URL: 'https://viewer.clinic.example',
    PACS_STUDY_QUIET_SECONDS: '1',
    // Deletes here are final, so a deleted study's objects are gone from the bucket (the trash has its own test).
    PACS_TRASH_DAYS: '0',
  };
  // Started together: they migrate the empty database, make the bucket and seed PACS_ADMIN_KEY at the same moment.
  const started = await Promise.allSettled([startServer({ env }), startServer({ env })]);
  [a, b] = started.map((s) => (s.status === 'fulfilled' ? s.value : undefined!));
  for (const s of started) if (s.status === 'rejected') throw s.reason; // afterAll stops the one that did start
  receiver = await startReceiver();
  const hook = await adminFetch(`${a.url}/api/v1/webhooks`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ url: receiver.url, allow_local: true }) });
  expect(hook.status).toBe(201);
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await receiver?.stop();
  await Promise.all([s3?.stop(), postgres?.close()]);
});

describe('two replicas over one bucket and one database', () => {
  /** Study 1 goes to both replicas whole; 2 to A, 3 to B; study 4 has a series on each and one sent to both. */
  const study = [newUid(), newUid(), newUid(), newUid()] as const;
  const both = [...series(study[0], 4), ...series(study[0], 4, { modality: 'MR' })];
  const onlyA = series(study[1], 5);
  const onlyB = series(study[2], 5);
  const split = { a: series(study[3], 3), b: series(study[3], 3, { modality: 'MR' }), both: series(study[3], 2) };
  /** One SOP Instance UID, two contents: one replica gets each, at the same moment. */
  const rivals = Array.from({ length: 8 }, () => {
    const ids = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid() };
    const version = (patientName: string) => ({ ...ids, bytes: syntheticInstance({ ...ids, patientName, rows: 256, columns: 256 }) });
    return [version('Rival^One'), version('Rival^Two')] as const;
  });
  /** What each replica answered to its side of each pair of rivals. */
  let rivalAnswers: Array<[{ status: number; body: any }, { status: number; body: any }]>;
  /** Every instance that should be stored, as it should be stored: the rival that won. */
  let expected: Instance[];

  beforeAll(async () => {
    const answer = async (r: Promise<Response>) => {
      const response = await r;
      return { status: response.status, body: await response.json() };
    };
    const sent = await Promise.all([
      // The same instances into both, in requests of four, in opposite orders.
      ...[0, 4].map((at) => answer(stowAll(a, both.slice(at, at + 4)))),
      ...[4, 0].map((at) => answer(stowAll(b, both.slice(at, at + 4)))),
      answer(stowAll(a, onlyA)),
      answer(stowAll(b, onlyB)),
      answer(stowAll(a, [...split.a, ...split.both])),
      answer(stowAll(b, [...split.both, ...split.b])),
    ]);
    for (const [n, s] of sent.entries()) expect(s.status, `request ${n}: ${JSON.stringify(s.body)}`).toBe(200);
    rivalAnswers = await Promise.all(rivals.map(([one, two]) => Promise.all([answer(stowAll(a, [one])), answer(stowAll(b, [two]))])));
    const winners = rivals.map(([one, two], n) => (rivalAnswers[n]![0].status === 200 ? one : two));
    expected = [...both, ...onlyA, ...onlyB, ...split.a, ...split.b, ...split.both, ...winners];
  });

  it('stores exactly one of two different contents sent with one SOP Instance UID, and refuses the other as a duplicate (0x0111)', () => {
    for (const [n, answers] of rivalAnswers.entries()) {
      expect(answers.map((x) => x.status).sort(), `rivals ${n}`).toEqual([200, 409]);
      const refused = answers.find((x) => x.status === 409)!.body;
      expect(refused['00081198'].Value[0]['00081197'].Value, `rivals ${n}`).toEqual([DuplicateSopInstance]);
    }
  });

  it('shows every instance through either replica, byte for byte as it was stored', async () => {
    for (const instance of expected) {
      for (const server of [a, b]) {
        const found = await json(server, `/instances?SOPInstanceUID=${instance.sopInstanceUID}`);
        expect(found.map((f) => f['00080018'].Value[0]), `${server.url}: ${instance.sopInstanceUID}`).toEqual([instance.sopInstanceUID]);
      }
      const [fromA, fromB] = await Promise.all([retrieve(a, instance), retrieve(b, instance)]);
      expect(sha256(fromA), instance.sopInstanceUID).toBe(sha256(instance.bytes));
      expect(sha256(fromB), instance.sopInstanceUID).toBe(sha256(instance.bytes));
    }
  });

  it('counts each study\'s series and instances, and each series\' instances, the same on both, and right', async () => {
    const studies = new Set(expected.map((i) => i.studyUID));
    for (const studyUID of studies) {
      const mine = expected.filter((i) => i.studyUID === studyUID);
      const seen = await Promise.all([a, b].map((s) => json(s, `/studies?StudyInstanceUID=${studyUID}`)));
      for (const [n, [row]] of seen.entries()) {
        expect(row['00201208'].Value, `${n ? 'B' : 'A'}: study ${studyUID}`).toEqual([mine.length]);
        expect(row['00201206'].Value, `${n ? 'B' : 'A'}: study ${studyUID}`).toEqual([new Set(mine.map((i) => i.seriesUID)).size]);
      }
      // Alike but for the Retrieve URL, which names the replica asked.
      const seriesOf = await Promise.all([a, b].map(async (s) => (await json(s, `/studies/${studyUID}/series`)).map(({ '00081190': _url, ...rest }) => rest)));
      expect(seriesOf[0]).toEqual(seriesOf[1]);
      for (const s of seriesOf[0]!) {
        expect(s['00201209'].Value, `series ${s['0020000E'].Value[0]}`).toEqual([mine.filter((i) => i.seriesUID === s['0020000E'].Value[0]).length]);
      }
    }
  });

  it('keeps one object per instance in the bucket, put once, whose bytes are those the index records', async () => {
    const rows = await indexRows<{ key: string; sha256: string }>(a, 'SELECT object_key AS key, sha256 FROM instances');
    expect(rows).toHaveLength(expected.length);
    expect(await objectKeys(a, 'studies/')).toEqual(rows.map((r) => r.key).sort());
    for (const row of rows) expect(sha256(await readObject(a, row.key)), row.key).toBe(row.sha256);
    // An instance the other replica has just stored is a duplicate here, not a second upload of the same object.
    const puts = new Map<string, number>();
    for (const r of s3.requests) if (r.method === 'PUT' && r.status === 200 && r.path.startsWith(`/${BUCKET}/studies/`)) puts.set(r.path, (puts.get(r.path) ?? 0) + 1);
    expect([...puts].filter(([, n]) => n !== 1)).toEqual([]);
    expect(puts.size).toBe(expected.length);
  });

  it('passes verify, run with the replicas\' settings: nothing missing, changed or unindexed', async () => {
    const verify = await cli(['verify'], a.dataDir, env);
    expect(verify.stdout).toMatch(new RegExp(`^${expected.length} indexed object\\(s\\) checked, 0 unindexed object\\(s\\), 0 problem\\(s\\)`, 'm'));
    expect(verify.code).toBe(0);
  });

  it('deletes a study through one replica: the other no longer finds or serves it, and the bucket no longer holds it', async () => {
    const gone = onlyB[0]!;
    expect((await adminFetch(`${a.dicomweb}/studies/${gone.studyUID}?reason=test+deletion`, { method: 'DELETE' })).status).toBe(200);
    expect(await json(b, `/studies?StudyInstanceUID=${gone.studyUID}`)).toEqual([]);
    expect((await adminFetch(instanceUrl(b, gone), { headers: INSTANCE_ACCEPT })).status).toBe(404);
    expect(await objectKeys(b, `studies/${gone.studyUID}/`)).toEqual([]);
  });
});

describe('access across replicas', () => {
  it('takes an API key made on one replica on the other, and refuses it there once revoked on the first', async () => {
    const made = await adminFetch(`${a.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'EMR', role: 'read' }) });
    expect(made.status).toBe(201);
    const { id, key } = await made.json();
    const asKey = { headers: { Authorization: `Bearer ${key}` } };
    expect((await fetch(`${b.dicomweb}/studies?limit=1`, asKey)).status).toBe(200);
    expect((await adminFetch(`${a.url}/api/v1/keys/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await fetch(`${b.dicomweb}/studies?limit=1`, asKey)).status).toBe(401);
  });

  it('opens a viewer link made by one replica on the other, and refuses it there once revoked on the first', async () => {
    const [instance] = series(newUid(), 1);
    expect((await stowAll(a, [instance!])).status).toBe(200);
    const link = await (await adminFetch(`${a.url}/api/v1/studies/${instance!.studyUID}/viewer-url`)).json();
    const token = new URL(link.viewer_url).searchParams.get('token')!;
    const metadata = `${b.dicomweb}/studies/${instance!.studyUID}/metadata`;
    // Used on B first, so that B holds it as verified: the revocation must reach it all the same.
    expect((await fetch(metadata, { headers: { Authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await adminFetch(`${a.url}/api/v1/viewer-tokens/${decodeJwt(token).jti}`, { method: 'DELETE' })).status).toBe(204);
    const refused = await fetch(metadata, { headers: { Authorization: `Bearer ${token}` } });
    expect(refused.status).toBe(401);
    expect((await refused.json()).detail).toBe('the token was revoked');
  });
});

describe('overwrite on one replica while the other deletes', () => {
  let overwriter: RunningServer;
  beforeAll(async () => {
    overwriter = await startServer({ env: { ...env, PACS_OVERWRITE_DIFFERENT: 'true' } });
  });
  afterAll(async () => {
    await overwriter?.stop();
  });

  it('leaves no index row without its object and no object without its row, round after round', async () => {
    const studyUID = newUid();
    const seriesUID = newUid();
    const ROUNDS = 24;
    // A neighbour that stays keeps the series' folder in the test's S3 server (s3rver removes a folder it empties,
    // even while a put into it is under way; S3 itself has no folders).
    expect((await stow(overwriter.dicomweb, [syntheticInstance({ studyUID, seriesUID })])).status).toBe(200);
    for (let round = 0; round < ROUNDS; round++) {
      const sopInstanceUID = newUid();
      const version = (n: number) => syntheticInstance({ studyUID, seriesUID, sopInstanceUID, patientName: `Version^${n}`, rows: 256, columns: 256 });
      expect((await stow(overwriter.dicomweb, [version(1)])).status).toBe(200);
      // The delete is sent a little later each round, to land at every step of the overwrite.
      const [replaced, deleted] = await Promise.all([
        stow(overwriter.dicomweb, [version(2)]),
        new Promise((resolve) => setTimeout(resolve, round * 2)).then(() => adminFetch(`${instanceUrl(b, { studyUID, seriesUID, sopInstanceUID })}?reason=test+deletion`, { method: 'DELETE' })),
      ]);
      expect(replaced.status).toBe(200);
      expect([200, 404]).toContain(deleted.status);
    }
    const rows = await indexRows<{ key: string; sha256: string }>(a, 'SELECT object_key AS key, sha256 FROM instances WHERE study_uid = ?', [studyUID]);
    const objects = await objectKeys(a, `studies/${studyUID}/`);
    expect(rows.map((r) => r.key).filter((key) => !objects.includes(key)), 'rows without their object').toEqual([]);
    expect(objects.filter((key) => !rows.some((r) => r.key === key)), 'objects no row names').toEqual([]);
    for (const row of rows) expect(sha256(await readObject(a, row.key))).toBe(row.sha256);
  });
});

describe('study events from two replicas', () => {
  it('announces every study the replicas stored, and sends no event twice', async () => {
    const stored = await json(a, '/studies?limit=1000');
    const studyUids = stored.map((s) => s['0020000D'].Value[0] as string);
    expect(studyUids.length).toBeGreaterThan(0);
    const announced = () => new Set(receiver.accepted().map((r) => JSON.parse(r.body).study.study_uid as string));
    await waitFor('every study announced', () => studyUids.every((uid) => announced().has(uid)) || undefined, 30_000);
    // Another turn of both replicas' loops: a second send would come now.
    await new Promise((r) => setTimeout(r, 2500));
    const deliveries = receiver.received.map((r) => r.headers['x-pacs-delivery']);
    const events = receiver.received.map((r) => JSON.parse(r.body).id);
    expect(new Set(deliveries).size).toBe(deliveries.length);
    expect(new Set(events).size).toBe(events.length);
  });
});
