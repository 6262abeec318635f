import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runOrthanc, type OrthancOptions } from '../../bench/orthanc.js';
import { readSettings } from '../../bench/settings.js';

export type Orthanc = {
  /** Its REST API. */
  url: string;
  version: string;
  /** Orthanc's own log, where a failed DICOMweb call says what the remote server answered. */
  logFile: string;
  /** A REST call answered 200 with JSON, or an error carrying Orthanc's answer and the end of its log. */
  json<T>(method: string, route: string, body?: unknown): Promise<T>;
  stop(): Promise<void>;
};

/**
 * Debian's Orthanc with its DICOMweb plugin as the bench starts it (bench/orthanc.ts: loopback only), a DICOMweb
 * client of `options.dicomWebServers` and a DICOM peer when `options.dicom` says so, its data in a temporary folder
 * removed by stop().
 */
export async function startOrthancClient(options: OrthancOptions): Promise<Orthanc> {
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-orthanc-'));
  // Debian's packages, unless BENCH_ORTHANC and BENCH_ORTHANC_DICOMWEB name others, as for the bench.
  const orthanc = await runOrthanc(readSettings(process.env, []), workDir, options).catch(async (e) => {
    await fs.rm(workDir, { recursive: true, force: true });
    throw e;
  });
  const logFile = path.join(workDir, 'orthanc.log');
  return {
    url: orthanc.url,
    version: orthanc.version,
    logFile,
    async json<T>(method: string, route: string, body?: unknown): Promise<T> {
      const response = await fetch(`${orthanc.url}${route}`, {
        method,
        ...(body === undefined ? {} : { body: Buffer.isBuffer(body) ? new Uint8Array(body) : JSON.stringify(body) }),
      });
      const text = await response.text();
      if (response.status !== 200) {
        const tail = (await fs.readFile(logFile, 'utf8')).split('\n').slice(-15).join('\n');
        throw new Error(`Orthanc answered ${method} ${route} with ${response.status}: ${text}\n--- end of ${logFile} ---\n${tail}`);
      }
      return JSON.parse(text) as T;
    },
    async stop() {
      await orthanc.stop();
      await fs.rm(workDir, { recursive: true, force: true });
    },
  };
}
