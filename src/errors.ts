/** Errors that reach HTTP; app.onError maps them to `{ error, detail }` with their status. */
export class HttpError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 406 | 409 | 413 | 415 | 416 | 500 | 503,
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

