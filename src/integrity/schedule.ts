import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { PassRow } from '../catalog/catalog.js';
import { freshProgress, verifyPass, type PassProgress, type VerifyDeps } from './verify-pass.js';
import { StopSignal } from '../stop-signal.js';

/** The row of the scheduled pass in integrity_passes. */
export const SCHEDULED_PASS = 'verify';
/** A replica that stops saving progress for this long (crashed, cut off) loses the pass to another. */
const LEASE_MS = 5 * 60_000;
/** Progress is saved (and the lease renewed) at most this often, and after each finding. */
const SAVE_EVERY_MS = 10_000;
/** A pass ends this share of the interval after its start, so that the next one can start on time. */
const SPREAD = 0.9;

/**
 * `verify` on a schedule inside the server (PACS_VERIFY_INTERVAL): one pass per interval reads every object once,
 * one at a time and spread over the interval so that it never competes with reading, then reconciles orphans.
 * Replicas over one index take the pass by a lease in it: one walks, the others wait, and any resumes it from its
 * cursor when the walker goes away.
 */
export class VerifySchedule {
  private readonly owner = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly signal = new StopSignal();
  private loop?: Promise<void>;

  constructor(
    private readonly deps: VerifyDeps,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.intervalMs > 0 && !this.loop) this.loop = this.run();
  }

  /** Saves how far the pass came and lets another replica take it at once. */
  async stop(): Promise<void> {
    this.signal.stop();
    await this.loop;
  }

  private async run(): Promise<void> {
    // Often enough to start a due pass or take over a stale one soon, rarely enough to cost the index nothing.
    const poll = Math.min(Math.max(this.intervalMs / 4, 250), 60_000);
    while (!this.signal.stopped) {
      try {
        await this.takeTurn();
      } catch (err) {
        this.deps.log.warn({ err }, 'the scheduled verify pass stopped on an error; it resumes where it was at the next turn');
      }
      await this.signal.sleep(poll);
    }
  }

  private async takeTurn(): Promise<void> {
    const { catalog, log } = this.deps;
    const passes = catalog.passes();
    const dueBy = Date.now() - this.intervalMs;
    // A look at the row first: counting the index for a new pass's total is not for every turn of every replica.
    const seen = await passes.state(SCHEDULED_PASS);
    if (seen && (seen.owner ? seen.owner !== this.owner && seen.leaseUntil > Date.now() : seen.startedAt > dueBy)) return;
    const total = (await catalog.objectTotals()).instances;
    const pass = await passes.claim(SCHEDULED_PASS, this.owner, LEASE_MS, dueBy, JSON.stringify(freshProgress(total)));
    if (!pass) return;
    const progress = JSON.parse(pass.progress) as PassProgress;
    log.info({ startedAt: new Date(pass.startedAt).toISOString(), checked: progress.checked, total: progress.total }, progress.checked ? 'verify pass resumed' : 'verify pass started');
    const perObject = (this.intervalMs * SPREAD) / Math.max(progress.total, 1);
    let cursor = pass.cursor;
    let saved = { at: Date.now(), findings: findings(progress) };
    let held = true;
    const completed = await verifyPass(this.deps, progress, cursor, {
      proceed: async (at, p) => {
        cursor = at;
        if (Date.now() - saved.at >= SAVE_EVERY_MS || findings(p) !== saved.findings) {
          held = await passes.advance(SCHEDULED_PASS, this.owner, LEASE_MS, cursor, JSON.stringify(p));
          saved = { at: Date.now(), findings: findings(p) };
          if (!held) log.warn('another replica took over the verify pass');
        }
        await this.signal.sleep(pass.startedAt + p.checked * perObject - Date.now());
        return held && !this.signal.stopped;
      },
    });
    if (!completed) {
      // A lease of zero: another replica may resume at once.
      if (held) await passes.advance(SCHEDULED_PASS, this.owner, 0, cursor, JSON.stringify(progress));
      return;
    }
    const report = { ...progress, startedAt: pass.startedAt, finishedAt: Date.now() };
    await passes.finish(SCHEDULED_PASS, this.owner, JSON.stringify(report));
    const found = findings(progress) - progress.orphansLeft;
    const summary = { checked: progress.checked, missing: progress.missing, changed: progress.changed, orphansIndexed: progress.orphansIndexed, orphansQuarantined: progress.orphansQuarantined, orphansLeft: progress.orphansLeft };
    if (found > 0) log.error(summary, 'verify pass finished: stored instances are missing or changed, or objects were unindexed; see GET /api/v1/integrity');
    else log.info(summary, 'verify pass finished: every object is whole');
  }
}

function findings(p: PassProgress): number {
  return p.missing + p.changed + p.orphansIndexed + p.orphansQuarantined + p.orphansLeft;
}

export type IntegrityStatus = {
  /** Milliseconds over which a pass spreads; 0: off. */
  verifyIntervalMs: number;
  running: (Omit<PassProgress, 'problems'> & { startedAt: string; owner: string; leaseUntil: string }) | null;
  lastPass: (Omit<PassProgress, 'problems'> & { startedAt: string; finishedAt: string }) | null;
};

/** What /healthz and the admin API say of the scheduled pass, as the index has it (the same on every replica). */
export async function integrityStatus(deps: Pick<VerifyDeps, 'catalog'>, intervalMs: number): Promise<IntegrityStatus & { problems: string[] }> {
  const row = await deps.catalog.passes().state(SCHEDULED_PASS);
  const iso = (ms: number) => new Date(ms).toISOString();
  const withoutProblems = <T extends { problems: string[] }>({ problems: _, ...rest }: T) => rest;
  const last = lastReport(row);
  const progress = row?.owner ? (JSON.parse(row.progress) as PassProgress) : undefined;
  return {
    verifyIntervalMs: intervalMs,
    running: row?.owner && progress ? { ...withoutProblems(progress), startedAt: iso(row.startedAt), owner: row.owner, leaseUntil: iso(row.leaseUntil) } : null,
    lastPass: last ? { ...withoutProblems(last), startedAt: iso(last.startedAt), finishedAt: iso(last.finishedAt) } : null,
    problems: last?.problems ?? [],
  };
}

function lastReport(row: PassRow | undefined): (PassProgress & { startedAt: number; finishedAt: number }) | undefined {
  return row?.last ? JSON.parse(row.last) : undefined;
}
