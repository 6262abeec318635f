import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance, type SyntheticOptions } from '../fixtures/synthetic.js';
import { projectBackend } from '../helpers/backend.js';
import { cli } from '../helpers/cli.js';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';
import { objectKeys } from '../helpers/stored.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

type Instance = { studyUID: string; seriesUID: string; sopInstanceUID: string; bytes: Buffer };

/** A study of three CT instances in one series and one MR instance in another, stored through STOW. */
async function storeStudy(server: RunningServer): Promise<{ studyUID: string; ct: Instance[]; mr: Instance }> {
  const studyUID = newUid();
  const make = (o: SyntheticOptions & { seriesUID: string }): Instance => {
    const sopInstanceUID = newUid();
    return { studyUID, seriesUID: o.seriesUID, sopInstanceUID, bytes: syntheticInstance({ ...o, studyUID, sopInstanceUID, patientName: 'Delete^Me' }) };
  };
  const ctSeries = newUid();
  const ct = [1, 2, 3].map((n) => make({ seriesUID: ctSeries, modality: 'CT', seriesNumber: 1, instanceNumber: n }));
  const mr = make({ seriesUID: newUid(), modality: 'MR', seriesNumber: 2 });
  const response = await stow(server.dicomweb, [...ct, mr].map((i) => i.bytes));
  expect(response.status, await response.clone().text()).toBe(200);
  return { studyUID, ct, mr };
}

const urlOf = (server: RunningServer, i: { studyUID: string; seriesUID?: string; sopInstanceUID?: string }) =>
  `${server.dicomweb}/studies/${i.studyUID}${i.seriesUID ? `/series/${i.seriesUID}` : ''}${i.sopInstanceUID ? `/instances/${i.sopInstanceUID}` : ''}`;

const remove = (server: RunningServer, i: { studyUID: string; seriesUID?: string; sopInstanceUID?: string }) => adminFetch(`${urlOf(server, i)}?reason=test+deletion`, { method: 'DELETE' });

const retrieve = (server: RunningServer, i: Instance) =>
  adminFetch(urlOf(server, i), { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });

async function studyOf(server: RunningServer, studyUID: string): Promise<any> {
  const response = await adminFetch(`${server.dicomweb}/studies?StudyInstanceUID=${studyUID}`, { headers: { Accept: 'application/dicom+json' } });
  expect(response.status).toBe(200);
  const found = await response.json();
  expect(found.length).toBeLessThanOrEqual(1);
  return found[0];
}

async function seriesOf(server: RunningServer, studyUID: string): Promise<string[]> {
  const response = await adminFetch(`${server.dicomweb}/studies/${studyUID}/series`, { headers: { Accept: 'application/dicom+json' } });
  expect(response.status).toBe(200);
  return (await response.json()).map((s: any) => s['0020000E'].Value[0]).sort();
}

/** Keys of the objects in the server's store whose key names the study. */
async function objectKeysOf(server: RunningServer, studyUID: string): Promise<string[]> {
  return (await objectKeys(server)).filter((key) => key.includes(studyUID));
}

/** Deletes that are final at once (PACS_TRASH_DAYS=0); trash.test.ts has the trash, the default. */
const FINAL = { PACS_TRASH_DAYS: '0' };
let server: RunningServer;

beforeAll(async () => {
  server = await startServer({ env: FINAL });
});
afterAll(async () => {
  await server?.stop();
});

