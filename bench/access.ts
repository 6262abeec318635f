import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import type { Corpus } from './corpus.js';
import { expectJson, request, type Reply } from './http.js';
import { stowBatches } from './ingest.js';
import { checkInterrupted } from './interrupt.js';
import { percentile, syncDisks, type Latency } from './measure.js';
import type { PacsLiteServer } from './pacs-lite.js';
import type { ReadProbe } from './reads.js';
import type { Scenario } from './scenario.js';
import type { RunningServer } from './server-process.js';

/**
 * What access control costs a read: the same read lines against one PACS-lite process started with
 * PACS_ANONYMOUS_READ=true, (a) with the admin API key, (b) with a viewer token for the study, sent as OHIF
 * sends the token of a viewer link (`Authorization: Bearer`), (c) with no credential, (d) with the session cookie
 * of a member of staff signed in at /login. A credential that is sent is checked whether anonymous reads are
 * allowed or not, so (a), (b) and (d) do what they do on a server that requires credentials; (c) skips the check.
 * Every variant is audited, so the audit trail is in all four.
 */
export const ACCESS_LINES = ['seriesFrame', 'seriesMetadata'] as const;
export const VARIANTS = ['apiKey', 'viewerToken', 'session', 'anonymous'] as const;
export type Variant = (typeof VARIANTS)[number];

/** The overhead the targets allow, on the median: (a)/(c), (b)/(c) and (d)/(a) at most this. */
export const MAX_OVERHEAD = 0.1;

export type AccessLine = {
  latency: Record<Variant, Latency>;
  /** (a)/(c) and (b)/(c), on the median and on p95. */
  keyOverAnonymous: { median: number; p95: number };
  tokenOverAnonymous: { median: number; p95: number };
  /** (d)/(a): a session against an API key (issue 14). */
  sessionOverKey: { median: number; p95: number };
};

export type AccessControlResults = {
  /** How the server was started for this phase. */
  server: string;
  viewerToken: { studyUid: string; expiresIn: number; characters: number };
  /** The account whose session cookie (d) sends; audited as `user:<login>`, its sign-in and password change included. */
  session: { login: string; signInRequests: number };
  lines: Partial<Record<(typeof ACCESS_LINES)[number], AccessLine | { error: string }>>;
  /** Calls made (the untimed first call included) with each credential: what the audit trail must show. */
  calls: Record<Variant, number>;
};

const ROOT = path.resolve(import.meta.dirname, '..');
const STAFF_LOGIN = 'bench.reader';

/**
 * A reader's account made with the command line beside the server (`users create`, as an administrator does), then
 * signed in at /login over HTTP with its one-time password, which is replaced as the server asks: the session cookie.
 */
async function staffSession(server: PacsLiteServer): Promise<{ cookie: string; signInRequests: number }> {
  // As the server, no PACS_* setting of the shell that runs the benchmark reaches the command line.
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PACS_'))), PACS_STORAGE_DIR: server.dataDir };
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'users', 'create', '--role', 'read', '--name', STAFF_LOGIN], { cwd: ROOT, env });
  const once = /^\s{4}(\S+)$/m.exec(stdout)?.[1];
  if (!once) throw new Error(`users create printed no one-time password: ${stdout.slice(0, 300)}`);
  const origin = new URL(server.dicomweb).origin;
  const post = (route: string, fields: Record<string, string>, cookie?: string) =>
    request(`${origin}${route}`, {
      method: 'POST',
      headers: { Origin: origin, 'Content-Type': 'application/x-www-form-urlencoded', ...(cookie ? { Cookie: cookie } : {}) },
      body: [Buffer.from(new URLSearchParams(fields).toString())],
    });
  const cookieOf = (reply: Reply, what: string) => {
    const cookie = reply.headers['set-cookie']?.[0];
    if (reply.status !== 303 || !cookie) throw new Error(`${what}: HTTP ${reply.status}, no session cookie: ${reply.body.toString('utf8', 0, 300)}`);
    return cookie.split(';')[0]!;
  };
  const first = await post('/login', { login: STAFF_LOGIN, password: once });
  const password = randomBytes(18).toString('base64url');
  const changed = await post('/account/password', { current: once, password, repeat: password }, cookieOf(first, 'sign-in'));
  return { cookie: cookieOf(changed, 'password change'), signInRequests: 2 };
}

