import type { Socket } from 'node:net';

/**
 * P-DATA-TF PDUs (PS3.8 9.3.5) carrying one DIMSE message, as this server writes them itself where a message is sent
 * often enough for dcmjs-dimse's general path to show (C-FIND matches): the command set in one PDV, the data set cut
 * into as many as the association's maximum PDU length allows, each PDV in a PDU of its own.
 */
const P_DATA_TF = 0x04;
/** Message control header bits (PS3.8 E.2). */
const COMMAND = 0x01;
const LAST_FRAGMENT = 0x02;
/** PDU header (type, reserved, length) and PDV item header (length, presentation context, control). */
const PDU_HEADER = 6;
const PDV_HEADER = 6;
/** What dcmjs-dimse sends at most when the peer sets no limit (0). */
const UNLIMITED_PDU = 4 * 1024 * 1024;

export function pDataMessage(contextId: number, command: Buffer, dataSet: Buffer | undefined, maxPduLength: number): Buffer {
  const room = (maxPduLength === 0 ? UNLIMITED_PDU : Math.min(maxPduLength, UNLIMITED_PDU)) - PDV_HEADER;
  const pdus = [pdu(contextId, command, COMMAND | LAST_FRAGMENT)];
  for (let at = 0; dataSet && at < dataSet.length; at += room) {
    pdus.push(pdu(contextId, dataSet.subarray(at, at + room), at + room >= dataSet.length ? LAST_FRAGMENT : 0));
  }
  return Buffer.concat(pdus);
}

function pdu(contextId: number, fragment: Buffer, control: number): Buffer {
  const header = Buffer.alloc(PDU_HEADER + PDV_HEADER);
  header.writeUInt8(P_DATA_TF, 0);
  header.writeUInt32BE(PDV_HEADER + fragment.length, 2);
  // The item length counts the context ID and control bytes that follow it.
  header.writeUInt32BE(2 + fragment.length, 6);
  header.writeUInt8(contextId, 10);
  header.writeUInt8(control, 11);
  return Buffer.concat([header, fragment]);
}

/** Where a data set is streamed to: a connection's socket. */
export type Connection = Pick<Socket, 'write' | 'once' | 'off' | 'destroyed'>;

/**
 * A data set sent as P-DATA-TF PDUs while its bytes arrive (after a command dcmjs-dimse sent), a PDU's worth at a
 * time, waiting for the socket to drain: memory stays at a few PDUs whatever the instance's size. The last fragment
 * is marked only once `chunks` has ended, so a source that fails before its end (a stored file found damaged) leaves
 * the receiver without a whole data set, and throws here.
 */
export async function sendDataSet(connection: Connection, contextId: number, chunks: AsyncIterable<Uint8Array>, maxPduLength: number): Promise<void> {
  const room = (maxPduLength === 0 ? UNLIMITED_PDU : Math.min(maxPduLength, UNLIMITED_PDU)) - PDV_HEADER;
  let held: Buffer = Buffer.alloc(0);
  for await (const chunk of chunks) {
    held = held.length === 0 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.concat([held, chunk]);
    // At least a byte is held back for the last fragment.
    let at = 0;
    for (; held.length - at > room; at += room) await write(connection, pdu(contextId, held.subarray(at, at + room), 0));
    held = held.subarray(at);
  }
  await write(connection, pdu(contextId, held, LAST_FRAGMENT));
}

async function write(connection: Connection, bytes: Buffer): Promise<void> {
  if (connection.destroyed) throw new Error('the connection closed while a data set was being sent');
  if (connection.write(bytes)) return;
  await new Promise<void>((resolve, reject) => {
    const drained = () => {
      connection.off('close', closed);
      resolve();
    };
    const closed = () => {
      connection.off('drain', drained);
      reject(new Error('the connection closed while a data set was being sent'));
    };
    connection.once('drain', drained);
    connection.once('close', closed);
  });
}
