import { formatBytes } from '../ingest/spool.js';
import type { CopyCounts } from './copy-instances.js';

/**
 * Progress on stderr: a bar redrawn in place on a terminal; else (a log, a pipe) a plain line as soon as the first
 * instance is done, then one every few seconds.
 */
export class ProgressLine {
  private readonly tty = process.stderr.isTTY === true;
  private latest: Readonly<CopyCounts> | undefined;
  private lastDrawn = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly command: string,
    private readonly started: number,
  ) {
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
      process.stderr.write(`${this.command}: ${done}/${total} instances (${c.copied} copied, ${c.present} already there${failed}), ${size}, ${speed}, ETA ${eta}\n`);
    }
  }
}

const PLAIN_EVERY_MS = 5000;

export function duration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${String(m).padStart(2, '0')}m` : `${m}m ${String(s % 60).padStart(2, '0')}s`;
}
