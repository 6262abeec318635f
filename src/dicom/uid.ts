/** DESIGN decision 1: a UID becomes part of an object key, so only the PS3.5 §9.1 form gets through. */
const UID = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

export class UidError extends Error {
  constructor(
    readonly attribute: string,
    readonly value: string | undefined,
  ) {
    super(
      value === undefined || value === ''
        ? `${attribute} is missing`
        : `${attribute} "${visible(value.slice(0, 80))}" is not a valid DICOM UID (digits and dots, no leading zeros, at most 64 characters${
            value.includes('\0') ? '; a NUL may only pad its end, PS3.5 9.1' : ''
          })`,
    );
    this.name = 'UidError';
  }
}

export function isValidUid(value: string | undefined): value is string {
  return value !== undefined && value.length > 0 && value.length <= 64 && UID.test(value);
}

export function assertUid(attribute: string, value: string | undefined): string {
  if (!isValidUid(value)) throw new UidError(attribute, value);
  return value;
}

/** Control characters written out (`\0`, `\x1b`), so a reason shows what was sent instead of hiding it. */
function visible(text: string): string {
  return text.replace(/[\x00-\x1f\x7f]/g, (c) => (c === '\0' ? '\\0' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}
