/**
 * PS3.10 7.1 lets the 128-byte preamble hold anything, so a file can be a DICOM instance and a program at once
 * (CVE-2019-11687: a Windows PE that is also a valid DICOM file). Such headers are named here; the bytes stay as sent.
 */
const EXECUTABLE_HEADERS: ReadonlyArray<[format: string, magic: Buffer]> = [
  ['PE (Windows executable, "MZ")', Buffer.from('MZ', 'latin1')],
  ['ELF (Linux executable)', Buffer.from('\x7fELF', 'latin1')],
  ['Mach-O (macOS executable)', Buffer.from([0xfe, 0xed, 0xfa, 0xce])],
  ['Mach-O (macOS executable)', Buffer.from([0xfe, 0xed, 0xfa, 0xcf])],
  ['Mach-O (macOS executable)', Buffer.from([0xce, 0xfa, 0xed, 0xfe])],
  ['Mach-O (macOS executable)', Buffer.from([0xcf, 0xfa, 0xed, 0xfe])],
  ['Mach-O universal binary or Java class', Buffer.from([0xca, 0xfe, 0xba, 0xbe])],
  ['script ("#!")', Buffer.from('#!', 'latin1')],
];

/** The executable format whose header opens the file's preamble, if any. */
export function executablePreamble(file: Buffer): string | undefined {
  return EXECUTABLE_HEADERS.find(([, magic]) => file.subarray(0, magic.length).equals(magic))?.[0];
}
