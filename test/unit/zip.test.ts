import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { zipStream, type ZipEntry } from '../../src/read/zip.js';

const run = promisify(execFile);

async function collect(entries: ZipEntry[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of zipStream(entries)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

const entry = (name: string, bytes: Buffer): ZipEntry => ({ name, size: bytes.length, modified: new Date(2026, 0, 5, 10, 30), body: async function* () { yield bytes; } });

describe('the streamed ZIP writer', () => {
  it('writes ZIP64 end records past 65,535 entries, which another reader takes', async () => {
    const entries = Array.from({ length: 70_000 }, (_, i) => entry(`f/${i}.txt`, Buffer.from(String(i))));
    const file = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-zip-')), 'many.zip');
    await fs.writeFile(file, await collect(entries));
    const script = 'import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nprint(len(z.infolist()), z.read("f/69999.txt").decode(), z.infolist()[0].date_time)';
    const { stdout } = await run('python3', ['-c', script, file]);
    expect(stdout.trim()).toBe('70000 69999 (2026, 1, 5, 10, 30, 0)');
    await fs.rm(path.dirname(file), { recursive: true });
  });

  it('fails, rather than write a wrong archive, when an entry holds other than the bytes announced', async () => {
    await expect(collect([{ ...entry('short.dcm', Buffer.from('abc')), size: 10 }])).rejects.toThrow(/held 3 bytes, not the 10 announced/);
  });
});
