/** DIMSE statuses this service answers with (PS3.7 C; PS3.4 B.2.3, C.4.1.1.4, C.4.2.1.5, C.4.3.1.4), in one place. */
export const DimseStatus = {
  Success: 0x0000,
  Cancel: 0xfe00,
  Pending: 0xff00,
  /** Pending, and one or more optional keys were not matched on (they were answered as return keys). */
  PendingUnsupportedKeys: 0xff01,
  OutOfResources: 0xa700,
  UnableToPerformSuboperations: 0xa702,
  MoveDestinationUnknown: 0xa801,
  IdentifierDoesNotMatch: 0xa900,
  SuboperationsWithFailures: 0xb000,
  UnableToProcess: 0xc000,
  /** PS3.7 C.5.2: the requester may not do this. */
  NotAuthorized: 0x0124,
} as const;

/** A status as the standard and dcmtk's logs write it: 0xA700. */
export function hex(status: number): string {
  return `0x${status.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** ErrorComment (0000,0902) is LO: 64 characters at most. */
export function errorComment(text: string): string {
  return text.slice(0, 64);
}
