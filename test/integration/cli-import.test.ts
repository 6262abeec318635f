import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { adminFetch, startServer } from '../helpers/server.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');

function cli(args: string[], dataDir: string) {
  return run(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: ROOT, env: { ...process.env, PACS_STORAGE_DIR: dataDir } }).then(
    (r) => ({ code: 0, ...r }),
    (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }),
  );
}

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
