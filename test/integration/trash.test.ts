import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { projectBackend } from '../helpers/backend.js';
import { cli } from '../helpers/cli.js';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';
import { objectKeys } from '../helpers/stored.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The trash (issue 15): a deletion is invisible at once to every query and retrieve, kept whole for PACS_TRASH_DAYS,
 * restorable by an admin with every byte as it was, and purged after, objects and renderings included, leaving no
 * empty folder; verify never takes what is in the trash for unindexed objects.
 */

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
type Instance = { studyUID: string; seriesUID: string; sopInstanceUID: string; bytes: Buffer };

function study(n: number, patientID = 'TRASH-1'): Instance[] {
  const studyUID = newUid();
  const seriesUID = newUid();
  return Array.from({ length: n }, (_, i) => {
    const sopInstanceUID = newUid();
    return { studyUID, seriesUID, sopInstanceUID, bytes: syntheticInstance({ studyUID, seriesUID, sopInstanceUID, patientID, instanceNumber: i + 1, rows: 32, columns: 32 }) };
  });
}

let server: RunningServer;
const api = (p: string, init?: RequestInit) => adminFetch(`${server.url}/api/v1${p}`, init);
const qido = async (p: string) => (await adminFetch(`${server.dicomweb}${p}`, { headers: { Accept: 'application/dicom+json' } })).json();
const instanceUrl = (i: Instance) => `${server.dicomweb}/studies/${i.studyUID}/series/${i.seriesUID}/instances/${i.sopInstanceUID}`;

async function retrieve(i: Instance): Promise<Buffer | number> {
  const response = await adminFetch(instanceUrl(i), { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
  if (response.status !== 200) return response.status;
  return (await readMultipartResponse(response))[0]!.body;
}

beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.stop();
});

/** Renders an instance and waits for the rendering in the cache, which is written after it is answered. */
async function renderAndCache(instance: Instance) {
  expect((await adminFetch(`${instanceUrl(instance)}/rendered`)).status).toBe(200);
  const cached = async () => (await objectKeys(server)).some((k) => k.startsWith('derived/') && k.includes(instance.sopInstanceUID));
  await waitFor('the cached rendering', async () => ((await cached()) ? true : undefined), 5_000);
}

describe('a deleted study', () => {
  const instances = study(3);
  const { studyUID } = instances[0]!;
  let trashId: string;

  beforeAll(async () => {
    expect((await stow(server.dicomweb, instances.map((i) => i.bytes))).status).toBe(200);
    // A rendering made before the deletion, to be purged with it.
    expect((await adminFetch(`${instanceUrl(instances[0]!)}/rendered`)).status).toBe(200);
    const response = await adminFetch(`${server.dicomweb}/studies/${studyUID}?reason=wrong+patient`, { method: 'DELETE' });
    expect(response.status).toBe(200);
    const answer = await response.json();
    expect(answer).toMatchObject({ deleted: { studies: 1, series: 1, instances: 3 }, reason: 'wrong patient', trash: { id: expect.any(String) } });
    expect(Date.parse(answer.trash.purge_after) - Date.now()).toBeGreaterThan(29 * 86_400_000);
    trashId = answer.trash.id;
  });

  it('is invisible at once to QIDO, WADO, metadata and the EMR API', async () => {
    expect(await qido(`/studies?StudyInstanceUID=${studyUID}`)).toEqual([]);
    expect(await qido(`/instances?PatientID=TRASH-1`)).toEqual([]);
    expect(await retrieve(instances[0]!)).toBe(404);
    expect((await adminFetch(`${server.dicomweb}/studies/${studyUID}/metadata`)).status).toBe(404);
    expect((await api(`/studies/${studyUID}`)).status).toBe(404);
  });

  it('is listed in the trash with who, why, and until when', async () => {
    const entries = (await (await api('/trash')).json()) as any[];
    expect(entries.find((e) => e.id === trashId)).toMatchObject({ level: 'study', study_uid: studyUID, patient_id: 'TRASH-1', instances: 3, reason: 'wrong patient', deleted_by: expect.stringMatching(/^key:/) });
    expect((await api('/trash?page=2')).status).toBe(400);
    expect((await fetch(`${server.url}/api/v1/trash`)).status).toBe(401);
  });

  it('is not taken by verify for unindexed objects', async () => {
    const verify = await cli(['verify'], server.dataDir);
    expect(verify.stdout).not.toMatch(/UNINDEXED/);
    expect(verify.code).toBe(0);
    expect(await qido(`/studies?StudyInstanceUID=${studyUID}`)).toEqual([]);
  });

  it('comes back whole on restore, every byte as it was, and leaves the trash', async () => {
    const response = await api(`/trash/${trashId}/restore`, { method: 'POST' });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ restored: 3, already_stored: 0 });
    const [found] = await qido(`/studies?StudyInstanceUID=${studyUID}`);
    expect(found['00201208'].Value).toEqual([3]);
    expect(found['00201206'].Value).toEqual([1]);
    for (const i of instances) expect(sha256((await retrieve(i)) as Buffer)).toBe(sha256(i.bytes));
    expect(((await (await api('/trash')).json()) as any[]).some((e) => e.id === trashId)).toBe(false);
    expect((await api(`/trash/${trashId}/restore`, { method: 'POST' })).status).toBe(404);
  });
});

