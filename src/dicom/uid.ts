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
        : `${attribute} "${value.slice(0, 80)}" is not a valid DICOM UID (digits and dots, no leading zeros, at most 64 characters)`,
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
