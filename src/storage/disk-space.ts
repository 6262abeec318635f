import fs from 'node:fs/promises';

/** Free space on the disk of a folder, against the floor the operator keeps (PACS_MIN_FREE_BYTES, 0 for none). */
export type DiskSpace = { freeBytes: number; minFreeBytes: number; low: boolean };

/** What an unprivileged writer may still use (bavail): the blocks reserved for root are not the server's. */
export async function diskSpace(folder: string, minFreeBytes: number): Promise<DiskSpace> {
  const s = await fs.statfs(folder);
  const freeBytes = s.bavail * s.bsize;
  return { freeBytes, minFreeBytes, low: minFreeBytes > 0 && freeBytes < minFreeBytes };
}
