import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { commandLineCredential } from '../auth/principal.js';
import { carrySigningKeys, copyAccess, type AccessCopy } from './copy-access.js';
import { copyInstances, type CopyResult } from './copy-instances.js';
import type { End, TargetEnd } from './ends.js';
import { ProgressLine } from './progress.js';

export type TransferOptions = {
  /** The command, as progress lines and the target's audit trail name it: `migrate`, `backup`, `restore`. */
  command: string;
  parallel: number;
  /** The target follows the source: instances and a signing key it holds otherwise are replaced (copyInstances `replace`). */
  replace?: boolean;
  log: Logger;
};

export type Transfer = {
  counts: CopyResult;
  /** Absent when the copy of instances stopped early: access is carried only after every instance. */
  access?: AccessCopy;
  links?: Awaited<ReturnType<typeof carrySigningKeys>>;
  seconds: number;
};

/**
 * Everything a store holds, carried from one end to the other: every instance (verified against its SHA-256, skipped
 * when the target has it), then API keys, revocations and the audit trail, then the viewer signing key; progress on
 * stderr meanwhile, and one event in the target's audit trail saying who ran it and what it did.
 */
export async function transfer(source: End, target: TargetEnd, options: TransferOptions): Promise<Transfer> {
  const started = Date.now();
  const progress = new ProgressLine(options.command, started);
  // A first Ctrl-C lets the instances in flight finish and prints the report; a second one ends the process at once.
  const interrupt = new AbortController();
  const onInterrupt = () => interrupt.abort();
  process.once('SIGINT', onInterrupt);
  let counts: CopyResult;
  try {
    counts = await copyInstances(
      { catalog: source.catalog, store: source.store },
      { catalog: target.catalog, ingest: { durable: target.durable, spoolDir: target.spoolDir, maxInstanceBytes: target.config.maxInstanceBytes, log: options.log } },
      { parallel: options.parallel, onProgress: (c) => progress.update(c), signal: interrupt.signal, replace: options.replace },
    );
  } finally {
    process.removeListener('SIGINT', onInterrupt);
    progress.stop();
  }
  const result: Transfer = { counts, seconds: 0 };
  if (!counts.stopped) {
    try {
      result.access = await copyAccess(source.catalog, target.catalog);
      result.links = await carrySigningKeys(source.config, target.config, { replace: options.replace });
    } catch (e) {
      counts.stopped = e as Error;
    }
  }
  result.seconds = (Date.now() - started) / 1000;
  await target.catalog
    .access()
    .appendAudit([
      {
        at: Date.now(),
        credential: commandLineCredential(),
        ip: null,
        method: 'CLI',
        path: options.command,
        query: `copied=${counts.copied}&present=${counts.present}&failed=${counts.failed}`,
        studyUid: null,
        seriesUid: null,
        sopUid: null,
        status: counts.failed || counts.stopped ? 500 : 200,
        requestId: randomUUID(),
      },
    ])
    .catch(() => undefined);
  return result;
}
