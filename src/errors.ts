/** Errors that reach HTTP; app.onError maps them to `{ error, detail }` with their status. */
export class HttpError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 406 | 409 | 413 | 415 | 416 | 422 | 429 | 500 | 501 | 503 | 507,
    readonly code: string,
    detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

export class NotFound extends HttpError {
  constructor(detail: string) {
    super(404, 'not-found', detail);
  }
}

export class BadRequest extends HttpError {
  constructor(detail: string) {
    super(400, 'bad-request', detail);
  }
}


/**
 * 401 with an RFC 6750 challenge. Without a credential the challenge names no error; with a bad one it
 * says what was wrong, so that an integrator sees "expired" rather than guessing.
 */
export class Unauthorized extends HttpError {
  constructor(
    detail: string,
    credentialGiven: boolean,
    /** Who the refused credential named, where that is known (`key:<id>`), for the audit trail. */
    readonly credential?: string,
  ) {
    const reason = detail.replace(/["\\]/g, "'");
    super(401, 'unauthorized', detail, {
      'WWW-Authenticate': credentialGiven ? `Bearer realm="pacs-lite", error="invalid_token", error_description="${reason}"` : 'Bearer realm="pacs-lite"',
    });
  }
}

export class Forbidden extends HttpError {
  constructor(detail: string) {
    super(403, 'forbidden', detail);
  }
}

/** What the system says when a disk has no room left: no space, a quota reached, SQLite's or Postgres's disk full. */
const DISK_FULL_CODES: Record<string, string> = {
  ENOSPC: 'the disk of the data folder is full',
  EDQUOT: "the disk quota of the server's user is full",
  SQLITE_FULL: 'the index database could not grow: its disk is full',
  // Postgres's SQLSTATE disk_full (https://www.postgresql.org/docs/current/errcodes-appendix.html).
  '53100': "the index database could not grow: the database server's disk is full",
};

/**
 * A write met a full disk (the spool, the objects, the index): nothing of it was kept. HTTP answers 507; reads go on.
 * The one place that tells a full disk from other failures, whichever layer met it.
 */
export class DiskFull extends Error {
  /** The DiskFull an error stands for, looking through the causes wrapping it; undefined for any other error. */
  static of(error: unknown): DiskFull | undefined {
    for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
      if (e instanceof DiskFull) return e;
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== undefined && Object.hasOwn(DISK_FULL_CODES, code)) return new DiskFull(`${DISK_FULL_CODES[code]} (${code})`, { cause: error });
    }
    return undefined;
  }
}
