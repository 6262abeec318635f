import dimse from 'dcmjs-dimse';
import { describe, expect, it } from 'vitest';
import { decodeCommandSet, encodeCommandSet } from '../../src/dimse/command-set.js';

const { requests, responses, Dataset } = dimse;

/** Every kind of command this service reads or writes, as dcmjs-dimse builds them. */
function commands(): Array<{ getCommandDataset(): dimse.Dataset }> {
  const dataset = new Dataset({ PatientName: 'A' }, '1.2.840.10008.1.2.1');
  const echo = new requests.CEchoRequest();
  const store = new requests.CStoreRequest(dataset);
  const find = requests.CFindRequest.createStudyFindRequest({ PatientName: 'A*' });
  const move = requests.CMoveRequest.createStudyMoveRequest('STORESCP', '1.2.3');
  const get = requests.CGetRequest.createStudyGetRequest('1.2.3');
  const all: Array<{ getCommandDataset(): dimse.Dataset }> = [echo, store, find, move, get];
  const pairs = [
    [echo, responses.CEchoResponse],
    [store, responses.CStoreResponse],
    [find, responses.CFindResponse],
    [move, responses.CMoveResponse],
    [get, responses.CGetResponse],
  ] as const;
  for (const [request, Response] of pairs) {
    for (const [status, comment] of [[0xff00, undefined], [0xa700, 'too many matches: narrow the query'], [0xc000, 'odd']] as const) {
      const response = (Response as unknown as { fromRequest(r: unknown): dimse.responses.CMoveResponse }).fromRequest(request);
      response.setStatus(status);
      if (comment) response.setErrorComment(comment);
      all.push(response);
    }
  }
  const counted = responses.CMoveResponse.fromRequest(move);
  counted.setStatus(0xff00);
  counted.setRemaining(3);
  counted.setCompleted(70_000 % 65_536);
  counted.setFailures(1);
  counted.setWarnings(0);
  all.push(counted);
  return all;
}

describe('DIMSE command sets (PS3.7 E.1)', () => {
  it('are written byte for byte as dcmjs writes them, and read back to the same elements', () => {
    for (const command of commands()) {
      const dataset = command.getCommandDataset();
      const theirs = dataset.getDenaturalizedCommandDataset();
      expect(encodeCommandSet(dataset.getElements())?.toString('hex')).toBe(theirs.toString('hex'));
      const { _vrMap, ...read } = new Dataset(theirs).getElements() as Record<string, unknown>;
      expect(decodeCommandSet(theirs)).toEqual(read);
    }
  });

  it('leave to dcmjs what they do not know: another group, an unknown element, a value of the wrong size', () => {
    const command = commands()[1]!.getCommandDataset().getDenaturalizedCommandDataset();
    const otherGroup = Buffer.from(command);
    otherGroup.writeUInt16LE(0x0008, 12);
    expect(decodeCommandSet(otherGroup)).toBeUndefined();
    const unknown = Buffer.from(command);
    unknown.writeUInt16LE(0x0001, 14);
    expect(decodeCommandSet(unknown)).toBeUndefined();
    expect(decodeCommandSet(command.subarray(0, command.length - 1))).toBeUndefined();
    expect(decodeCommandSet(Buffer.alloc(0))).toBeUndefined();
    expect(encodeCommandSet({ CommandField: 1, AttributeIdentifierList: [0x00100010] })).toBeUndefined();
    expect(encodeCommandSet({ MessageID: 70_000 })).toBeUndefined();
  });
});
