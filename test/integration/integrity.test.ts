import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { newUid } from '../../src/dicom/write.js';
import { instanceKey, newVersion } from '../../src/storage/keys.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { projectBackend } from '../helpers/backend.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';
import { backdateObject, deleteObject, indexRows, objectKeys, readObject, writeObject } from '../helpers/stored.js';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

const AS_STORED = { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' };

type Stored = { studyUID: string; seriesUID: string; sops: string[]; keys: string[] };

/** A study of `count` instances of 512×512 16-bit pixels (512 KiB each: more than one chunk of a stream). */
async function storeStudy(server: RunningServer, count: number): Promise<Stored> {
  const studyUID = newUid();
  const seriesUID = newUid();
  const sops = Array.from({ length: count }, () => newUid());
  const files = sops.map((sopInstanceUID, i) => syntheticInstance({ studyUID, seriesUID, sopInstanceUID, instanceNumber: i + 1, rows: 512, columns: 512 }));
  expect((await stow(server.dicomweb, files)).status).toBe(200);
  const all = await objectKeys(server, `studies/${studyUID}/`);
  return { studyUID, seriesUID, sops, keys: sops.map((sop) => all.find((k) => k.includes(`/instances/${sop}_`))!) };
}

async function flipByte(server: RunningServer, key: string): Promise<void> {
  const bytes = await readObject(server, key);
  bytes[bytes.length >> 1]! ^= 0xff;
  await writeObject(server, key, bytes);
}

const damageOf = async (server: RunningServer, studyUID: string) =>
  Object.fromEntries((await indexRows<{ sop: string; damage: string | null }>(server, 'SELECT sop_uid AS sop, damage FROM instances WHERE study_uid = ?', [studyUID])).map((r) => [r.sop, r.damage]));

const wadoUri = (server: RunningServer, s: Stored, sop: string) =>
  adminFetch(`${server.url}/wado?requestType=WADO&studyUID=${s.studyUID}&seriesUID=${s.seriesUID}&objectUID=${sop}&contentType=application/dicom`);

describe('reading an instance whose object changed or went missing', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ env: { PACS_VERIFY_INTERVAL: 'off' } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('never completes a WADO-RS instance or series retrieve, nor a WADO-URI download, of changed bytes, and flags and logs the instance', async () => {
    const s = await storeStudy(server, 2);
    await flipByte(server, s.keys[1]!);
    const series = `${server.dicomweb}/studies/${s.studyUID}/series/${s.seriesUID}`;
    for (const url of [`${series}/instances/${s.sops[1]}`, series]) {
      const response = await adminFetch(url, { headers: AS_STORED });
      expect(response.status, url).toBe(200);
      await expect(response.arrayBuffer(), url).rejects.toThrow();
    }
    const uri = await wadoUri(server, s, s.sops[1]!);
    expect(uri.status).toBe(200);
    await expect(uri.arrayBuffer()).rejects.toThrow();

    // The instance beside it is whole and still comes out whole.
    const whole = await adminFetch(`${series}/instances/${s.sops[0]}`, { headers: AS_STORED });
    expect((await whole.arrayBuffer()).byteLength).toBeGreaterThan(512 * 512);
    expect(await damageOf(server, s.studyUID)).toEqual({ [s.sops[0]!]: null, [s.sops[1]!]: 'changed' });
    const logged = server.logs.map((l) => (l.startsWith('{') ? JSON.parse(l) : undefined)).filter((l) => l?.level === 50 && l.sopUid === s.sops[1]);
    expect(logged.length, server.logs.join('\n')).toBeGreaterThan(0);
  });

  it('answers a study retrieve with an error status naming the instance before any body when its object is missing; a cut-short one too', async () => {
    const s = await storeStudy(server, 3);
    await deleteObject(server, s.keys[1]!);
    const study = await adminFetch(`${server.dicomweb}/studies/${s.studyUID}`, { headers: AS_STORED });
    expect(study.status).toBe(500);
    const body = (await study.json()) as { error: string; detail: string };
    expect(body.error).toBe('damaged');
    expect(body.detail).toContain(s.sops[1]);
    expect(body.detail).toMatch(/verify/);
    expect((await wadoUri(server, s, s.sops[1]!)).status).toBe(500);

    const cut = await readObject(server, s.keys[2]!);
    await writeObject(server, s.keys[2]!, cut.subarray(0, cut.length - 1000));
    const instance = await adminFetch(`${server.dicomweb}/studies/${s.studyUID}/series/${s.seriesUID}/instances/${s.sops[2]}`, { headers: AS_STORED });
    expect(instance.status).toBe(500);
    expect(((await instance.json()) as { detail: string }).detail).toMatch(/bytes, not the \d+ recorded/);
    expect(await damageOf(server, s.studyUID)).toEqual({ [s.sops[0]!]: null, [s.sops[1]!]: 'missing', [s.sops[2]!]: 'changed' });
  });
});

