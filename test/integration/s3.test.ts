import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { promisify } from 'node:util';
import { DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { S3ObjectStore } from '../../src/storage/s3.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { S3RVER_CREDENTIALS, startS3, type RunningS3, type S3Request } from '../helpers/s3.js';
import { adminFetch, freePort, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * The S3 object store against a real S3-protocol server (s3rver) over HTTP on loopback, through the real
 * client, with the real server process in front: HTTP in, HTTP out, and a look into the bucket where it matters.
 */

type Fixture = { path: string; studyUID: string; seriesUID: string; sopInstanceUID: string; numberOfFrames: number; sha256: string };

const ROOT = path.resolve(import.meta.dirname, '../..');
const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const manifest: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
const bytesOf = (f: Fixture) => readFileSync(path.join(FIXTURES, f.path));
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const INSTANCE_ACCEPT = { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' };
const FRAME_ACCEPT = { Accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' };
const MiB = 1024 * 1024;

const BUCKET = 'pacs-s3-test';
const PREFIX = 'clinic-a/';

let s3: RunningS3;
let server: RunningServer;
let bucket: S3Client;
let serverEnv: Record<string, string>;

const instancePath = (f: { studyUID: string; seriesUID: string; sopInstanceUID: string }) => `/studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}`;
type Uids = { studyUID: string; seriesUID: string; sopInstanceUID: string };
/** How an instance's object keys begin (storage/keys.ts): each write has a key of its own, its version after this. */
const keyStart = (f: Uids) => `${PREFIX}studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}_`;

/** The key the server stored an instance under, in the bucket. */
async function objectKey(f: Uids): Promise<string> {
  const [key] = await keysUnder(keyStart(f));
  return key!;
}

/** Keys in the test bucket under a prefix, seen with a client of the test's own. */
async function keysUnder(prefix: string): Promise<string[]> {
  const page = await bucket.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key!);
}

async function objectBytes(key: string): Promise<Buffer> {
  const response = await bucket.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await response.Body!.transformToByteArray());
}

/** Requests s3rver answered while `action` ran. */
async function requestsDuring(action: () => Promise<void>): Promise<S3Request[]> {
  const from = s3.requests.length;
  await action();
  return s3.requests.slice(from);
}

async function retrieve(f: { studyUID: string; seriesUID: string; sopInstanceUID: string }): Promise<Response> {
  return adminFetch(`${server.dicomweb}${instancePath(f)}`, { headers: INSTANCE_ACCEPT });
}

const run = promisify(execFile);
function cli(args: string[], env: Record<string, string>) {
  return run(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: ROOT, env: { ...process.env, ...env } }).then(
    (r) => ({ code: 0, ...r }),
    (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }),
  );
}

beforeAll(async () => {
  s3 = await startS3();
  bucket = new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: S3RVER_CREDENTIALS.AWS_SECRET_ACCESS_KEY },
  });
  // A low threshold, so that an instance of a few MiB goes up as a multipart upload.
  // Deletes here are final, so their objects leave the bucket at once (the trash has its own test, on S3 too).
  serverEnv = s3.env(BUCKET, { PACS_S3_PREFIX: PREFIX, PACS_S3_MULTIPART_BYTES: '5MiB', PACS_TRASH_DAYS: '0' });
  server = await startServer({ env: serverEnv });
});

afterAll(async () => {
  await server?.stop();
  bucket?.destroy();
  await s3?.stop();
});

describe('S3 object store: start', () => {
  it('creates a bucket that does not exist yet', async () => {
    expect(s3.requests.some((r) => r.method === 'PUT' && r.path.replace(/\/$/, '') === `/${BUCKET}` && r.status === 200)).toBe(true);
    await expect(bucket.send(new HeadBucketCommand({ Bucket: BUCKET }))).resolves.toBeDefined();
    const health = await (await fetch(`${server.url}/healthz`)).json();
    expect(health).toMatchObject({ status: 'ok', objectStore: 'ok' });
  });

  it('stops with the bucket, the endpoint and the reason when the endpoint cannot be reached', async () => {
    const nobody = await freePort();
    const started = startServer({ env: { ...s3.env('pacs-nowhere'), PACS_S3_ENDPOINT: `http://127.0.0.1:${nobody}` } });
    const error = await started.then(
      async (s) => {
        await s.stop();
        return new Error('the server started');
      },
      (e: Error) => e,
    );
    expect(error.message).toMatch(/server exited with [1-9]/);
    expect(error.message).toContain(`cannot use S3 bucket "pacs-nowhere" at http://127.0.0.1:${nobody}`);
    expect(error.message).toMatch(/cannot be reached \(ECONNREFUSED\)/);
  });

  it('stops and says so when the store refuses the credentials', async () => {
    const error = await startServer({ env: s3.env('pacs-refused', { AWS_ACCESS_KEY_ID: 'NOT-A-KEY-OF-THIS-STORE' }) }).then(
      async (s) => {
        await s.stop();
        return new Error('the server started');
      },
      (e: Error) => e,
    );
    expect(error.message).toMatch(/server exited with [1-9]/);
    expect(error.message).toMatch(/cannot use S3 bucket "pacs-refused" at http:\/\/127\.0\.0\.1:\d+: access denied \(403\)/);
  });
});

