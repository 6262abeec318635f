import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { openCatalog, type IndexDatabase } from './catalog/open.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { GroupCommit } from './ingest/group-commit.js';
import { formatBytes } from './ingest/spool.js';
import { createLogger } from './logger.js';
import { backendOf, type Backend } from './migrate/backends.js';
import { carrySigningKeys, copyAccess, type AccessCopy } from './migrate/copy-access.js';
import { copyInstances, type CopyCounts, type CopyResult, type FailureKind } from './migrate/copy-instances.js';
import { EnvFileError, parseEnvFile } from './migrate/env-file.js';
import { ObjectsInPlace } from './migrate/objects-in-place.js';
import { freshSpoolDir } from './services.js';
import { FileObjectStore } from './storage/fs.js';
import type { ObjectStore } from './storage/object-store.js';
import { S3ObjectStore } from './storage/s3.js';

export const MIGRATE_USAGE = `Moving the store (filesystem/SQLite <-> S3/Postgres, any to any):
  migrate --to-env <file> [--parallel <n>]
                    copy every instance, API key, revocation and the audit trail from the store this
                    environment names (as for the server) to the one named in <file> (PACS_STORAGE_DIR,
                    PACS_S3_*, AWS_*, PACS_DATABASE_URL lines); each object is verified against its SHA-256.
                    Only reads the source: safe while the server runs. Run it again to resume or catch up.
  migrate --from-env <file> [--parallel <n>]
                    the same the other way round: from the store named in <file> to this environment's`;

/** Instances in flight at once: enough to hide an S3 round trip, few enough to spare its connections and the disk. */
const DEFAULT_PARALLEL = 8;
const MAX_PARALLEL = 64;
/** Failures listed in the report; the rest are counted. */
const LISTED = 50;

class UsageError extends Error {}
/** The command cannot start (a store or index that cannot be used as asked); said in a line, exit code 1. */
class Refused extends Error {}

type End = { config: Config; backend: Backend; catalog: IndexDatabase; store: ObjectStore; close(): Promise<void> };

/** Runs `migrate …`; sets the exit code: 0 when every instance is in the target and verified, 1 when not, 2 on bad usage. */
export async function runMigrate(args: string[]): Promise<void> {
  let options;
  try {
    options = parseOptions(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`${e.message}\n\n${MIGRATE_USAGE}`);
    process.exitCode = 2;
    return;
  }
  const log = createLogger('error');
  const fileConfig = await loadFileConfig(options.envFile);
  const sourceConfig = options.direction === 'to' ? loadConfig() : fileConfig;
  const targetConfig = options.direction === 'to' ? fileConfig : loadConfig();
  const targetNamed = options.direction === 'to' ? options.envFile : 'the environment';
  const from = backendOf(sourceConfig);
  const to = backendOf(targetConfig);
  const ends: End[] = [];
  try {
    if (from.indexPlace === to.indexPlace) {
      throw new Refused(
        `The source and the target are the same index (${from.index}): give the target its own PACS_DATABASE_URL, or for SQLite its own PACS_STORAGE_DIR, in ${targetNamed}.`,
      );
    }
    const source = await opening('the source', () => openSource(sourceConfig, from, log));
    ends.push(source);
    const inPlace = from.objectsPlace === to.objectsPlace;
    const target = await opening('the target', () => openTarget(targetConfig, to, log, inPlace ? source.store : undefined));
    ends.push(target);
    await migrate(source, target, options, log, inPlace, targetNamed);
  } catch (e) {
    if (!(e instanceof Refused)) throw e;
    console.error(e.message);
    process.exitCode = 1;
  } finally {
    for (const end of ends.reverse()) await end.close().catch(() => undefined);
  }
}

