import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { withDataSetUids } from '../fixtures/differing-meta-uids.js';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { cli } from '../helpers/cli.js';
import { adminFetch, startServer } from '../helpers/server.js';

describe('command-line import', () => {
  it('finds DICOM files by content in nested folders, stores them once, and says what it refused', async () => {
    const source = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-cd-'));
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-data-'));
    const files = syntheticSeries(5, { patientName: 'Import^Test' });
    await fs.mkdir(path.join(source, 'DICOM', 'S1'), { recursive: true });
    await Promise.all(files.map((f, i) => fs.writeFile(path.join(source, 'DICOM', 'S1', `IM${i}`), f)));
    await fs.writeFile(path.join(source, 'README.TXT'), 'not an image');
    const broken = Buffer.from(files[0]!.subarray(0, 400));
    await fs.writeFile(path.join(source, 'DICOM', 'BROKEN'), broken);

    const first = await cli(['import', source], dataDir);
    expect(first.stdout).toMatch(/6 DICOM file\(s\) found: 5 stored, 0 already stored, 1 refused/);
    expect(first.stdout).toMatch(/BROKEN: /);
    expect(first.code).toBe(1);
    const again = await cli(['import', path.join(source, 'DICOM', 'S1')], dataDir);
    expect(again.stdout).toMatch(/5 DICOM file\(s\) found: 0 stored, 5 already stored, 0 refused/);
    expect(again.code).toBe(0);

    const server = await startServer({ dataDir });
    try {
      const studies = await (await adminFetch(`${server.dicomweb}/studies?PatientName=import*`)).json();
      expect(studies).toHaveLength(1);
      expect(studies[0]['00201208'].Value).toEqual([5]);
    } finally {
      await server.stop();
    }
    const verify = await cli(['verify'], dataDir);
    expect(verify.stdout).toMatch(/5 indexed object\(s\) checked, 0 unindexed object\(s\), 0 problem\(s\)/);
  });

  it("stores a file whose meta information names another SOP Instance UID under its data set's, and says so", async () => {
    const source = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-cd-'));
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-data-'));
    const ids = { study: newUid(), series: newUid(), sop: newUid(), sopClass: '1.2.840.10008.5.1.4.1.1.7' };
    await fs.writeFile(path.join(source, 'IM0'), await withDataSetUids(path.resolve(import.meta.dirname, '../fixtures/dicom/explicit-le.dcm'), ids));

    const imported = await cli(['import', source], dataDir);
    expect(imported.stdout).toMatch(/1 DICOM file\(s\) found: 1 stored, 0 already stored, 0 refused/);
    expect(imported.stdout).toContain(`note ${path.join(source, 'IM0')}: its file meta information names MediaStorageSOPInstanceUID (0002,0003) 1.2.826.0.1.3680043.9.7433.77.10.1.1 where its data set has SOPInstanceUID (0008,0018) ${ids.sop}`);
    expect(imported.code).toBe(0);

    const server = await startServer({ dataDir });
    try {
      const found = await (await adminFetch(`${server.dicomweb}/instances?SOPInstanceUID=${ids.sop}`)).json();
      expect(found).toHaveLength(1);
    } finally {
      await server.stop();
    }
  });

  it('imports a single file given by name, and answers a path that does not exist with exit 2 and a line, not a stack trace', async () => {
    const source = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-cd-'));
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-data-'));
    const [file] = syntheticSeries(1, { patientName: 'Single^File' });
    await fs.writeFile(path.join(source, 'IM0'), file!);

    const single = await cli(['import', path.join(source, 'IM0')], dataDir);
    expect(single.stdout).toMatch(/1 DICOM file\(s\) found: 1 stored, 0 already stored, 0 refused/);
    expect(single.code).toBe(0);

    const missing = await cli(['import', path.join(source, 'nowhere')], dataDir);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`import: ${path.join(source, 'nowhere')} is not a folder or a file that can be read`);
    expect(missing.stderr).not.toMatch(/\n\s+at /);

    const none = await cli(['import'], dataDir);
    expect(none.code).toBe(2);
  });
});