describe('S3 object store: DICOMweb over it', () => {
  let puts: S3Request[];

  beforeAll(async () => {
    puts = (
      await requestsDuring(async () => {
        const response = await stow(server.dicomweb, manifest.map(bytesOf));
        expect(response.status, JSON.stringify(await response.json())).toBe(200);
      })
    ).filter((r) => r.method === 'PUT');
  });

  it('stores every fixture in the bucket under the key prefix, each sent with its SHA-256 for the store to check', async () => {
    for (const f of manifest) {
      const key = await objectKey(f);
      expect(sha256(await objectBytes(key)), f.path).toBe(f.sha256);
      const put = puts.find((r) => r.path === `/${BUCKET}/${key}`);
      expect(put?.headers['x-amz-checksum-sha256'], f.path).toBe(Buffer.from(f.sha256, 'hex').toString('base64'));
    }
    expect(await keysUnder('studies/')).toEqual([]);
    // Uploaded files leave the spool folder, as files moved into place on disk do.
    expect(await fs.readdir(path.join(server.dataDir, 'tmp', String(server.process.pid)))).toEqual([]);
    expect(await fs.readdir(server.dataDir)).not.toContain('objects');
  });

  it('finds the fixtures with QIDO and returns each byte for byte', async () => {
    for (const f of manifest) {
      const found = await (await adminFetch(`${server.dicomweb}/instances?SOPInstanceUID=${f.sopInstanceUID}`)).json();
      expect(found, f.path).toHaveLength(1);
      const response = await retrieve(f);
      expect(response.status, f.path).toBe(200);
      const [part] = await readMultipartResponse(response);
      expect(sha256(part!.body), f.path).toBe(f.sha256);
    }
  });

  it('reads frames with ranged GETs of the frame, never the whole object', async () => {
    for (const name of ['multiframe-40-native.dcm', 'multiframe-fragments-bot.dcm']) {
      const f = manifest.find((m) => m.path === name)!;
      const file = bytesOf(f);
      let frame: Buffer | undefined;
      const reads = await requestsDuring(async () => {
        const response = await adminFetch(`${server.dicomweb}${instancePath(f)}/frames/5`, { headers: FRAME_ACCEPT });
        expect(response.status, name).toBe(200);
        frame = (await readMultipartResponse(response))[0]?.body;
      });
      const key = await objectKey(f);
      const gets = reads.filter((r) => r.method === 'GET' && r.path === `/${BUCKET}/${key}`);
      expect(gets.length, name).toBeGreaterThan(0);
      let served = 0;
      for (const get of gets) {
        const range = /^bytes=(\d+)-(\d+)$/.exec(String(get.headers.range));
        expect(range, `${name}: a GET without a Range`).not.toBeNull();
        const [start, end] = [Number(range![1]), Number(range![2])];
        expect(get.bytesServed).toBe(end - start + 1);
        // What was asked for is the frame itself: its bytes in the file are those served.
        expect(frame!.includes(file.subarray(start, end + 1)), name).toBe(true);
        served += get.bytesServed;
      }
      expect(served, name).toBe(frame!.length);
      expect(served, name).toBeLessThan(file.length / 4);
    }
  });

  it('caches a rendered thumbnail under derived/ in the bucket, and serves it from there', async () => {
    const f = manifest.find((m) => m.path === 'ct-series-1.dcm')!;
    const derived = `${PREFIX}derived/studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}/`;
    expect(await keysUnder(derived)).toEqual([]);
    const first = await adminFetch(`${server.dicomweb}${instancePath(f)}/thumbnail`, { headers: { Accept: 'image/jpeg' } });
    expect(first.status).toBe(200);
    const image = Buffer.from(await first.arrayBuffer());
    expect(image.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
    // Cached behind the answer: wait for it to land.
    let cached: string[] = [];
    for (const started = Date.now(); cached.length === 0 && Date.now() - started < 10_000; await new Promise((r) => setTimeout(r, 50))) cached = await keysUnder(derived);
    expect(cached).toHaveLength(1);
    expect(cached[0]).toMatch(/\.jpg$/);
    expect(await objectBytes(cached[0]!)).toEqual(image);

    const reads = await requestsDuring(async () => {
      const again = await adminFetch(`${server.dicomweb}${instancePath(f)}/thumbnail`, { headers: { Accept: 'image/jpeg' } });
      expect(Buffer.from(await again.arrayBuffer())).toEqual(image);
    });
    expect(reads.filter((r) => r.method === 'GET').map((r) => r.path)).toEqual([`/${BUCKET}/${cached[0]}`]);
  });

  it('stores an instance above the multipart threshold in parts, each with its own SHA-256, and returns it byte for byte', async () => {
    const ids = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid() };
    const big = syntheticInstance({ ...ids, rows: 1024, columns: 1024, frames: 6 });
    expect(big.length).toBeGreaterThan(12 * MiB);
    const start = keyStart(ids);
    const writes = await requestsDuring(async () => {
      const response = await stow(server.dicomweb, [big]);
      expect(response.status).toBe(200);
    });
    const mine = writes.filter((r) => r.path.startsWith(`/${BUCKET}/${start}`));
    expect(mine.filter((r) => r.method === 'POST' && r.query.has('uploads'))).toHaveLength(1);
    const parts = mine.filter((r) => r.method === 'PUT' && r.query.has('partNumber')).sort((a, b) => Number(a.query.get('partNumber')) - Number(b.query.get('partNumber')));
    expect(parts.length).toBe(Math.ceil(big.length / (5 * MiB)));
    for (const [i, part] of parts.entries()) {
      const bytes = big.subarray(i * 5 * MiB, (i + 1) * 5 * MiB);
      expect(Number(part.headers['content-length'])).toBe(bytes.length);
      expect(part.headers['x-amz-checksum-sha256']).toBe(createHash('sha256').update(bytes).digest('base64'));
    }
    expect(mine.filter((r) => r.method === 'POST' && r.query.has('uploadId') && r.status === 200)).toHaveLength(1);
    expect(mine.some((r) => r.method === 'PUT' && !r.query.has('partNumber'))).toBe(false);

    const [part] = await readMultipartResponse(await retrieve(ids));
    expect(sha256(part!.body)).toBe(sha256(big));
    const frameBytes = 1024 * 1024 * 2;
    const [frame] = await readMultipartResponse(await adminFetch(`${server.dicomweb}${instancePath(ids)}/frames/6`, { headers: FRAME_ACCEPT }));
    expect(frame!.body.equals(big.subarray(big.length - frameBytes))).toBe(true);
  });

  it('DELETE removes the instances and their renderings from the bucket', async () => {
    const f = manifest.find((m) => m.path === 'ct-series-1.dcm')!;
    const inStudy = manifest.filter((m) => m.studyUID === f.studyUID);
    expect(await keysUnder(`${PREFIX}studies/${f.studyUID}/`)).toHaveLength(inStudy.length);
    expect(await keysUnder(`${PREFIX}derived/studies/${f.studyUID}/`)).toHaveLength(1);
    const response = await adminFetch(`${server.dicomweb}/studies/${f.studyUID}?reason=test+deletion`, { method: 'DELETE' });
    expect(response.status).toBe(200);
    expect(await keysUnder(`${PREFIX}studies/${f.studyUID}/`)).toEqual([]);
    expect(await keysUnder(`${PREFIX}derived/studies/${f.studyUID}/`)).toEqual([]);
    expect((await retrieve(f)).status).toBe(404);
  });
});

