import { describe, expect, it } from 'vitest';
import { decideUploads, outcomeOf, takes, type Upload } from '../../src/catalog/decision.js';

const a = (sha256: string, sopUid = '1.2.3'): Upload => ({ sopUid, sha256 });
const none = new Map<string, string>();
const holding = (sha256: string, sopUid = '1.2.3') => new Map([[sopUid, sha256]]);

describe('the ingest decision', () => {
  it('stores an instance the index does not hold', () => {
    expect(decideUploads([a('x')], none, false)).toEqual(['new']);
  });

  it('acknowledges the same bytes again as a duplicate, overwriting or not', () => {
    expect(decideUploads([a('x')], holding('x'), false)).toEqual(['duplicate']);
    expect(decideUploads([a('x')], holding('x'), true)).toEqual(['duplicate']);
  });

  it('refuses different bytes without overwrite and replaces them with it', () => {
    expect(decideUploads([a('y')], holding('x'), false)).toEqual(['conflict']);
    expect(decideUploads([a('y')], holding('x'), true)).toEqual(['replace']);
  });

  it('lets the first upload of an instance in one group win', () => {
    expect(decideUploads([a('x'), a('x')], none, false)).toEqual(['new', 'duplicate']);
    expect(decideUploads([a('x'), a('y')], none, false)).toEqual(['new', 'conflict']);
    expect(decideUploads([a('x'), a('y')], none, true)).toEqual(['new', 'conflict']);
    expect(decideUploads([a('y'), a('z'), a('y')], holding('x'), true)).toEqual(['replace', 'conflict', 'duplicate']);
  });

  it('decides each instance of a group on its own', () => {
    const index = new Map([['1.1', 'x'], ['1.2', 'x']]);
    expect(decideUploads([a('x', '1.1'), a('y', '1.2'), a('x', '1.3')], index, false)).toEqual(['duplicate', 'conflict', 'new']);
  });

  it('decides racing groups by what the index holds when each commits, not when it began', () => {
    // Both groups read an empty index; the first commits its bytes, then the second is decided again at its commit.
    const first = [a('x')];
    const second = [a('y')];
    expect(decideUploads(first, none, false)).toEqual(['new']);
    expect(decideUploads(second, none, false)).toEqual(['new']);
    const afterFirst = holding('x');
    expect(decideUploads(second, afterFirst, false)).toEqual(['conflict']);
    expect(decideUploads(second, afterFirst, true)).toEqual(['replace']);
    expect(decideUploads(first, afterFirst, true)).toEqual(['duplicate']);
  });

  it('never changes the index it is given', () => {
    const index = holding('x');
    decideUploads([a('y'), a('z', '9.9')], index, true);
    expect([...index]).toEqual([['1.2.3', 'x']]);
  });

  it('puts bytes in the index only for new and replacing uploads', () => {
    expect((['new', 'replace', 'duplicate', 'conflict'] as const).map(takes)).toEqual([true, true, false, false]);
    expect((['new', 'replace', 'duplicate', 'conflict'] as const).map(outcomeOf)).toEqual(['stored', 'stored', 'duplicate', 'conflict']);
  });
});
