import path from 'node:path';
import type { Config } from '../config.js';
import { formatBytes } from '../ingest/spool.js';
import type { CopyResult, FailureKind } from './copy-instances.js';
import { duration } from './progress.js';
import type { Transfer } from './transfer.js';

/** Failures listed in the report; the rest are counted. */
const LISTED = 50;

const HOW_TO_FIX: Record<FailureKind, string> = {
  damaged:
    'DAMAGED: the source file no longer matches the SHA-256 recorded when it was stored (disk or bucket damage). Restore it from a backup, or send the study again from where it came from, then run this again.',
  missing: 'MISSING: the index names an object the source store does not hold. Restore it from a backup, then run this again.',
  conflict:
    'CONFLICT: the target already held other bytes under the same SOP Instance UID (it was not empty). Decide which is right; delete the wrong one from the target (DELETE …/instances/{uid}), then run this again.',
  error: 'ERROR: read the reason above; once it is dealt with, run this again.',
};

/** What a command says once every instance is in the target, and when some are not. */
export type Advice = { done: string[]; failed: string };

/** The report of a transfer on stdout: counts, access carried, what failed and why, and what to do next. */
export function transferReport({ counts: c, access, links, seconds }: Transfer, target: Config, advice: Advice): string {
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
        `${access.revocations.seen} viewer-link revocation(s) (${access.revocations.changed} added), ${access.audit.seen} audit event(s) (${access.audit.added} added), ` +
        `${access.users.seen} staff account(s) (${access.users.added} added; staff sign in again), ${access.applicationEntities.seen} DICOM application entit${access.applicationEntities.seen === 1 ? 'y' : 'ies'} (${access.applicationEntities.added} added), ` +
        `${access.webhooks.seen} webhook(s) (${access.webhooks.added} added)`,
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
    lines.push(`${c.failed} instance(s) of the source are not in the target: ${advice.failed}.`);
    for (const kind of Object.keys(HOW_TO_FIX) as FailureKind[]) if (c.byKind[kind]) lines.push(`  ${HOW_TO_FIX[kind]}`);
    lines.push('  Running it again skips everything already copied.');
  } else {
    lines.push('Every instance of the source is in the target, verified. Next:', ...advice.done);
  }
  return `${lines.join('\n')}\n`;
}

function kinds(c: CopyResult): string {
  return (Object.entries(c.byKind) as Array<[FailureKind, number]>)
    .filter(([, count]) => count > 0)
    .map(([kind, count]) => `${count} ${kind}`)
    .join(', ');
}