async function migrate(source: End, target: End & { spoolDir: string; durable: GroupCommit }, options: Options, log: Logger, inPlace: boolean, targetNamed: string) {
  const out = process.stdout;
  out.write(`Copying the store\n  from  ${source.backend.objects} + ${source.backend.index}\n  to    ${target.backend.objects} + ${target.backend.index}\n`);
  if (inPlace) out.write('        (the same object store: objects are read and verified where they are, only the index is built)\n');
  out.write('The source is only read; its server may keep running. Instances it stores meanwhile are caught by running this again.\n');

  const started = Date.now();
  const progress = new ProgressLine(started);
  // A first Ctrl-C lets the instances in flight finish and prints the report; a second one ends the process at once.
  const interrupt = new AbortController();
  const onInterrupt = () => interrupt.abort();
  process.once('SIGINT', onInterrupt);
  let counts: CopyResult;
  try {
    counts = await copyInstances(
      { catalog: source.catalog, store: source.store },
      { catalog: target.catalog, ingest: { durable: target.durable, spoolDir: target.spoolDir, maxInstanceBytes: target.config.maxInstanceBytes, log } },
      { parallel: options.parallel, onProgress: (c) => progress.update(c), signal: interrupt.signal },
    );
  } finally {
    process.removeListener('SIGINT', onInterrupt);
    progress.stop();
  }
  let access: AccessCopy | undefined;
  let links: Awaited<ReturnType<typeof carrySigningKeys>> | undefined;
  if (!counts.stopped) {
    try {
      access = await copyAccess(source.catalog.access(), target.catalog.access());
      links = await carrySigningKeys(source.config, target.config);
    } catch (e) {
      counts.stopped = e as Error;
    }
  }
  const seconds = (Date.now() - started) / 1000;
  await target.catalog
    .access()
    .appendAudit([
      {
        at: Date.now(),
        credential: `cli:${userName()}`,
        ip: null,
        method: 'CLI',
        path: 'migrate',
        query: `copied=${counts.copied}&present=${counts.present}&failed=${counts.failed}`,
        studyUid: null,
        seriesUid: null,
        sopUid: null,
        status: counts.failed || counts.stopped ? 500 : 200,
        requestId: randomUUID(),
      },
    ])
    .catch(() => undefined);
  out.write(report(counts, access, links, seconds, target.config, targetNamed));
  process.exitCode = counts.failed === 0 && !counts.stopped ? 0 : 1;
}

/** `to`: from this environment to the file's store (the usual way); `from`: from the file's store to this environment's. */
type Options = { direction: 'to' | 'from'; envFile: string; parallel: number };

function parseOptions(args: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({ args, options: { 'to-env': { type: 'string' }, 'from-env': { type: 'string' }, parallel: { type: 'string' } }, strict: true }));
  } catch (e) {
    throw new UsageError(`migrate: ${(e as Error).message}`);
  }
  const toEnv = values['to-env'];
  const fromEnv = values['from-env'];
  if (toEnv && fromEnv) throw new UsageError('migrate takes --to-env or --from-env, not both: the other end is the environment');
  if (!toEnv && !fromEnv) throw new UsageError('migrate needs --to-env <file>: the target store\'s settings, one NAME=value a line');
  const parallel = values.parallel === undefined ? DEFAULT_PARALLEL : Number(values.parallel);
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > MAX_PARALLEL) throw new UsageError(`--parallel takes a whole number from 1 to ${MAX_PARALLEL}`);
  return toEnv ? { direction: 'to', envFile: toEnv, parallel } : { direction: 'from', envFile: fromEnv!, parallel };
}

/** The configuration in an env file: only what the file says (and the defaults), nothing of this process's environment. */
async function loadFileConfig(file: string): Promise<Config> {
  let text;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`Cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): it should hold the store's settings, one NAME=value a line`);
  }
  try {
    return loadConfig(parseEnvFile(text));
  } catch (e) {
    if (e instanceof EnvFileError) throw new ConfigError(`${file}: ${e.message}`);
    if (e instanceof ConfigError) throw new ConfigError(`${file}: ${e.message}`);
    throw e;
  }
}

/** An end that cannot be opened stops the command with its reason, and which end it was. */
async function opening<T>(which: string, open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } catch (e) {
    if (e instanceof Refused || e instanceof ConfigError) throw e;
    throw new Refused(`Cannot open ${which}: ${(e as Error).message}`);
  }
}

/** The source, opened to be read: a missing index, folder or bucket is an error, never made empty. */
async function openSource(config: Config, backend: Backend, log: Logger): Promise<End> {
  const exists = (p: string) => fs.stat(p).then(() => true, () => false);
  const sqlite = path.join(config.storageDir, 'index.sqlite');
  if (!config.databaseUrl && !(await exists(sqlite))) {
    throw new Refused(`No index at ${sqlite}: run this with the server's settings (PACS_STORAGE_DIR, and PACS_S3_*, PACS_DATABASE_URL if it has them).`);
  }
  const objects = path.join(config.storageDir, 'objects');
  if (!config.s3 && !(await exists(objects))) throw new Refused(`No objects folder at ${objects}: run this with the server's PACS_STORAGE_DIR.`);
  const s3 = config.s3 ? await S3ObjectStore.open(config.s3, log, { create: false }) : undefined;
  const catalog = await openCatalog(config, log).catch(async (e: unknown) => {
    s3?.close();
    throw e;
  });
  return {
    config,
    backend,
    catalog,
    store: s3 ?? new FileObjectStore(objects),
    async close() {
      await catalog.close();
      s3?.close();
    },
  };
}

