import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { EnvFileError, parseEnvFile } from '../../src/migrate/env-file.js';

describe('the env file naming the other end of a migrate', () => {
  it('reads NAME=value lines as compose does: comments, export, quotes, nothing expanded', () => {
    const vars = parseEnvFile(
      [
        '# the new setup',
        '',
        'PACS_STORAGE_DIR=/srv/pacs-new',
        'export PACS_S3_BUCKET=pacs   # the bucket',
        'AWS_SECRET_ACCESS_KEY="pa ss#word \\"quoted\\""',
        "PACS_DATABASE_URL='postgres://pacs:$ecret@db:5432/pacs'",
        'AWS_ACCESS_KEY_ID=key#with-hash',
        '  PACS_S3_FORCE_PATH_STYLE = true\r',
      ].join('\n'),
    );
    expect(vars).toEqual({
      PACS_STORAGE_DIR: '/srv/pacs-new',
      PACS_S3_BUCKET: 'pacs',
      AWS_SECRET_ACCESS_KEY: 'pa ss#word "quoted"',
      PACS_DATABASE_URL: 'postgres://pacs:$ecret@db:5432/pacs',
      AWS_ACCESS_KEY_ID: 'key#with-hash',
      PACS_S3_FORCE_PATH_STYLE: 'true',
    });
  });

  it('names a line that is not NAME=value by its number, never by its text (it may hold a password)', () => {
    expect(() => parseEnvFile('PACS_STORAGE_DIR=/a\nhunter2\n')).toThrow(new EnvFileError('line 2 is not NAME=value'));
  });

  it("gives the bucket the file's own credentials, not the process's", () => {
    const config = loadConfig({ PACS_S3_BUCKET: 'pacs', AWS_ACCESS_KEY_ID: 'id', AWS_SECRET_ACCESS_KEY: 'secret' });
    expect(config.s3?.credentials).toEqual({ accessKeyId: 'id', secretAccessKey: 'secret', sessionToken: undefined });
    expect(loadConfig({ PACS_S3_BUCKET: 'pacs' }).s3?.credentials).toBeUndefined();
  });
});