type Pass = { startedAt: string; finishedAt: string; checked: number; missing: number; changed: number; orphansIndexed: number; orphansQuarantined: number; orphansLeft: number };

/** /healthz until it reports a scheduled pass that began after `since` and has finished. */
async function passAfter(server: RunningServer, since: number): Promise<Pass> {
  for (const until = Date.now() + 45_000; Date.now() < until; ) {
    const health = (await (await fetch(`${server.url}/healthz`)).json()) as { integrity?: { lastPass?: Pass | null } };
    const last = health.integrity?.lastPass;
    if (last && Date.parse(last.startedAt) > since) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`no scheduled verify pass finished after ${new Date(since).toISOString()}:\n${server.logs.slice(-20).join('\n')}`);
}

describe('scheduled verify (PACS_VERIFY_INTERVAL)', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer({ env: { PACS_VERIFY_INTERVAL: '2s' } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('finds the changed and the missing object and reports them in /healthz and to the admin API', { timeout: 90_000 }, async () => {
    const s = await storeStudy(server, 3);
    await flipByte(server, s.keys[0]!);
    await deleteObject(server, s.keys[2]!);
    const tampered = Date.now();
    const pass = await passAfter(server, tampered);
    expect(pass).toMatchObject({ checked: 3, missing: 1, changed: 1 });

    expect((await fetch(`${server.url}/api/v1/integrity`)).status).toBe(401);
    const reader = (await (await adminFetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'a reader', role: 'read' }) })).json()) as { key: string };
    expect((await fetch(`${server.url}/api/v1/integrity`, { headers: { Authorization: `Bearer ${reader.key}` } })).status).toBe(403);
    const report = (await (await adminFetch(`${server.url}/api/v1/integrity`)).json()) as {
      verifyIntervalMs: number;
      problems: string[];
      damaged: { counts: Record<string, number>; instances: Array<{ sopUid: string; damage: string }> };
    };
    expect(report.verifyIntervalMs).toBe(2000);
    expect(report.damaged.counts).toEqual({ missing: 1, changed: 1 });
    expect(report.damaged.instances.map((i) => [i.sopUid, i.damage]).sort()).toEqual([[s.sops[0], 'changed'], [s.sops[2], 'missing']].sort());
    expect(report.problems).toContainEqual(expect.stringMatching(new RegExp(`^CHANGED  ${s.keys[0]!.replaceAll('.', '\\.')}`)));
    expect(report.problems).toContainEqual(expect.stringMatching(new RegExp(`^MISSING  ${s.keys[2]!.replaceAll('.', '\\.')}`)));

    // Put back as it was, the next pass finds it whole again and lifts the flag.
    await flipByte(server, s.keys[0]!);
    await passAfter(server, Date.now());
    expect(await damageOf(server, s.studyUID)).toMatchObject({ [s.sops[0]!]: null, [s.sops[2]!]: 'missing' });
  });

  it('indexes an unindexed instance, quarantines junk and a changed copy, and leaves an object young enough to be an upload in progress', { timeout: 90_000 }, async () => {
    const ids = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid() };
    const orphan = `studies/${ids.studyUID}/series/${ids.seriesUID}/instances/${ids.sopInstanceUID}.dcm`;
    // Versioned keys name their bytes' SHA-256: one whose bytes still match is indexed, one whose bytes changed is not.
    const whole = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid() };
    const wholeBytes = syntheticInstance({ ...whole, patientName: 'Orphan^Whole' });
    const wholeKey = instanceKey(whole.studyUID, whole.seriesUID, whole.sopInstanceUID, newVersion(sha256(wholeBytes)));
    const changed = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid() };
    const changedBytes = syntheticInstance({ ...changed, patientName: 'Orphan^Changed' });
    const changedKey = instanceKey(changed.studyUID, changed.seriesUID, changed.sopInstanceUID, newVersion(sha256(Buffer.concat([changedBytes, Buffer.from('as stored')]))));
    const junkStudy = newUid();
    const junk = `studies/${junkStudy}/series/1.2/instances/3.4.dcm`;
    const young = `studies/${junkStudy}/series/1.2/instances/5.6.dcm`;
    await writeObject(server, orphan, syntheticInstance({ ...ids, patientName: 'Orphan^Found' }));
    await writeObject(server, wholeKey, wholeBytes);
    await writeObject(server, changedKey, changedBytes);
    await writeObject(server, junk, Buffer.from('not a DICOM file'));
    await writeObject(server, young, Buffer.from('an upload still being written, as far as anyone can tell'));
    for (const key of [orphan, wholeKey, changedKey, junk]) await backdateObject(server, key, 2 * 3600);
    const placed = Date.now();

    const pass = await passAfter(server, placed);
    expect(pass).toMatchObject({ orphansIndexed: 2, orphansQuarantined: 2, orphansLeft: 1 });
    const instancesOf = async (studyUid: string) => {
      const found = await adminFetch(`${server.dicomweb}/studies/${studyUid}/instances`, { headers: { Accept: 'application/dicom+json' } });
      return found.status === 200 ? ((await found.json()) as unknown[]).length : 0;
    };
    expect(await instancesOf(ids.studyUID)).toBe(1);
    expect(await instancesOf(whole.studyUID)).toBe(1);
    expect(await instancesOf(changed.studyUID)).toBe(0);
    expect(await objectKeys(server, `studies/${junkStudy}/`)).toEqual([young]);
    expect(await objectKeys(server, `studies/${changed.studyUID}/`)).toEqual([]);
    const quarantined = await objectKeys(server, 'quarantine/');
    expect(quarantined.filter((k) => k.endsWith(`/${junk}`))).toHaveLength(1);
    expect((await readObject(server, quarantined.find((k) => k.endsWith(`/${junk}`))!)).toString()).toBe('not a DICOM file');
    const kept = quarantined.find((k) => k.endsWith(`/${changedKey}`));
    expect(kept).toBeDefined();
    expect((await readObject(server, kept!)).equals(changedBytes)).toBe(true);
  });
});