describe('S3 object store: the store goes away and comes back', () => {
  it('answers 503 with Retry-After while s3rver is stopped, keeps nothing, and recovers by itself when it returns', async () => {
    const stored = manifest.find((m) => m.path === 'explicit-le.dcm')!;
    const ids = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid() };
    const file = syntheticInstance(ids);
    const spool = path.join(server.dataDir, 'tmp', String(server.process.pid));

    await s3.stop();
    try {
      const refused = await stow(server.dicomweb, [file]);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('5');
      const body = await refused.json();
      expect(body.error).toBe('store-unavailable');
      expect(body.detail).toMatch(/object store \(S3 bucket "pacs-s3-test"\) is unavailable: .*cannot be reached/);

      const read = await retrieve(stored);
      expect(read.status).toBe(503);
      expect(read.headers.get('retry-after')).toBe('5');
      const multiframe = manifest.find((m) => m.path === 'multiframe-40-native.dcm')!;
      const frames = await adminFetch(`${server.dicomweb}${instancePath(multiframe)}/frames/1,2`, { headers: FRAME_ACCEPT });
      expect(frames.status).toBe(503);
      expect((await frames.json()).error).toBe('store-unavailable');
      const health = await fetch(`${server.url}/healthz`);
      expect(health.status).toBe(503);
      expect((await health.json()).objectStore).toMatch(/S3 bucket "pacs-s3-test".*unavailable/);

      // Nothing half-written: no index row, no spooled file left behind.
      expect(await (await adminFetch(`${server.dicomweb}/studies?StudyInstanceUID=${ids.studyUID}`)).json()).toEqual([]);
      expect(await fs.readdir(spool)).toEqual([]);
    } finally {
      await s3.start();
    }

    const again = await stow(server.dicomweb, [file]);
    expect(again.status).toBe(200);
    const [part] = await readMultipartResponse(await retrieve(ids));
    expect(sha256(part!.body)).toBe(sha256(file));
    expect((await retrieve(stored)).status).toBe(200);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });
});