/** The target, opened as its server would open it (bucket and tables made when missing), with a spool folder of its own. */
async function openTarget(config: Config, backend: Backend, log: Logger, sourceStore: ObjectStore | undefined) {
  const s3 = !sourceStore && config.s3 ? await S3ObjectStore.open(config.s3, log) : undefined;
  const store = sourceStore ? new ObjectsInPlace(sourceStore) : (s3 ?? (await new FileObjectStore(path.join(config.storageDir, 'objects')).init()));
  const catalog = await openCatalog(config, log).catch(async (e: unknown) => {
    s3?.close();
    throw e;
  });
  // Beside the target's objects folder, so that a spooled file is renamed into place rather than copied again.
  const spoolDir = await freshSpoolDir(path.join(config.storageDir, 'tmp'));
  return {
    config,
    backend,
    catalog,
    store,
    spoolDir,
    durable: new GroupCommit(store, catalog, false, log),
    async close() {
      await catalog.close();
      s3?.close();
      await fs.rm(spoolDir, { recursive: true, force: true });
    },
  };
}

const HOW_TO_FIX: Record<FailureKind, string> = {
  damaged:
    'DAMAGED: the source file no longer matches the SHA-256 recorded when it was stored (disk or bucket damage). Restore it from a backup, or send the study again from where it came from, then run this again.',
  missing: 'MISSING: the index names an object the source store does not hold. Restore it from a backup, then run this again.',
  conflict:
    'CONFLICT: the target already held other bytes under the same SOP Instance UID (it was not empty). Decide which is right; delete the wrong one from the target (DELETE …/instances/{uid}), then run this again.',
  error: 'ERROR: read the reason above; once it is dealt with, run this again.',
};

function report(c: CopyResult, access: AccessCopy | undefined, links: string | undefined, seconds: number, target: Config, targetNamed: string): string {
  const lines: string[] = [''];
  const width = String(Math.max(c.total.instances, c.copied + c.present + c.failed + c.vanished)).length;
  const n = (v: number) => String(v).padStart(width);
  const rate = seconds > 0 ? `${formatBytes(c.bytesCopied / seconds)}/s` : '';
  lines.push(`${c.stopped ? 'Stopped' : 'Done'} after ${duration(seconds)}: ${c.total.instances} instance(s), ${formatBytes(c.total.bytes)}, in the source index when it began`);
  lines.push(`  copied         ${n(c.copied)}${c.copied ? `  ${formatBytes(c.bytesCopied)}${rate ? `, ${rate}` : ''}; each verified against its SHA-256 before it was indexed in the target` : ''}`);
  lines.push(`  already there  ${n(c.present)}  skipped: the target holds them with the same SHA-256`);
  lines.push(`  failed         ${n(c.failed)}${c.failed ? `  ${kinds(c)}` : ''}`);
  if (c.vanished) lines.push(`  deleted        ${n(c.vanished)}  from the source while this ran: nothing to copy`);
  if (access) {
    lines.push(
      `Access: ${access.keys.seen} API key(s) (${access.keys.added} added${access.keys.revoked ? `, ${access.keys.revoked} revoked as in the source` : ''}), ` +
        `${access.revocations.seen} viewer-link revocation(s) (${access.revocations.changed} added), ${access.audit.seen} audit event(s) (${access.audit.added} added)`,
    );
  }
  if (links === 'copied') lines.push(`Viewer links: the signing key was copied to ${path.join(target.storageDir, 'secrets')}; links issued by the source open on the target.`);
  if (links === 'differs') lines.push('Viewer links: the target signs with another key, so links issued before the move stop working there (ask for new ones; old ones expire within hours anyway).');

  if (c.failures.length > 0) {
    lines.push('', `Not in the target (${c.failed}):`);
    for (const f of c.failures.slice(0, LISTED)) lines.push(`  ${f.kind.toUpperCase().padEnd(8)} ${f.objectKey}: ${f.detail}`);
    if (c.failed > LISTED) lines.push(`  … and ${c.failed - LISTED} more`);
  }
  lines.push('');
  if (c.stopped) {
    lines.push(`Stopped early: ${c.stopped.message}.`);
    lines.push('Nothing is half-copied: an instance is indexed in the target only once its object is there. Run the same command');
    lines.push('again (once the store or database is back, if that is what stopped it): it skips what is already copied.');
  } else if (c.failed > 0) {
    lines.push(`${c.failed} instance(s) of the source are not in the target: do not switch over yet.`);
    for (const kind of Object.keys(HOW_TO_FIX) as FailureKind[]) if (c.byKind[kind]) lines.push(`  ${HOW_TO_FIX[kind]}`);
    lines.push('  Running it again skips everything already copied.');
  } else {
    lines.push('Every instance of the source is in the target, verified. Next:');
    lines.push('  1. Stop the server (or stop sending to it) and run this command once more: it copies only what was stored meanwhile.');
    lines.push(`  2. Start the server with the target's settings (those in ${targetNamed}) in place of the source's.`);
    lines.push('  3. To read every object back from the target: npm run cli -- verify, with the target\'s settings.');
    lines.push('  The source is unchanged: keep it until the target has served for a while.');
  }
  return `${lines.join('\n')}\n`;
}

