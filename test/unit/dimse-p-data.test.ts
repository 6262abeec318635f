import { describe, expect, it } from 'vitest';
import { pDataMessage } from '../../src/dimse/p-data.js';

/** The PDUs of a byte stream (PS3.8 9.3.5): each PDV's context, control bits and bytes, and each PDU's length. */
function readPdus(bytes: Buffer): Array<{ pduLength: number; pdvs: Array<{ context: number; control: number; data: Buffer }> }> {
  const pdus = [];
  for (let at = 0; at < bytes.length; ) {
    expect(bytes[at]).toBe(0x04);
    const pduLength = bytes.readUInt32BE(at + 2);
    const end = at + 6 + pduLength;
    const pdvs = [];
    for (let item = at + 6; item < end; ) {
      const length = bytes.readUInt32BE(item);
      pdvs.push({ context: bytes[item + 4]!, control: bytes[item + 5]!, data: bytes.subarray(item + 6, item + 4 + length) });
      item += 4 + length;
    }
    pdus.push({ pduLength, pdvs });
    at = end;
  }
  return pdus;
}

describe('P-DATA-TF messages', () => {
  it('carry the command in one PDV and the data set cut to the maximum PDU length, last fragment marked', () => {
    const command = Buffer.from('command set bytes!');
    const dataSet = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
    const pdus = readPdus(pDataMessage(7, command, dataSet, 4096));
    expect(pdus.every((p) => p.pduLength <= 4096 && p.pdvs.length === 1)).toBe(true);
    const pdvs = pdus.map((p) => p.pdvs[0]!);
    expect(pdvs.every((p) => p.context === 7)).toBe(true);
    expect(pdvs[0]).toEqual({ context: 7, control: 0x03, data: command });
    expect(pdvs.slice(1).map((p) => p.control)).toEqual([0, 0, 0x02]);
    expect(Buffer.concat(pdvs.slice(1).map((p) => p.data)).equals(dataSet)).toBe(true);
  });

  it('send a command alone when there is no data set, and take 0 as no limit', () => {
    const pdus = readPdus(pDataMessage(1, Buffer.from('cmd!'), undefined, 0));
    expect(pdus).toHaveLength(1);
    expect(pdus[0]!.pdvs).toEqual([{ context: 1, control: 0x03, data: Buffer.from('cmd!') }]);
    const large = readPdus(pDataMessage(1, Buffer.from('cmd!'), Buffer.alloc(100_000), 0));
    expect(large).toHaveLength(2);
  });
});