describe('DELETE on DICOMweb resources', () => {
  it('deletes one instance: its retrieve is 404, metadata and the study counts no longer include it', async () => {
    const { studyUID, ct } = await storeStudy(server);
    const [gone, ...kept] = ct as [Instance, ...Instance[]];
    expect((await retrieve(server, gone)).status).toBe(200);
    expect((await studyOf(server, studyUID))['00201208'].Value).toEqual([4]);

    const response = await remove(server, gone);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await response.json()).toEqual({ deleted: { studies: 0, series: 0, instances: 1 }, reason: 'test deletion' });

    const retrieved = await retrieve(server, gone);
    expect(retrieved.status).toBe(404);
    expect((await retrieved.json()).detail).toMatch(/no instance with that UID is stored/);
    const metadata = await adminFetch(`${server.dicomweb}/studies/${studyUID}/series/${gone.seriesUID}/metadata`);
    expect(metadata.status).toBe(200);
    expect((await metadata.json()).map((j: any) => j['00080018'].Value[0]).sort()).toEqual(kept.map((i) => i.sopInstanceUID).sort());
    const study = await studyOf(server, studyUID);
    expect(study['00201208'].Value).toEqual([3]);
    expect(study['00201206'].Value).toEqual([2]);
    expect(study['00080061'].Value.sort()).toEqual(['CT', 'MR']);
    const series = await (await adminFetch(`${server.dicomweb}/studies/${studyUID}/series?SeriesInstanceUID=${gone.seriesUID}`)).json();
    expect(series[0]['00201209'].Value).toEqual([2]);
  });

  it('removes a series with its last instance, and its modality from the study', async () => {
    const { studyUID, ct, mr } = await storeStudy(server);
    expect(await seriesOf(server, studyUID)).toEqual([ct[0]!.seriesUID, mr.seriesUID].sort());

    const response = await remove(server, mr);
    expect(await response.json()).toEqual({ deleted: { studies: 0, series: 1, instances: 1 }, reason: 'test deletion' });

    expect(await seriesOf(server, studyUID)).toEqual([ct[0]!.seriesUID]);
    const study = await studyOf(server, studyUID);
    expect(study['00201208'].Value).toEqual([3]);
    expect(study['00201206'].Value).toEqual([1]);
    expect(study['00080061'].Value).toEqual(['CT']);
    expect((await adminFetch(`${server.dicomweb}/studies/${studyUID}/series/${mr.seriesUID}/metadata`)).status).toBe(404);
  });

  it('deletes a whole series by its URL and leaves the other series of the study', async () => {
    const { studyUID, ct, mr } = await storeStudy(server);
    const response = await remove(server, { studyUID, seriesUID: ct[0]!.seriesUID });
    expect(await response.json()).toEqual({ deleted: { studies: 0, series: 1, instances: 3 }, reason: 'test deletion' });
    expect(await seriesOf(server, studyUID)).toEqual([mr.seriesUID]);
    const study = await studyOf(server, studyUID);
    expect(study['00201208'].Value).toEqual([1]);
    expect(study['00080061'].Value).toEqual(['MR']);
    expect((await retrieve(server, mr)).status).toBe(200);
  });

  it('deletes a study: gone from QIDO, its objects gone from the store', async () => {
    const { studyUID, ct } = await storeStudy(server);
    expect(await objectKeysOf(server, studyUID)).toHaveLength(4);

    const response = await remove(server, { studyUID });
    expect(await response.json()).toEqual({ deleted: { studies: 1, series: 2, instances: 4 }, reason: 'test deletion' });

    expect(await studyOf(server, studyUID)).toBeUndefined();
    expect(await objectKeysOf(server, studyUID)).toEqual([]);
    expect((await retrieve(server, ct[0]!)).status).toBe(404);
  });

  it('answers 404 to deleting again, at every level', async () => {
    const { studyUID, ct } = await storeStudy(server);
    expect((await remove(server, ct[0]!)).status).toBe(200);
    const again = await remove(server, ct[0]!);
    expect(again.status).toBe(404);
    expect(await again.json()).toEqual({ error: 'not-found', detail: 'no instance with that UID is stored' });

    expect((await remove(server, { studyUID })).status).toBe(200);
    const series = await remove(server, { studyUID, seriesUID: ct[1]!.seriesUID });
    expect(series.status).toBe(404);
    expect((await series.json()).detail).toBe('no series with that UID is stored');
    const study = await remove(server, { studyUID });
    expect(study.status).toBe(404);
    expect((await study.json()).detail).toBe('no study with that UID is stored');
  });

  it('deletes nothing without a reason, and keeps the reason given in the audit trail', async () => {
    const { studyUID, ct } = await storeStudy(server);
    for (const reason of ['', '?reason=', '?reason=%20x%20', `?reason=${'x'.repeat(501)}`]) {
      const refused = await adminFetch(`${urlOf(server, { studyUID })}${reason}`, { method: 'DELETE' });
      expect(refused.status, reason).toBe(400);
      expect((await refused.json()).detail).toMatch(/say why this is deleted.*\?reason=.*X-Deletion-Reason/);
    }
    expect((await studyOf(server, studyUID))['00201208'].Value).toEqual([4]);
    const byHeader = await adminFetch(urlOf(server, ct[0]!), { method: 'DELETE', headers: { 'X-Deletion-Reason': 'sent to the wrong patient' } });
    expect(byHeader.status).toBe(200);
    expect((await byHeader.json()).reason).toBe('sent to the wrong patient');
    expect((await adminFetch(`${urlOf(server, { studyUID })}?reason=duplicate+study`, { method: 'DELETE' })).status).toBe(200);
    const audit = (await (await adminFetch(`${server.url}/api/v1/audit?limit=50`)).json()) as Array<{ method: string; query: string | null; sop_uid?: string }>;
    const deletions = JSON.stringify(audit.filter((event) => event.method === 'DELETE'));
    expect(deletions).toContain('reason=sent+to+the+wrong+patient');
    expect(deletions).toContain('reason=duplicate+study');
  });

  it('refuses a malformed UID with 400 and deletes nothing', async () => {
    const { studyUID, ct } = await storeStudy(server);
    for (const url of [
      `${server.dicomweb}/studies/1.2.abc`,
      `${server.dicomweb}/studies/${studyUID}/series/01.2`,
      `${server.dicomweb}/studies/${studyUID}/series/${ct[0]!.seriesUID}/instances/${'1.'.repeat(40)}1`,
    ]) {
      const response = await adminFetch(`${url}?reason=test+deletion`, { method: 'DELETE' });
      expect(response.status, url).toBe(400);
      expect((await response.json()).error).toBe('bad-request');
    }
    expect((await studyOf(server, studyUID))['00201208'].Value).toEqual([4]);
  });

  it('stores an instance again after it was deleted', async () => {
    const { ct } = await storeStudy(server);
    const instance = ct[0]!;
    expect((await remove(server, instance)).status).toBe(200);
    expect((await retrieve(server, instance)).status).toBe(404);

    expect((await stow(server.dicomweb, [instance.bytes])).status).toBe(200);
    const [part] = await readMultipartResponse(await retrieve(server, instance));
    expect(sha256(part!.body)).toBe(sha256(instance.bytes));
    expect((await studyOf(server, instance.studyUID))['00201208'].Value).toEqual([4]);
  });

  it('leaves no index row without its object and no object without its row, as verify sees it', async () => {
    const { studyUID, ct, mr } = await storeStudy(server);
    await remove(server, ct[0]!);
    await remove(server, mr);
    const other = await storeStudy(server);
    await remove(server, { studyUID: other.studyUID });
    const verify = await cli(['verify'], server.dataDir);
    expect(verify.stdout).toMatch(/ 0 unindexed object\(s\), 0 problem\(s\)/);
    expect(verify.stdout).not.toMatch(/MISSING|UNINDEXED/);
    expect(verify.code).toBe(0);
    expect((await studyOf(server, studyUID))['00201208'].Value).toEqual([2]);
  });
});

