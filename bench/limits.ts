import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Corpus } from './corpus.js';
import { checkInterrupted } from './interrupt.js';
import { syncDisks } from './measure.js';

export type Throughput = { seconds: number; bytes: number; mbPerSecond: number };

/** Files handled at once by the copy: as many as the STOW requests in flight. */
const COPY_CONCURRENCY = 4;

/** Reads the whole corpus once, untimed, so that every timed phase starts from the same page cache. */
export async function warmCorpus(corpus: Corpus): Promise<void> {
  for (const instance of corpus.instances) {
    checkInterrupted();
    await fs.readFile(path.join(corpus.dir, instance.file));
  }
}

/**
 * What storing costs at least: read each file, write it to a new file on the disk the servers store on,
 * fsync it (as a store must before acknowledging), with as many files in flight as STOW requests.
 */
export async function rawCopyWithFsync(corpus: Corpus, targetDir: string): Promise<Throughput> {
  await fs.mkdir(targetDir, { recursive: true });
  syncDisks();
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < corpus.instances.length; i = next++) {
      checkInterrupted();
      const bytes = await fs.readFile(path.join(corpus.dir, corpus.instances[i]!.file));
      const handle = await fs.open(path.join(targetDir, `${i}.dcm`), 'w');
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  };
  await Promise.all(Array.from({ length: COPY_CONCURRENCY }, worker));
  const folder = await fs.open(targetDir, 'r');
  await folder.sync();
  await folder.close();
  const result = throughput(corpus.bytes, performance.now() - started);
  await fs.rm(targetDir, { recursive: true, force: true });
  return result;
}

/** What checksumming costs at least: one SHA-256 pass over every file on one thread, as a server's main thread would. */
export async function sha256Pass(corpus: Corpus): Promise<Throughput> {
  const started = performance.now();
  for (const instance of corpus.instances) {
    checkInterrupted();
    createHash('sha256').update(await fs.readFile(path.join(corpus.dir, instance.file))).digest();
  }
  return throughput(corpus.bytes, performance.now() - started);
}

export function throughput(bytes: number, ms: number): Throughput {
  return { seconds: ms / 1000, bytes, mbPerSecond: bytes / 1e6 / (ms / 1000) };
}
