import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { cli } from '../helpers/cli.js';
import { AE, registerAe, run as runTool } from '../helpers/dimse.js';
import { adminFetch, freePort, startServer, stow, TEST_ADMIN_KEY, type RunningServer } from '../helpers/server.js';
import { indexRows, objectKeys } from '../helpers/stored.js';

const run = promisify(execFile);
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

/** A data folder on a tmpfs of its own, so the disk can be filled for real (the test runs as root). */
async function smallDisk(megabytes: number): Promise<{ dir: string; free(): Promise<number>; remove(): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-full-'));
  await run('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m`, 'tmpfs', dir]);
  return {
    dir,
    async free() {
      const s = await fs.statfs(dir);
      return s.bavail * s.bsize;
    },
    async remove() {
      await run('umount', [dir]);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** Takes all but `leave` bytes of the disk's free space with a file the server knows nothing of. */
async function fillDisk(disk: { dir: string; free(): Promise<number> }, name: string, leave: number): Promise<void> {
  const take = (await disk.free()) - leave;
  if (take <= 0) return;
  const handle = await fs.open(path.join(disk.dir, name), 'w');
  try {
    const chunk = Buffer.alloc(MiB, 0x55);
    for (let done = 0; done < take; ) {
      const n = Math.min(chunk.length, take - done);
      done += (await handle.write(chunk, 0, n)).bytesWritten;
    }
  } finally {
    await handle.close();
  }
}

type Instance = { studyUid: string; seriesUid: string; sopUid: string; bytes: Buffer };

async function retrieve(server: RunningServer, i: Instance): Promise<Response> {
  const q = new URLSearchParams({ requestType: 'WADO', studyUID: i.studyUid, seriesUID: i.seriesUid, objectUID: i.sopUid, contentType: 'application/dicom' });
  return adminFetch(`${server.url}/wado?${q}`);
}

function rssOf(pid: number): Promise<number> {
  return fs.readFile(`/proc/${pid}/status`, 'utf8').then((s) => Number(/VmRSS:\s+(\d+)/.exec(s)![1]) * 1024);
}

/** Spool files left in the server's spool folders (<data>/tmp/<pid>/). */
async function spoolLeftovers(dataDir: string): Promise<string[]> {
  const entries = await fs.readdir(path.join(dataDir, 'tmp'), { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

type SmallDisk = Awaited<ReturnType<typeof smallDisk>>;

/**
 * A server on a small disk of its own for the enclosing describe block. No free-space threshold: uploads run into
 * the disk's real end (ENOSPC mid-write), not into the check before it.
 */
function serverOnSmallDisk(megabytes: number): { disk: SmallDisk; server: RunningServer } {
  const on = {} as { disk: SmallDisk; server: RunningServer };
  beforeAll(async () => {
    on.disk = await smallDisk(megabytes);
    on.server = await startServer({ dataDir: on.disk.dir, env: { PACS_MIN_FREE_BYTES: '0' } });
  });
  afterAll(async () => {
    await on.server?.stop();
    await on.disk?.remove();
  });
  return on;
}

/** Sends one instance the disk has no room for: refused as a full disk, with no object or spool file left of it. */
async function expectRefusedAsFull(on: { disk: SmallDisk; server: RunningServer }, bytes: Buffer, objectsBefore: number): Promise<void> {
  const response = await stow(on.server.dicomweb, [bytes]);
  const body = await response.json();
  expect(await objectKeys(on.server, 'studies/')).toHaveLength(objectsBefore);
  expect(await spoolLeftovers(on.disk.dir)).toEqual([]);
  expect(response.status, JSON.stringify(body)).toBe(507);
  expect(body.error).toBe('disk-full');
}

describe('a full data disk', () => {
  let disk: Awaited<ReturnType<typeof smallDisk>>;
  let server: RunningServer;
  const acknowledged: Instance[] = [];
  const refusals: Array<{ status: number; body: any }> = [];

  beforeAll(async () => {
    disk = await smallDisk(20);
    // No threshold: uploads run into the disk's real end (ENOSPC mid-write), not into the check before it.
    server = await startServer({ dataDir: disk.dir, env: { PACS_MIN_FREE_BYTES: '0' } });
  });

  afterAll(async () => {
    await server?.stop();
    await disk?.remove();
  });

  it('acknowledges only what is stored byte for byte, refuses the rest with 507 and leaves nothing behind', async () => {
    const statuses = new Map<number, number>();
    let filling = true;
    // /healthz and the server's memory, sampled while the disk fills.
    const latencies: number[] = [];
    let peakRss = await rssOf(server.process.pid!);
    const sampler = (async () => {
      while (filling) {
        const started = performance.now();
        await fetch(`${server.url}/healthz`).then((r) => r.arrayBuffer());
        latencies.push(performance.now() - started);
        peakRss = Math.max(peakRss, await rssOf(server.process.pid!));
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    // Three clients send series of four instances of 0.3 to 0.9 MiB until each has been refused three times running.
    const client = async (n: number) => {
      let refusedInARow = 0;
      for (let round = 0; round < 40 && refusedInARow < 3; round++) {
        const ids = { studyUid: newUid(), seriesUid: newUid() };
        const batch = Array.from({ length: 4 }, (_, i): Instance => {
          const sopUid = newUid();
          const columns = 256 + 64 * ((n + round + i) % 8);
          return { ...ids, sopUid, bytes: syntheticInstance({ studyUID: ids.studyUid, seriesUID: ids.seriesUid, sopInstanceUID: sopUid, rows: 640, columns, instanceNumber: i + 1 }) };
        });
        const response = await stow(server.dicomweb, batch.map((i) => i.bytes));
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        const body = await response.json();
        if (response.status === 200) {
          refusedInARow = 0;
          const stored = new Set((body['00081199']?.Value ?? []).map((item: any) => item['00081155'].Value[0]));
          acknowledged.push(...batch.filter((i) => stored.has(i.sopUid)));
        } else {
          refusedInARow++;
          refusals.push({ status: response.status, body });
        }
      }
    };
    const fillStarted = performance.now();
    await Promise.all([0, 1, 2].map(client));
    const fillMs = performance.now() - fillStarted;
    filling = false;
    await sampler;
    latencies.sort((a, b) => a - b);
    console.log(
      `full disk: ${acknowledged.length} instances acknowledged in ${(fillMs / 1000).toFixed(1)} s, statuses ${JSON.stringify(Object.fromEntries(statuses))}, ` +
        `free now ${await disk.free()} bytes; server peak RSS ${(peakRss / MiB).toFixed(0)} MiB; /healthz over ${latencies.length} probes: ` +
        `p50 ${latencies[Math.floor(latencies.length / 2)]!.toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms`,
    );

    // Every instance answered as stored comes back whole, with the bytes and SHA-256 that were sent.
    for (const instance of acknowledged) {
      const response = await retrieve(server, instance);
      expect(response.status).toBe(200);
      const bytes = Buffer.from(await response.arrayBuffer());
      expect(bytes.length).toBe(instance.bytes.length);
      expect(sha256(bytes)).toBe(sha256(instance.bytes));
    }
    const rows = await indexRows<{ sop_uid: string; size: number; sha256: string }>(server, 'SELECT sop_uid, size, sha256 FROM instances');
    expect(rows.map((r) => r.sop_uid).sort()).toEqual(acknowledged.map((i) => i.sopUid).sort());

    // Nothing refused was left behind: no object without its row, no spool file.
    const keys = await objectKeys(server, 'studies/');
    expect(keys).toHaveLength(acknowledged.length);
    expect(await spoolLeftovers(disk.dir)).toEqual([]);

    const verify = await cli(['verify'], disk.dir);
    expect(verify.stdout).toContain(`${acknowledged.length} indexed object(s) checked, 0 unindexed object(s), 0 problem(s)`);
    expect(verify.code).toBe(0);

    // A full disk is said as such, for the whole request: never a 500, never a partial success.
    expect(acknowledged.length).toBeGreaterThan(0);
    expect(refusals.length).toBeGreaterThan(0);
    for (const { status, body } of refusals) {
      expect(status, JSON.stringify(body)).toBe(507);
      expect(body.error).toBe('disk-full');
      expect(body.detail).toMatch(/full/);
    }
  });

  it('restarted on the full disk, serves reads, says the disk is low and refuses uploads before they start', async () => {
    await server.stop();
    server = await startServer({ dataDir: disk.dir, env: { PACS_MIN_FREE_BYTES: '4MiB' } });

    const health = await fetch(`${server.url}/healthz`);
    // A load balancer must keep a server that can still serve reads.
    expect(health.status).toBe(200);
    const said = await health.json();
    expect(said.disk).toMatchObject({ status: 'low', minFreeBytes: 4 * MiB });
    expect(said.disk.freeBytes).toBeLessThan(4 * MiB);

    const instance = acknowledged[0]!;
    const read = await retrieve(server, instance);
    expect(read.status).toBe(200);
    expect(sha256(Buffer.from(await read.arrayBuffer()))).toBe(sha256(instance.bytes));
    const qido = await adminFetch(`${server.dicomweb}/studies?StudyInstanceUID=${instance.studyUid}`);
    expect(qido.status).toBe(200);

    const refused = await stow(server.dicomweb, [syntheticInstance()]);
    expect(refused.status).toBe(507);
    const body = await refused.json();
    expect(body.error).toBe('disk-full');
    expect(body.detail).toContain('PACS_MIN_FREE_BYTES');
    expect(await spoolLeftovers(disk.dir)).toEqual([]);
  });

  it('tells the operator of an import on the full disk in a line, and keeps nothing of it', async () => {
    const folder = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-import-'));
    await fs.writeFile(path.join(folder, 'one.dcm'), syntheticInstance({ rows: 256, columns: 256 }));
    await fillDisk(disk, 'filler-import', 0);
    const keysBefore = await objectKeys(server, 'studies/');
    const imported = await cli(['import', folder], disk.dir);
    await fs.rm(folder, { recursive: true, force: true });
    expect(imported.code).toBe(1);
    expect(imported.stderr).toContain('the disk of the data folder is full (ENOSPC): nothing of the last batch was kept');
    expect(imported.stderr).not.toMatch(/^\s+at /m);
    expect(await objectKeys(server, 'studies/')).toEqual(keysBefore);
    expect(await spoolLeftovers(disk.dir)).toEqual([]);
  });
});

describe('an instance cut short by the disk', () => {
  const on = serverOnSmallDisk(12);

  it('is never acknowledged, even when the index still has room', async () => {
    for (let i = 0; i < 4; i++) expect((await stow(on.server.dicomweb, [syntheticInstance()])).status).toBe(200);
    // Checkpointed, the index's journal starts again from its beginning: the next commit needs no new disk space.
    const index = new Database(path.join(on.disk.dir, 'index.sqlite'));
    index.pragma('wal_checkpoint(PASSIVE)');
    index.close();
    const bytes = syntheticInstance({ rows: 256, columns: 256 });
    await fillDisk(on.disk, 'filler', Math.floor(bytes.length / 2 / 4096) * 4096);
    await expectRefusedAsFull(on, bytes, 4);
  });
});

describe('an index that cannot grow', () => {
  const on = serverOnSmallDisk(12);

  it('refuses the upload as a full disk and leaves no object without its row', async () => {
    expect((await stow(on.server.dicomweb, [syntheticInstance()])).status).toBe(200);
    const bytes = syntheticInstance({ rows: 256, columns: 256 });
    // Room for the spooled instance (whole pages), none for the pages the index adds in its journal.
    await fillDisk(on.disk, 'filler', Math.ceil(bytes.length / 4096) * 4096);
    await expectRefusedAsFull(on, bytes, 1);
  });

  it('answers an API key created on a full disk with 507', async () => {
    await fillDisk(on.disk, 'filler-2', 0);
    const response = await adminFetch(`${on.server.url}/api/v1/keys`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'full disk', role: 'upload' }),
    });
    const body = await response.json();
    expect(response.status, JSON.stringify(body)).toBe(507);
    expect(body.error).toBe('disk-full');
  });
});

describe('files the server creates', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startServer();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('are readable by the server user only, whatever the umask', async () => {
    expect((await stow(server.dicomweb, [syntheticInstance()])).status).toBe(200);
    const modeOf = async (file: string) => (await fs.stat(path.join(server.dataDir, file))).mode & 0o777;
    const [key] = await objectKeys(server, 'studies/');
    expect(await modeOf(`objects/${key}`)).toBe(0o600);
    for (let folder = path.dirname(`objects/${key}`); folder !== '.'; folder = path.dirname(folder)) expect(await modeOf(folder), folder).toBe(0o700);
    for (const file of ['index.sqlite', 'index.sqlite-wal', 'index.sqlite-shm']) expect(await modeOf(file), file).toBe(0o600);
    expect(await modeOf('tmp')).toBe(0o700);
  });
});

/**
 * The doors other than STOW-RS on a disk with no room left: a C-STORE, a resumable upload sent whole in its creating
 * request, one sent in chunks, and a photo. Each is refused with a reason a person can act on, nothing of it is kept
 * (no object, no row, no spool or partial upload file), and the server serves on.
 */
describe('every other door on a full disk', () => {
  let disk: SmallDisk;
  let server: RunningServer;
  let dicomPort: number;
  let work: string;

  beforeAll(async () => {
    disk = await smallDisk(16);
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-full-doors-'));
    dicomPort = await freePort();
    server = await startServer({ dataDir: disk.dir, env: { PACS_MIN_FREE_BYTES: '0', PACS_DICOM_PORT: String(dicomPort), PACS_DICOM_AE_TITLE: AE } });
    await registerAe(server, 'MODALITY', { host: '127.0.0.1', store: true });
    // One instance stored first: the index has its tables' pages, and the disk is then filled to 256 KiB of room.
    expect((await stow(server.dicomweb, [syntheticInstance()])).status).toBe(200);
    await fillDisk(disk, 'filler', 256 * 1024);
  });

  afterAll(async () => {
    await server?.stop();
    await disk?.remove();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  /** Nothing of a refused upload is left: one object (the first), no spool file, no partial resumable upload. */
  const expectNothingKept = async (sopUid: string) => {
    expect(await objectKeys(server, 'studies/')).toHaveLength(1);
    expect(await indexRows(server, 'SELECT sop_uid FROM instances WHERE sop_uid = ?', [sopUid])).toHaveLength(0);
    expect(await spoolLeftovers(disk.dir)).toEqual([]);
    const partial = await fs.readdir(path.join(disk.dir, 'resumable'), { recursive: true, withFileTypes: true }).catch(() => []);
    expect(partial.filter((e) => e.isFile()).map((e) => e.name)).toEqual([]);
  };
  const TUS = { Authorization: `Bearer ${TEST_ADMIN_KEY}`, 'Tus-Resumable': '1.0.0' };
  const large = () => {
    const sopInstanceUID = newUid();
    return { sopInstanceUID, bytes: syntheticInstance({ sopInstanceUID, rows: 1024, columns: 1024 }) };
  };

  it('answers a C-STORE with Out of Resources and a reason, keeps nothing and goes on', async () => {
    const { sopInstanceUID, bytes } = large();
    const file = path.join(work, 'large.dcm');
    await fs.writeFile(file, bytes);
    const sent = await runTool('storescu', ['-d', '-aet', 'MODALITY', '-aec', AE, '127.0.0.1', String(dicomPort), file], { env: { ...process.env, TCP_NODELAY: '1' } }).catch((e: { stdout: string; stderr: string }) => e);
    const said = `${sent.stdout}${sent.stderr}`;
    expect(said).toMatch(/Status\s*:?\s*0xa7/i);
    expect(said).toMatch(/disk full/i);
    await expectNothingKept(sopInstanceUID);
    await runTool('echoscu', ['-aet', 'MODALITY', '-aec', AE, '127.0.0.1', String(dicomPort)]);
  }, 60_000);

  it('refuses a photo with 507 and keeps nothing of it', async () => {
    const form = new FormData();
    form.append('patient_id', 'FULL-1');
    form.append('patient_name', 'Full^Disk');
    // Noise: a JPEG of about 1 MB, four times the room left.
    const noise = Buffer.from(Array.from({ length: 800 * 600 * 3 }, () => Math.floor(Math.random() * 256)));
    const photo = await sharp(noise, { raw: { width: 800, height: 600, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
    form.append('file', new Blob([new Uint8Array(photo)], { type: 'image/jpeg' }), 'wound.jpg');
    const response = await adminFetch(`${server.url}/api/v1/photos`, { method: 'POST', body: form });
    const body = await response.text();
    expect(response.status, body).toBe(507);
    expect(await objectKeys(server, 'studies/')).toHaveLength(1);
    expect(await spoolLeftovers(disk.dir)).toEqual([]);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  }, 60_000);

  it('refuses a resumable upload sent whole with 507 and keeps nothing of it', async () => {
    const whole = large();
    const created = await fetch(`${server.url}/api/v1/resumable`, {
      method: 'POST',
      headers: { ...TUS, 'Content-Type': 'application/offset+octet-stream', 'Upload-Length': String(whole.bytes.length) },
      body: new Uint8Array(whole.bytes),
    });
    const answer = await created.text();
    expect(created.status, answer).toBe(507);
    expect(JSON.parse(answer)).toMatchObject({ error: 'disk-full' });
    await expectNothingKept(whole.sopInstanceUID);
  }, 60_000);

  it('refuses a chunk of a resumable upload with 507, and the upload resumes once there is room: stored once, byte for byte', async () => {
    const chunked = large();
    const started = await fetch(`${server.url}/api/v1/resumable`, { method: 'POST', headers: { ...TUS, 'Upload-Length': String(chunked.bytes.length) } });
    expect(started.status).toBe(201);
    const url = new URL(started.headers.get('location')!, server.url).href;
    const patched = await fetch(url, {
      method: 'PATCH',
      headers: { ...TUS, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0' },
      body: new Uint8Array(chunked.bytes),
    });
    const refusal = await patched.text();
    expect(patched.status, refusal).toBe(507);
    expect(JSON.parse(refusal)).toMatchObject({ error: 'disk-full', detail: expect.stringMatching(/resume/) });
    expect(await objectKeys(server, 'studies/')).toHaveLength(1);
    expect(await spoolLeftovers(disk.dir)).toEqual([]);

    // The administrator makes room; the client asks where it stopped and sends the rest.
    await fs.rm(path.join(disk.dir, 'filler'));
    const head = await fetch(url, { method: 'HEAD', headers: TUS });
    const offset = Number(head.headers.get('upload-offset'));
    expect(offset).toBeLessThan(chunked.bytes.length);
    const rest = await fetch(url, {
      method: 'PATCH',
      headers: { ...TUS, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset) },
      body: new Uint8Array(chunked.bytes.subarray(offset)),
    });
    const answer = await rest.text();
    expect(rest.status, answer).toBe(200);
    expect(JSON.parse(answer)).toMatchObject({ status: 'stored', sop_instance_uid: chunked.sopInstanceUID });
    const [row] = (await indexRows(server, 'SELECT sha256 FROM instances WHERE sop_uid = ?', [chunked.sopInstanceUID])) as Array<{ sha256: string }>;
    expect(row?.sha256).toBe(sha256(chunked.bytes));
  }, 60_000);
});
