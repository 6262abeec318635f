import type { Socket } from 'node:net';
import dimse from 'dcmjs-dimse';
import { decodeCommandSet, encodeCommandSet } from './command-set.js';

/**
 * Every place this service reaches past dcmjs-dimse's documented interface, kept together: command sets go through
 * this server's own codec (command-set.ts) instead of dcmjs's; the bytes of every data set it reads are kept so that a
 * C-FIND or C-MOVE identifier is decoded by this server's parser; its Network class (an association over one socket)
 * opens C-MOVE's associations; and two pieces of its bookkeeping are corrected.
 */
const IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2';

type DatasetInternals = {
  getElements(): Record<string, unknown>;
  _fromElementsBuffer(buffer: Buffer, transferSyntaxUid: string, ...rest: unknown[]): unknown;
  getDenaturalizedCommandDataset(...rest: unknown[]): Buffer;
};
const DatasetPrototype = dimse.Dataset.prototype as unknown as DatasetInternals;
const receivedBytesOf = new WeakMap<object, Buffer>();

const readElements = DatasetPrototype._fromElementsBuffer;
DatasetPrototype._fromElementsBuffer = function (this: DatasetInternals, buffer, transferSyntaxUid, ...rest) {
  receivedBytesOf.set(this, buffer);
  // A command set is the only Implicit VR Little Endian data set made of group 0000 alone.
  return (transferSyntaxUid === IMPLICIT_VR_LITTLE_ENDIAN && decodeCommandSet(buffer)) || readElements.call(this, buffer, transferSyntaxUid, ...rest);
};

const writeCommandSet = DatasetPrototype.getDenaturalizedCommandDataset;
DatasetPrototype.getDenaturalizedCommandDataset = function (this: DatasetInternals, ...rest) {
  return encodeCommandSet(this.getElements()) ?? writeCommandSet.apply(this, rest);
};

/** The bytes a data set dcmjs-dimse received was read from. */
export function receivedBytes(dataset: dimse.Dataset): Buffer | undefined {
  return receivedBytesOf.get(dataset);
}

/** What opening an association of our own takes of dcmjs-dimse's Network. */
export type NetworkPeer = Pick<dimse.Scp, 'sendRequests' | 'sendAssociationRequest' | 'sendAssociationReleaseRequest' | 'sendAbort' | 'once' | 'removeListener'>;

/** dcmjs-dimse's Network (PDUs and DIMSE over one socket): Scp's base class, which the package does not export by name. */
export const Network = Object.getPrototypeOf(dimse.Scp) as new (socket: Socket) => NetworkPeer;

/** dcmjs-dimse keeps every request it sent, data set and all, for the association's life: one answered is let go. */
export function forgetAnswered(peer: NetworkPeer, request: dimse.requests.Request): void {
  const sent = (peer as unknown as { pending: unknown[] }).pending;
  sent.splice(sent.indexOf(request), 1);
}

/** dcmjs-dimse marks a client socket connected on 'connect', which a socket a server accepted never emits. */
export function markConnected(association: dimse.Scp): void {
  (association as unknown as { connected: boolean }).connected = true;
}
