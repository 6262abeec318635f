/**
 * s3rver in a process of its own for the benchmark (s3rver.ts starts it): the tests' helper (test/helpers/s3.ts),
 * which records every request s3rver answers, and a summary of those requests when the benchmark asks over IPC.
 * Apart from the benchmark's own process, s3rver's CPU neither slows the client nor counts as the client's.
 */
import fs from 'node:fs/promises';
import { S3RVER_CREDENTIALS, startS3, type S3Request } from '../test/helpers/s3.js';

/** What s3rver answered since the previous summary, by method; GETs with and without a Range header apart. */
export type S3Traffic = {
  requests: number;
  /** Requests answered with a status of 400 or more. */
  errors: number;
  byMethod: Record<string, { requests: number; bytesServed: number; bytesReceived: number }>;
  gets: { ranged: number; whole: number; rangedBytes: number; wholeBytes: number };
};

export type ChildMessage = { ready: true; port: number; directory: string; credentials: Record<string, string> } | { id: number; traffic: S3Traffic };
export type ParentMessage = { id: number; cmd: 'traffic' } | { cmd: 'stop' };

function summarize(requests: S3Request[]): S3Traffic {
  const traffic: S3Traffic = { requests: requests.length, errors: 0, byMethod: {}, gets: { ranged: 0, whole: 0, rangedBytes: 0, wholeBytes: 0 } };
  for (const r of requests) {
    if (r.status >= 400) traffic.errors++;
    const m = (traffic.byMethod[r.method] ??= { requests: 0, bytesServed: 0, bytesReceived: 0 });
    m.requests++;
    m.bytesServed += r.bytesServed;
    m.bytesReceived += Number(r.headers['content-length'] ?? 0);
    if (r.method !== 'GET' || r.status >= 400) continue;
    if (r.headers.range) {
      traffic.gets.ranged++;
      traffic.gets.rangedBytes += r.bytesServed;
    } else {
      traffic.gets.whole++;
      traffic.gets.wholeBytes += r.bytesServed;
    }
  }
  return traffic;
}

const s3 = await startS3();
const send = (message: ChildMessage) => process.send!(message);
process.on('message', (message: ParentMessage) => {
  if (message.cmd === 'traffic') {
    // Taken out of the record as they are summed: an ingest makes tens of thousands of requests.
    send({ id: message.id, traffic: summarize(s3.requests.splice(0)) });
    return;
  }
  void s3
    .stop()
    .then(() => fs.rm(s3.directory, { recursive: true, force: true }))
    .finally(() => process.exit(0));
});
// The benchmark gone (Ctrl-C, a crash): nothing is left behind.
process.on('disconnect', () => void s3.stop().then(() => fs.rm(s3.directory, { recursive: true, force: true })).finally(() => process.exit(0)));
send({ ready: true, port: s3.port, directory: s3.directory, credentials: S3RVER_CREDENTIALS });
