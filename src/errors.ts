/** Errors that reach HTTP; app.onError maps them to `{ error, detail }` with their status. */
export class HttpError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 406 | 409 | 413 | 415 | 416 | 422 | 429 | 500 | 501 | 503,
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