/** Asks the server for a viewer link to `studyUid` with the admin key, as an EMR would, and takes its token. */
async function viewerToken(server: PacsLiteServer, studyUid: string): Promise<{ token: string; expiresIn: number }> {
  const origin = new URL(server.dicomweb).origin;
  const reply = await request(`${origin}/api/v1/studies/${studyUid}/viewer-url`, { headers: { ...server.auth, Accept: 'application/json' } });
  const link = expectJson(reply, 'viewer link') as { viewer_url?: string; study_uid?: string; expires_in?: number };
  const token = link.viewer_url ? new URL(link.viewer_url).searchParams.get('token') : null;
  if (!token || link.study_uid !== studyUid) throw new Error(`the viewer link answer holds no token for study ${studyUid}: ${JSON.stringify(link).slice(0, 300)}`);
  return { token, expiresIn: link.expires_in ?? Number.NaN };
}

export async function measureAccessControl(
  server: PacsLiteServer,
  probes: ReadProbe[],
  scenario: Scenario,
  reps: number,
  seconds: number,
  log: (line: string) => void,
): Promise<AccessControlResults> {
  const { token, expiresIn } = await viewerToken(server, scenario.series.studyUid);
  const { cookie, signInRequests } = await staffSession(server);
  const as: Record<Variant, RunningServer> = {
    apiKey: server,
    viewerToken: { ...server, auth: { Authorization: `Bearer ${token}` } },
    session: { ...server, auth: { Cookie: cookie } },
    anonymous: { ...server, auth: {} },
  };
  const results: AccessControlResults = {
    server: 'the same data, PACS-lite restarted with PACS_ANONYMOUS_READ=true (and the same PACS_ADMIN_KEY)',
    viewerToken: { studyUid: scenario.series.studyUid, expiresIn, characters: token.length },
    session: { login: STAFF_LOGIN, signInRequests },
    lines: {},
    calls: { apiKey: 0, viewerToken: 0, session: 0, anonymous: 0 },
  };
  syncDisks();
  for (const key of ACCESS_LINES) {
    const probe = probes.find((p) => p.key === key);
    if (!probe) continue;
    const made = { apiKey: 0, viewerToken: 0, session: 0, anonymous: 0 };
    const calls = Object.fromEntries(
      VARIANTS.map((v) => [
        v,
        (i: number) => {
          made[v]++;
          return probe.once(as[v], i);
        },
      ]),
    ) as Record<Variant, (i: number) => Promise<number>>;
    try {
      const latency = await interleaved(calls, reps, seconds);
      const ratios = (v: Variant, to: Variant = 'anonymous') => ({ median: latency[v].medianMs / latency[to].medianMs, p95: latency[v].p95Ms / latency[to].p95Ms });
      results.lines[key] = { latency, keyOverAnonymous: ratios('apiKey'), tokenOverAnonymous: ratios('viewerToken'), sessionOverKey: ratios('session', 'apiKey') };
    } catch (e) {
      checkInterrupted();
      results.lines[key] = { error: (e as Error).message };
      log(`  pacs-lite access control, ${key} failed: ${(e as Error).message}`);
    }
    for (const v of VARIANTS) results.calls[v] += made[v];
  }
  return results;
}

/**
 * The variants' calls in rounds, each round with the same `i` (the same file) for every variant and in a
 * rotated order, so that none always runs first or after the same one. The first round is untimed, as in
 * `latency`; then up to `reps` rounds or until `seconds` have passed (at least 3).
 */