describe('S3 object store: verify', () => {
  const env = () => ({ ...serverEnv, PACS_STORAGE_DIR: server.dataDir });

  it('checks every indexed object in the bucket and finds none missing or changed', async () => {
    const verify = await cli(['verify'], env());
    expect(verify.stdout).toMatch(/\d+ indexed object\(s\) checked, 0 unindexed object\(s\), 0 problem\(s\)/);
    const checked = Number(/(\d+) indexed/.exec(verify.stdout)![1]);
    const objects = await keysUnder(`${PREFIX}studies/`);
    expect(checked).toBe(objects.length);
    expect(verify.code).toBe(0);
  });

  it('reports an object changed in the bucket and one the index does not know', async () => {
    const f = manifest.find((m) => m.path === 'jpeg-baseline.dcm')!;
    const key = await objectKey(f);
    const original = await objectBytes(key);
    const stray = `${PREFIX}studies/1.2.3/series/4/instances/5.dcm`;
    await bucket.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: Buffer.concat([original, Buffer.from([0])]) }));
    await bucket.send(new PutObjectCommand({ Bucket: BUCKET, Key: stray, Body: Buffer.from('stray') }));
    try {
      const verify = await cli(['verify'], env());
      expect(verify.code).toBe(1);
      expect(verify.stdout).toMatch(/1 unindexed object\(s\), 2 problem\(s\)/);
      expect(verify.stdout).toContain(`CHANGED  ${key.slice(PREFIX.length)}`);
      expect(verify.stdout).toContain(`UNINDEXED ${stray.slice(PREFIX.length)}`);
    } finally {
      await bucket.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: original }));
      await bucket.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: stray }));
    }
  });
});

describe('S3ObjectStore multipart upload', () => {
  let store: S3ObjectStore;
  let folder: string;
  beforeAll(async () => {
    process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.AWS_ACCESS_KEY_ID;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.AWS_SECRET_ACCESS_KEY;
    store = await S3ObjectStore.open({ endpoint: s3.endpoint, bucket: 'pacs-parts', region: 'us-east-1', forcePathStyle: true, prefix: '', multipartBytes: 5 * MiB });
    folder = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-parts-'));
  });

  it('stores a file above the threshold and reads it back byte for byte, whole and by range', async () => {
    const bytes = randomBytes(11 * MiB + 123);
    const file = path.join(folder, 'big.part');
    await fs.writeFile(file, bytes);
    await store.putFiles([{ key: 'studies/1/series/2/instances/3.dcm', localPath: file, sha256: sha256(bytes) }]);
    const chunks: Buffer[] = [];
    for await (const chunk of await store.get('studies/1/series/2/instances/3.dcm')) chunks.push(chunk as Buffer);
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(bytes));
    expect(await buffer(await store.get('studies/1/series/2/instances/3.dcm', { offset: 6 * MiB - 10, length: 20 }))).toEqual(bytes.subarray(6 * MiB - 10, 6 * MiB + 10));
    expect(await store.head('studies/1/series/2/instances/3.dcm')).toEqual({ size: bytes.length, modifiedAt: expect.any(Number) });
    // Moved into the store, as on the filesystem: the local file is gone.
    await expect(fs.stat(file)).rejects.toThrow(/ENOENT/);
  });

  it('refuses a file whose bytes no longer match the recorded SHA-256, and stores nothing', async () => {
    const bytes = randomBytes(6 * MiB);
    const file = path.join(folder, 'changed.part');
    await fs.writeFile(file, bytes);
    await expect(store.putFiles([{ key: 'studies/1/series/2/instances/4.dcm', localPath: file, sha256: sha256(Buffer.from('something else')) }])).rejects.toThrow(
      /no longer matches the SHA-256/,
    );
    expect(await store.head('studies/1/series/2/instances/4.dcm')).toBeUndefined();
  });
});
