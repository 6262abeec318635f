/** The AE value representation (PS3.5 6.2): the default repertoire (printable ASCII) without the backslash. */
export const AE_CHARACTERS = /^[\x20-\x5b\x5d-\x7e]*$/;
export const MAX_AE_TITLE = 16;

/** An AE title, leading and trailing spaces taken off already: 1 to 16 characters of the AE repertoire. */
export function isAeTitle(trimmed: string): boolean {
  return trimmed.length > 0 && trimmed.length <= MAX_AE_TITLE && AE_CHARACTERS.test(trimmed);
}
