/** A file that is not a DICOM Part 10 file this server can read; the message says where and why. */
export class DicomParseError extends Error {
  override name = 'DicomParseError';
}
