export const TransferSyntax = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
  RLELossless: '1.2.840.10008.1.2.5',
  JPEGBaseline: '1.2.840.10008.1.2.4.50',
} as const;

const NATIVE = new Set<string>([
  TransferSyntax.ImplicitVRLittleEndian,
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.DeflatedExplicitVRLittleEndian,
  TransferSyntax.ExplicitVRBigEndian,
]);

/** Encapsulated syntaxes carry each frame as its own compressed bitstream (PS3.5 A.4). */
export function isEncapsulated(transferSyntaxUID: string): boolean {
  return !NATIVE.has(transferSyntaxUID);
}

/** The syntax frames are served in: native pixel bytes are labelled Explicit VR Little Endian (PS3.18 8.7.3.5.2). */
export function frameTransferSyntax(stored: string): string {
  return isEncapsulated(stored) ? stored : TransferSyntax.ExplicitVRLittleEndian;
}

const KNOWN = new Set<string>([
  ...NATIVE,
  TransferSyntax.RLELossless,
  '1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70',
  '1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.91',
  '1.2.840.10008.1.2.4.92', '1.2.840.10008.1.2.4.93', '1.2.840.10008.1.2.4.100', '1.2.840.10008.1.2.4.101',
  '1.2.840.10008.1.2.4.102', '1.2.840.10008.1.2.4.103', '1.2.840.10008.1.2.4.104', '1.2.840.10008.1.2.4.105',
  '1.2.840.10008.1.2.4.106', '1.2.840.10008.1.2.4.107', '1.2.840.10008.1.2.4.108',
  '1.2.840.10008.1.2.4.201', '1.2.840.10008.1.2.4.202', '1.2.840.10008.1.2.4.203',
  '1.2.840.10008.1.2.8.1',
]);

export function isKnownTransferSyntax(uid: string): boolean {
  return KNOWN.has(uid);
}
