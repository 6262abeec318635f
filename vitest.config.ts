import { defineConfig } from 'vitest/config';

/**
 * Files whose subject is one backend, or a choice of backends, run in the default project only: each starts what it
 * is about itself, so running it again on another backend would test the same thing twice.
 */
const ONE_BACKEND = [
  // The S3 store itself: bucket creation, key prefix, multipart uploads, ranged GETs, s3rver stopped mid-run.
  'test/integration/s3.test.ts',
  // One contract run against the filesystem, S3 (s3rver) and memory stores itself; no server, no index.
  'test/integration/object-stores.test.ts',
  // The Postgres index itself: migrations under an advisory lock, Postgres stopped mid-run.
  'test/integration/postgres.test.ts',
  // Compares a SQLite and a Postgres catalog with each other, without a server.
  'test/integration/qido-dialects.test.ts',
  // Two replicas over one bucket and one database: S3 + Postgres by definition.
  'test/integration/replicas.test.ts',
  // Moves a clinic from one backend to another: it names both ends.
  'test/integration/migrate.test.ts',
  // Fills a tmpfs data folder to its end: the filesystem store, the spool and the SQLite index meeting a full disk.
  'test/integration/full-disk.test.ts',
  // OHIF's files served from the install: no backend is read.
  'test/integration/viewer.test.ts',
  // The server's own HTTPS and redirect port: the same Node server in front of every backend.
  'test/integration/https.test.ts',
  // The HTTP server's idle timeout: the same Node server in front of every backend.
  'test/integration/idle-timeout.test.ts',
  // Routes through app.request() in the test's own process, over files and SQLite: negotiation and status, not storage.
  'test/integration/routes.test.ts',
  // The OpenAPI document and the routes' answers checked against it: the same routes on every backend.
  'test/integration/openapi.test.ts',
  // The build in dist/ run by node: the same code as the source every other test runs, compiled.
  'test/integration/built.test.ts',
];

/**
 * The backends the HTTP integration tests run on besides the default: each project's globalSetup starts s3rver
 * and/or Postgres once, and every server a test starts gets its own bucket and database there
 * (test/helpers/backend.ts). The project's name is its backend, so a failure says where it failed.
 * kill -9 durability (durability.test.ts) runs on all of them: an acknowledged upload must survive on S3 + Postgres
 * too, where it is a PUT and a commit in another process rather than a rename and an fsync.
 */
const BACKENDS = ['s3+sqlite', 'fs+postgres', 's3+postgres'];

export default defineConfig({
  test: {
    // Integration tests start real servers; two cores leave little room for more forks.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    projects: [
      // Unit, integration and e2e, on the filesystem store and SQLite, as a clinic starts.
      { extends: true, test: { name: 'fs+sqlite', include: ['test/**/*.test.ts'] } },
      ...BACKENDS.map((name) => ({
        extends: true as const,
        test: { name, include: ['test/integration/*.test.ts'], exclude: ONE_BACKEND, globalSetup: ['test/helpers/backend-setup.ts'] },
      })),
    ],
  },
});