describe('a deleted instance', () => {
  it('is restored into its study beside the instances that stayed, and one stored again meanwhile is kept as it is now', async () => {
    const instances = study(3, 'TRASH-2');
    expect((await stow(server.dicomweb, instances.map((i) => i.bytes))).status).toBe(200);
    const [gone, again] = instances;
    const first = await (await adminFetch(`${instanceUrl(gone!)}?reason=blurred`, { method: 'DELETE' })).json();
    const second = await (await adminFetch(`${instanceUrl(again!)}?reason=blurred`, { method: 'DELETE' })).json();
    expect((await qido(`/studies?StudyInstanceUID=${gone!.studyUID}`))[0]['00201208'].Value).toEqual([1]);
    // Sent again after its deletion: the copy stored now is the one that counts.
    expect((await stow(server.dicomweb, [again!.bytes])).status).toBe(200);
    expect(await (await api(`/trash/${first.trash.id}/restore`, { method: 'POST' })).json()).toEqual({ restored: 1, already_stored: 0 });
    expect(await (await api(`/trash/${second.trash.id}/restore`, { method: 'POST' })).json()).toEqual({ restored: 0, already_stored: 1 });
    expect((await qido(`/studies?StudyInstanceUID=${gone!.studyUID}`))[0]['00201208'].Value).toEqual([3]);
    for (const i of instances) expect(sha256((await retrieve(i)) as Buffer)).toBe(sha256(i.bytes));
  });
});

describe('the purge', () => {
  it('deletes a study\'s objects and renderings for good, leaving no empty folder, and keeps an instance stored again since', async () => {
    const instances = study(2, 'TRASH-3');
    const { studyUID } = instances[0]!;
    expect((await stow(server.dicomweb, instances.map((i) => i.bytes))).status).toBe(200);
    await renderAndCache(instances[0]!);
    const { trash } = await (await adminFetch(`${server.dicomweb}/studies/${studyUID}?reason=duplicate+study`, { method: 'DELETE' })).json();
    // Objects stay while the study is in the trash; its renderings, a cache, go at once.
    const inTrash = (await objectKeys(server)).filter((k) => k.includes(studyUID));
    expect(inTrash).toHaveLength(2);
    expect(inTrash.every((k) => !k.startsWith('derived/'))).toBe(true);
    expect((await stow(server.dicomweb, [instances[1]!.bytes])).status).toBe(200);
    const purged = await api(`/trash/${trash.id}`, { method: 'DELETE' });
    expect(purged.status).toBe(204);
    const left = (await objectKeys(server)).filter((k) => k.includes(studyUID));
    expect(left).toHaveLength(1);
    expect(left[0]).toContain(instances[1]!.sopInstanceUID);
    expect(sha256((await retrieve(instances[1]!)) as Buffer)).toBe(sha256(instances[1]!.bytes));
    expect(await retrieve(instances[0]!)).toBe(404);
    expect((await api(`/trash/${trash.id}/restore`, { method: 'POST' })).status).toBe(404);
  });

  it.skipIf(projectBackend().s3)('leaves no empty folder behind a study purged whole', async () => {
    const instances = study(2, 'TRASH-4');
    const { studyUID } = instances[0]!;
    expect((await stow(server.dicomweb, instances.map((i) => i.bytes))).status).toBe(200);
    await renderAndCache(instances[0]!);
    const { trash } = await (await adminFetch(`${server.dicomweb}/studies/${studyUID}?reason=test+study`, { method: 'DELETE' })).json();
    expect((await api(`/trash/${trash.id}`, { method: 'DELETE' })).status).toBe(204);
    for (const folder of ['studies', 'derived/studies']) {
      await expect(fs.access(path.join(server.dataDir, 'objects', folder, studyUID))).rejects.toThrow();
    }
  });

  it('runs by itself once a deletion has been in the trash PACS_TRASH_DAYS', async () => {
    // 0.00003 days: about 2.6 s.
    const quick = await startServer({ env: { PACS_TRASH_DAYS: '0.00003' } });
    try {
      const instances = study(1, 'TRASH-5');
      expect((await stow(quick.dicomweb, instances.map((i) => i.bytes))).status).toBe(200);
      const { trash } = await (await adminFetch(`${quick.dicomweb}/studies/${instances[0]!.studyUID}?reason=test+study`, { method: 'DELETE' })).json();
      expect(trash.id).toBeDefined();
      // The purge looks a quarter of the trash time apart (a minute at most).
      const purged = async () => (await (await adminFetch(`${quick.url}/api/v1/trash`)).json()).length === 0;
      await waitFor('the purge', async () => ((await purged()) ? true : undefined), 20_000);
      expect((await objectKeys(quick)).filter((k) => k.includes(instances[0]!.studyUID))).toEqual([]);
    } finally {
      await quick.stop();
    }
  });
});
