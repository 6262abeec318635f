import pino from 'pino';

/** One logger; secrets are redacted by configuration, not by care (STYLE.md). */
export function createLogger(level: string) {
  return pino({
    level,
    redact: {
      paths: ['authorization', '*.authorization', 'req.headers.authorization', 'token', '*.token', 'key', '*.key', 'secret', '*.secret', 'adminKey', '*.adminKey', 'signingKey', '*.signingKey'],
      censor: '[redacted]',
    },
  });
}
