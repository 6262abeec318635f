import fs from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { loadConfig } from './config.js';
import { commandLineCredential } from './auth/principal.js';
import { cliAuditEvent } from './cli-access.js';
import { differingMetaUidsNote, IngestBatch, type Receipt } from './ingest/ingest.js';
import { UploadTally } from './ingest/upload-log.js';
import { ImportSources } from './import/sources.js';
import { freshProgress, verifyPass } from './integrity/verify-pass.js';
import { createLogger } from './logger.js';
import { openServices } from './services.js';

/** Files per batch: one fsync round and one index transaction each (DESIGN decision 2). */
const BATCH = 32;

/** `import <folder | file>`: every DICOM file under the folder (or the file itself), stored as STOW stores it. */
export async function importFolder(source: string) {
  const found = await fs.stat(path.resolve(source)).catch(() => null);
  if (!found || !(found.isFile() || found.isDirectory())) {
    // Wrong usage, said in a line (exit 2), not an ENOENT stack trace.
    console.error(`import: ${source} is not a folder or a file that can be read`);
    process.exitCode = 2;
    return;
  }
  const config = loadConfig();
  const log = createLogger('warn');
  const services = await openServices(config, log);
  const sources = await ImportSources.find(path.resolve(source), { maxEntryBytes: config.maxInstanceBytes, workDir: path.join(services.ingest.spoolDir, `import-${randomUUID()}`) });
  const files = sources.items;
  const progress = new Progress(files.length);
  const totals = { stored: 0, duplicate: 0, failed: 0 };
  const tally = new UploadTally('import', commandLineCredential(), null);
  const studies = new Set<string>();
  const failures: string[] = [];
  const notes: string[] = [];
  try {
    for (let i = 0; i < files.length; i += BATCH) {
      const chunk = files.slice(i, i + BATCH);
      const batch = new IngestBatch(services.ingest);
      const receipts: Array<{ file: string; receipt: Receipt }> = [];
      for (const item of chunk) receipts.push({ file: item.name, receipt: await batch.add(await item.open()) });
      await batch.commit();
      for (const { file, receipt } of receipts) {
        const outcome = await receipt.outcome;
        tally.add(outcome);
        if (outcome.studyUid) studies.add(outcome.studyUid);
        totals[outcome.status]++;
        if (outcome.status === 'failed') failures.push(`${file}: ${outcome.reason}`);
        else if (outcome.differingMetaUids) notes.push(`${file}: ${differingMetaUidsNote({ ...outcome, differingMetaUids: outcome.differingMetaUids })}`);
      }
      progress.update(Math.min(i + BATCH, files.length));
    }
  } finally {
    await sources.close();
    // What was stored before a failure (a full disk, the index away) is in the upload log and the audit trail too.
    services.uploads.add(tally);
    // In the audit trail once for each study it touched, as a STOW-RS request is.
    const detail = `stored=${totals.stored}&present=${totals.duplicate}&refused=${totals.failed}`;
    for (const studyUid of studies.size > 0 ? studies : [null]) services.auth.audit.record(cliAuditEvent('import', detail, studyUid));
    await services.close();
  }
  progress.done();
  console.log(`${files.length} DICOM file(s) found: ${totals.stored} stored, ${totals.duplicate} already stored, ${totals.failed} refused`);
  if (sources.others > 0) console.log(`  ${sources.others} other file(s) are not DICOM or an archive, and were left`);
  const skipped = sources.skipped.map((s) => `${s.name}: ${s.reason}`);
  for (const [lines, verb] of [[notes, 'note'], [skipped, 'skipped'], [failures, 'refused']] as const) {
    for (const line of lines.slice(0, 50)) console.log(`  ${verb} ${line}`);
    if (lines.length > 50) console.log(`  … and ${lines.length - 50} more`);
  }
  if (totals.failed > 0 || skipped.length > 0) process.exitCode = 1;
}

/** The scheduled pass of the server, run at once and unpaced (src/integrity/verify-pass.ts). */
export async function verify() {
  const services = await openServices(loadConfig(), createLogger('warn'));
  const progress = freshProgress((await services.catalog.objectTotals()).instances);
  await verifyPass(services, progress, '', {
    async proceed(_cursor, p) {
      if (p.checked % 100 === 0) process.stderr.write(`${p.checked} checked\r`);
      return true;
    },
  });
  await services.close();
  const orphans = progress.orphansIndexed + progress.orphansQuarantined + progress.orphansLeft;
  const problems = progress.missing + progress.changed + orphans;
  console.log(`${progress.checked} indexed object(s) checked, ${orphans} unindexed object(s), ${problems} problem(s)`);
  for (const p of progress.problems) console.log(`  ${p}`);
  if (problems > 0) process.exitCode = 1;
}

class Progress {
  private readonly started = Date.now();
  private lastLine = 0;
  constructor(private readonly total: number) {}

  update(done: number) {
    const fraction = this.total ? done / this.total : 1;
    const perSecond = done / Math.max((Date.now() - this.started) / 1000, 0.001);
    const text = `${done}/${this.total} ${(fraction * 100).toFixed(0)}% ${perSecond.toFixed(0)} files/s`;
    if (process.stderr.isTTY) {
      const width = 30;
      const bar = '#'.repeat(Math.round(fraction * width)).padEnd(width, '.');
      process.stderr.write(`\r[${bar}] ${text}`);
    } else if (Date.now() - this.lastLine > 2000 || done === this.total) {
      this.lastLine = Date.now();
      process.stderr.write(`${text}\n`);
    }
  }

  done() {
    if (process.stderr.isTTY) process.stderr.write('\n');
  }
}