describe('scheduled verify across a restart', () => {
  it('saves how far its pass came when the server stops, and the next start resumes that pass from there', { timeout: 90_000 }, async () => {
    const first = await startServer({ env: { PACS_VERIFY_INTERVAL: 'off' } });
    await storeStudy(first, 4);
    await first.stop();
    // 4 instances over 90% of 40 s: one checked every 9 s.
    type Running = { startedAt: string; checked: number; total: number } | null;
    const running = async (server: RunningServer) => ((await (await fetch(`${server.url}/healthz`)).json()) as { integrity: { running: Running } }).integrity.running;
    const walking = await startServer({ dataDir: first.dataDir, env: { PACS_VERIFY_INTERVAL: '40s' } });
    let before: Running = null;
    try {
      for (const until = Date.now() + 30_000; !before && Date.now() < until; await new Promise((r) => setTimeout(r, 200))) before = await running(walking);
      expect(before).toMatchObject({ total: 4 });
    } finally {
      await walking.stop();
    }
    const resumed = await startServer({ dataDir: first.dataDir, env: { PACS_VERIFY_INTERVAL: '40s' } });
    try {
      const saved = await running(resumed);
      expect(saved).toMatchObject({ startedAt: before!.startedAt, total: 4 });
      expect(saved!.checked).toBeGreaterThanOrEqual(1);
      const lines = () => resumed.logs.filter((l) => l.includes('"verify pass resumed"'));
      for (const until = Date.now() + 10_000; lines().length === 0 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 100));
      expect(lines(), resumed.logs.join('\n')).toHaveLength(1);
    } finally {
      await resumed.stop();
    }
  });
});

// Replicas share an index only on Postgres: SQLite is one server's file.
describe.runIf(projectBackend().postgres !== undefined)('scheduled verify on two replicas over one database and store', () => {
  it('never runs two passes at once: one replica walks, the other waits its turn', { timeout: 90_000 }, async () => {
    const first = await startServer({ env: { PACS_VERIFY_INTERVAL: '2s' } });
    const second = await startServer({ dataDir: first.dataDir, env: { PACS_VERIFY_INTERVAL: '2s' } });
    try {
      await storeStudy(first, 3);
      const since = Date.now();
      // A few passes, each of them paced over most of its interval.
      for (let i = 0; i < 3; i++) await passAfter(first, Math.max(since, Date.now()));
      type Line = { time: number; msg: string; server: number };
      const lines: Line[] = [first, second].flatMap((s, server) =>
        s.logs.flatMap((l) => (l.startsWith('{') ? [{ ...(JSON.parse(l) as Line), server }] : [])).filter((l) => /^verify pass (started|resumed|finished)/.test(l.msg)),
      );
      // Within one millisecond, a pass that finished comes before the next one started.
      lines.sort((a, b) => a.time - b.time || Number(b.msg.startsWith('verify pass finished')) - Number(a.msg.startsWith('verify pass finished')));
      let walking: number | undefined;
      for (const line of lines) {
        if (line.msg.startsWith('verify pass finished')) {
          expect(walking, JSON.stringify(line)).toBe(line.server);
          walking = undefined;
        } else {
          expect(walking, JSON.stringify(line)).toBeUndefined();
          walking = line.server;
        }
      }
      expect(lines.filter((l) => l.msg.startsWith('verify pass finished')).length).toBeGreaterThanOrEqual(3);
    } finally {
      await Promise.all([first.stop(), second.stop()]);
    }
  });
});