/** Who ran the command, for the audit trail; a container may run it as a user without a name. */
function userName(): string {
  try {
    return os.userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

function kinds(c: CopyResult): string {
  return (Object.entries(c.byKind) as Array<[FailureKind, number]>)
    .filter(([, count]) => count > 0)
    .map(([kind, count]) => `${count} ${kind}`)
    .join(', ');
}

/**
 * Progress on stderr: a bar redrawn in place on a terminal; else (a log, a pipe) a plain line as soon as the first
 * instance is done, then one every few seconds.
 */
class ProgressLine {
  private readonly tty = process.stderr.isTTY === true;
  private latest: Readonly<CopyCounts> | undefined;
  private lastDrawn = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly started: number) {
    this.timer = setInterval(() => this.draw(false), this.tty ? 250 : 1000);
    this.timer.unref();
  }

  update(counts: Readonly<CopyCounts>) {
    const first = this.latest === undefined;
    this.latest = counts;
    if (first) this.draw(true);
  }

  stop() {
    clearInterval(this.timer);
    if (this.tty && this.latest) {
      this.draw(true);
      process.stderr.write('\n');
    }
  }

  private draw(now: boolean) {
    const c = this.latest;
    if (!c) return;
    if (!this.tty && !now && Date.now() - this.lastDrawn < PLAIN_EVERY_MS) return;
    this.lastDrawn = Date.now();
    const done = c.copied + c.present + c.failed + c.vanished;
    const total = Math.max(c.total.instances, done);
    const fraction = c.total.bytes > 0 ? Math.min(1, c.bytesSettled / c.total.bytes) : total ? done / total : 1;
    const seconds = Math.max((Date.now() - this.started) / 1000, 0.001);
    const rate = c.bytesCopied / seconds;
    const left = Math.max(0, c.total.bytes - c.bytesSettled);
    const eta = rate > 0 && left > 0 ? duration(left / rate) : done >= total ? '0s' : '…';
    const size = `${formatBytes(c.bytesSettled)} of ${formatBytes(c.total.bytes)}`;
    const perSecond = done / seconds;
    const speed = `${formatBytes(rate)}/s, ${perSecond.toFixed(perSecond < 10 ? 1 : 0)} instances/s`;
    if (this.tty) {
      const bar = '#'.repeat(Math.round(fraction * 24)).padEnd(24, '.');
      const failed = c.failed ? `  ${c.failed} failed` : '';
      const text = `[${bar}] ${done}/${total}  ${size}  ${speed}  ETA ${eta}${failed}`;
      // One screen line, or \r would redraw only its last part.
      process.stderr.write(`\r${text.slice(0, Math.max(20, (process.stderr.columns ?? 80) - 1))}\x1b[K`);
    } else {
      const failed = c.failed ? `, ${c.failed} failed` : '';
      process.stderr.write(`migrate: ${done}/${total} instances (${c.copied} copied, ${c.present} already there${failed}), ${size}, ${speed}, ETA ${eta}\n`);
    }
  }
}

const PLAIN_EVERY_MS = 5000;

function duration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${String(m).padStart(2, '0')}m` : `${m}m ${String(s % 60).padStart(2, '0')}s`;
}
