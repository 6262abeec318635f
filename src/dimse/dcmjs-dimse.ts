import dimse from 'dcmjs-dimse';
import { decodeCommandSet, encodeCommandSet } from './command-set.js';

/**
 * The two places this service changes how dcmjs-dimse reads and writes data sets, kept together: command sets go
 * through this server's own codec (command-set.ts) instead of dcmjs's, and the bytes of every data set it reads are
 * kept so that a C-FIND or C-MOVE identifier is decoded by this server's parser.
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
