import { describe, expect, it } from 'vitest';
import { DiskFull } from '../../src/errors.js';

const coded = (code: string) => Object.assign(new Error(`failed with ${code}`), { code });

describe('DiskFull.of', () => {
  it('knows a full disk by the code of whichever layer met it', () => {
    for (const code of ['ENOSPC', 'EDQUOT', 'SQLITE_FULL', '53100']) {
      const full = DiskFull.of(coded(code));
      expect(full, code).toBeInstanceOf(DiskFull);
      expect(full!.message).toContain(code);
      expect(full!.message).toMatch(/full/);
    }
  });

  it('looks through the errors wrapping it', () => {
    const wrapped = new Error('Failed query: insert into "instances" …', { cause: coded('SQLITE_FULL') });
    expect(DiskFull.of(new Error('storing a batch failed', { cause: wrapped }))).toBeInstanceOf(DiskFull);
  });

  it('keeps a DiskFull as it is, and takes other failures for what they are', () => {
    const full = new DiskFull('the disk is nearly full');
    expect(DiskFull.of(full)).toBe(full);
    for (const other of [coded('EIO'), coded('EACCES'), coded('SQLITE_BUSY'), coded('constructor'), new Error('no code'), 'ENOSPC', undefined]) {
      expect(DiskFull.of(other)).toBeUndefined();
    }
  });
});
