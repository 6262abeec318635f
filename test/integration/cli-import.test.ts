import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { withDataSetUids } from '../fixtures/differing-meta-uids.js';
import { handMadeZip } from '../fixtures/hand-made-zip.js';
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

  it('imports a zipped CD by content, with a ZIP inside it and a gzipped file, and leaves its DICOMDIR and README', async () => {
    const work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-zip-'));
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-data-'));
    const files = syntheticSeries(7, { patientName: 'Zipped^Cd' });
    const cd = path.join(work, 'cd');
    await fs.mkdir(path.join(cd, 'DICOM', 'S1'), { recursive: true });
    await fs.mkdir(path.join(work, 'more'));
    await Promise.all(files.slice(0, 4).map((f, i) => fs.writeFile(path.join(cd, 'DICOM', 'S1', `IM${i}`), f)));
    await Promise.all(files.slice(4, 6).map((f, i) => fs.writeFile(path.join(work, 'more', `IM${i}`), f)));
    await fs.writeFile(path.join(cd, 'DICOMDIR'), files[0]!);
    await fs.writeFile(path.join(cd, 'README.TXT'), 'This disc holds images.');
    await fs.writeFile(path.join(cd, 'IM6.dcm'), files[6]!);
    // The real tools: Info-ZIP's zip and gzip, as a hospital's CD export or a colleague would make them.
    await exec('gzip', [path.join(cd, 'IM6.dcm')]);
    await exec('zip', ['-q', '-r', path.join(cd, 'more.zip'), 'more'], { cwd: work });
    await exec('zip', ['-q', '-r', path.join(work, 'cd.zip'), 'cd'], { cwd: work });

    const imported = await cli(['import', path.join(work, 'cd.zip')], dataDir);
    expect(imported.stdout, imported.stderr).toMatch(/7 DICOM file\(s\) found: 7 stored, 0 already stored, 0 refused/);
    expect(imported.stdout).toMatch(/1 other file\(s\) are not DICOM or an archive/);
    expect(imported.code).toBe(0);
    const verify = await cli(['verify'], dataDir);
    expect(verify.stdout).toMatch(/7 indexed object\(s\) checked, 0 unindexed object\(s\), 0 problem\(s\)/);
    // Nothing unpacked is left behind.
    expect(await fs.readdir(path.join(dataDir, 'spool')).catch(() => [])).toEqual([]);
  });

  it('reads a CD\'s DICOMDIR as its list of files, and says which files it names are not on the disc', async () => {
    const cd = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-cd-'));
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-data-'));
    await fs.mkdir(path.join(cd, 'DICOM', 'S1'), { recursive: true });
    const files = syntheticSeries(3, { patientName: 'Directory^Test' });
    await Promise.all(files.map((f, i) => fs.writeFile(path.join(cd, 'DICOM', 'S1', `IM${i}`), f)));
    // dcmtk's dcmmkdir writes the DICOMDIR as a burning tool does; then the copy loses a file.
    await exec('dcmmkdir', ['+r', '+I', 'DICOM'], { cwd: cd });
    await fs.rm(path.join(cd, 'DICOM', 'S1', 'IM2'));

    const imported = await cli(['import', cd], dataDir);
    expect(imported.stdout, imported.stderr).toMatch(/2 DICOM file\(s\) found: 2 stored/);
    expect(imported.stdout).toContain(`skipped ${path.join(cd, 'DICOMDIR')}: it names 1 file(s) that are not beside it: DICOM/S1/IM2; copy the disc again`);
    expect(imported.code).toBe(1);
  });

  it('refuses hostile archives whole, each with its reason, and stores nothing from them', async () => {
    const work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-zip-'));
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-data-'));
    const [good, other] = syntheticSeries(2, { patientName: 'Hostile^Zip' });
    const write = (name: string, bytes: Buffer) => fs.writeFile(path.join(work, name), bytes);
    await write('slip.zip', handMadeZip([{ name: 'ok.dcm', data: good! }, { name: '../../etc/evil.dcm', data: other! }]));
    await write('bomb.zip', handMadeZip([{ name: 'big.dcm', data: Buffer.concat([good!, Buffer.alloc(64 * 1024 * 1024)]), deflate: true }]));
    // The bomb beside a large file that does not compress, so the whole archive's ratio looks harmless.
    await write('padded-bomb.zip', handMadeZip([{ name: 'noise.bin', data: randomBytes(1024 * 1024) }, { name: 'big.dcm', data: Buffer.concat([good!, Buffer.alloc(32 * 1024 * 1024)]), deflate: true }]));
    const nest = (inner: Buffer, depth: number): Buffer => (depth === 0 ? inner : nest(handMadeZip([{ name: `level${depth}.zip`, data: inner }]), depth - 1));
    await write('deep.zip', nest(handMadeZip([{ name: 'deep.dcm', data: good! }]), 2));
    await write('broken.zip', Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(200, 7)]));

    const imported = await cli(['import', work], dataDir);
    expect(imported.stdout, imported.stderr).toMatch(/0 DICOM file\(s\) found: 0 stored/);
    const skipped = (name: string) => imported.stdout.split('\n').find((line) => line.includes(`skipped ${path.join(work, name)}`)) ?? '';
    expect(skipped('slip.zip:')).toMatch(/an entry's name leaves the archive \(invalid relative path: \.\.\/\.\.\/etc\/evil\.dcm\)/);
    expect(skipped('bomb.zip:')).toMatch(/would expand to 64.0 MiB from [0-9.]+ KiB, more than 200 times \(a decompression bomb\?\); nothing from it was stored/);
    expect(skipped('padded-bomb.zip:')).toMatch(/big\.dcm would expand \d+ times \(a decompression bomb\?\)/);
    expect(skipped('deep.zip!/level1.zip!/level2.zip:')).toMatch(/nested deeper than 2 are not opened/);
    expect(skipped('broken.zip:')).toMatch(/not a ZIP archive that can be read/);
    expect(imported.stderr).not.toMatch(/\n\s+at /);
    expect(imported.code).toBe(1);
    const verify = await cli(['verify'], dataDir);
    expect(verify.stdout).toMatch(/^0 indexed object\(s\) checked/m);
  });
});

const exec = promisify(execFile);