// A folder in place of the file is what makes its removal fail; an S3 store has no such thing, and its DELETE of a key never fails but when the store is away.
describe.skipIf(projectBackend().s3)('DELETE when an object cannot be removed', () => {
  let own: RunningServer;
  beforeAll(async () => {
    own = await startServer({ env: FINAL });
  });
  afterAll(async () => {
    await own?.stop();
  });

  it('keeps the deletion, logs the object key, and verify lists the leftover', async () => {
    const { ct } = await storeStudy(own);
    const instance = ct[0]!;
    const [key] = (await objectKeysOf(own, instance.studyUID)).filter((k) => k.includes(instance.sopInstanceUID));
    const file = path.join(own.dataDir, 'objects', key!);
    // A folder where the file was: removing it as a file fails, whoever runs the test (root included).
    await fs.rm(file);
    await fs.mkdir(file);
    await fs.writeFile(path.join(file, 'inner'), 'x');

    const response = await remove(own, instance);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ deleted: { studies: 0, series: 0, instances: 1 }, reason: 'test deletion' });
    expect((await retrieve(own, instance)).status).toBe(404);
    const warning = own.logs.map((l) => JSON.parse(l.startsWith('{') ? l : 'null')).find((l) => l?.level === 40 && l.objectKey?.includes(instance.sopInstanceUID));
    expect(warning, own.logs.join('\n')).toBeDefined();

    const verify = await cli(['verify'], own.dataDir);
    expect(verify.stdout).toMatch(new RegExp(`UNINDEXED studies/.*${instance.sopInstanceUID.replaceAll('.', '\\.')}_[0-9a-f-]+\\.dcm/inner`));
    expect(verify.stdout).not.toMatch(/MISSING/);
  });
});
