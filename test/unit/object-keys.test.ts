import { describe, expect, it } from 'vitest';
import { instanceKey, instanceKeyParts, newVersion } from '../../src/storage/keys.js';

const sha = 'ab'.repeat(32);
const uids = { studyUid: '1.2.3', seriesUid: '1.2.3.4', sopUid: '1.2.3.4.5' };

describe('instance object keys', () => {
  it('gives every write of one instance a key of its own, named by its content', () => {
    const [first, second] = [newVersion(sha), newVersion(sha)];
    expect(first).not.toBe(second);
    expect(first.startsWith(sha.slice(0, 16))).toBe(true);
    expect(instanceKey('1.2.3', '1.2.3.4', '1.2.3.4.5', first)).toBe(`studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5_${first}.dcm`);
  });

  it('reads the UIDs back from a versioned key and from a key written before versions', () => {
    expect(instanceKeyParts(instanceKey('1.2.3', '1.2.3.4', '1.2.3.4.5', newVersion(sha)))).toEqual(uids);
    expect(instanceKeyParts('studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5.dcm')).toEqual(uids);
  });

  it('takes no other key for an instance', () => {
    for (const key of [
      'studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5_latest.dcm',
      'studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/0123456789abcdef-0123456789ab.dcm',
      'studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5_../x.dcm',
      'studies/1.2.3/series/1.2.3.4/instances/01.2.dcm',
      'derived/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/abc.jpg',
    ]) {
      expect(instanceKeyParts(key), key).toBeUndefined();
    }
    expect(() => instanceKey('1.2.3', '1.2.3.4', '1.2.3.4.5', '../escape')).toThrow();
    expect(() => newVersion('not a checksum')).toThrow();
  });
});
