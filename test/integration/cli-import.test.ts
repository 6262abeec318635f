import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
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
});