async function interleaved<K extends string>(calls: Record<K, (i: number) => Promise<number>>, reps: number, seconds: number): Promise<Record<K, Latency>> {
  const keys = Object.keys(calls) as K[];
  const first = {} as Record<K, number>;
  const samples = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (const k of keys) first[k] = await calls[k](0);
  const deadline = performance.now() + seconds * 1000;
  for (let i = 1; i <= reps && (i <= 3 || performance.now() < deadline); i++) {
    for (let j = 0; j < keys.length; j++) {
      const k = keys[(i + j) % keys.length]!;
      samples[k].push(await calls[k](i));
    }
  }
  return Object.fromEntries(
    keys.map((k) => [k, { firstMs: first[k], medianMs: percentile(samples[k], 0.5), p95Ms: percentile(samples[k], 0.95), n: samples[k].length, samplesMs: samples[k] }]),
  ) as Record<K, Latency>;
}

export type AuditCount = {
  file: string;
  rows: number;
  /** Distinct request ids: requests recorded, however many rows each wrote. */
  requests: number;
  rowsByCredential: Record<string, number>;
  rowsByStatus: Record<string, number>;
  /** What the benchmark sent, and so what the trail must hold; absent when a phase failed and the count is unknown. */
  expected?: { requests: number; rows: number; rowsByCredential: Record<string, number> };
  /** Every request recorded, with the rows and credentials expected. */
  complete?: boolean;
};

/**
 * Counts the audit trail in the stopped server's index. `answered` is how many requests the benchmark got an
 * answer to. A STOW to /studies writes one row per study it stored into (auth/middleware.ts), every other
 * request one row; `access` says how many of the requests were made with the viewer token, with the session (its
 * sign-in included) and with none.
 */
export function countAudit(server: PacsLiteServer, corpus: Corpus, answered: number | undefined, access: AccessControlResults | undefined): AuditCount {
  const file = path.join(server.dataDir, 'index.sqlite');
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const { rows, requests } = db.prepare('SELECT COUNT(*) AS rows, COUNT(DISTINCT request_id) AS requests FROM audit_events').get() as { rows: number; requests: number };
    const kind = `CASE WHEN credential LIKE 'key:%' THEN 'API key' WHEN credential LIKE 'token:%' THEN 'viewer token' ELSE credential END`;
    const group = (column: string) =>
      Object.fromEntries((db.prepare(`SELECT ${column} AS k, COUNT(*) AS n FROM audit_events GROUP BY k ORDER BY k`).all() as Array<{ k: string | number; n: number }>).map((r) => [String(r.k), r.n]));
    const result: AuditCount = { file, rows, requests, rowsByCredential: group(kind), rowsByStatus: group('status') };
    if (answered !== undefined) {
      // Each STOW request writes a row per study of its batch instead of one.
      const extraStowRows = stowBatches(corpus).reduce((n, batch) => n + new Set(batch.map((i) => i.studyUid)).size - 1, 0);
      const token = access?.calls.viewerToken ?? 0;
      const anonymous = access?.calls.anonymous ?? 0;
      const session = access ? access.calls.session + access.session.signInRequests : 0;
      const expectedRows = answered + extraStowRows;
      const byCredential: Record<string, number> = { 'API key': expectedRows - token - anonymous - session };
      if (token) byCredential['viewer token'] = token;
      if (session) byCredential[`user:${access!.session.login}`] = session;
      if (anonymous) byCredential.anonymous = anonymous;
      result.expected = { requests: answered, rows: expectedRows, rowsByCredential: byCredential };
      result.complete =
        rows === expectedRows &&
        requests === answered &&
        Object.keys({ ...byCredential, ...result.rowsByCredential }).every((k) => (byCredential[k] ?? 0) === (result.rowsByCredential[k] ?? 0));
    }
    return result;
  } finally {
    db.close();
  }
}
