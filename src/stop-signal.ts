import type { Logger } from 'pino';

/** The stop switch of a loop that runs beside the server: its sleeps end at once when it is stopped. */
export class StopSignal {
  private isStopped = false;
  private wake?: () => void;

  get stopped(): boolean {
    return this.isStopped;
  }

  stop(): void {
    this.isStopped = true;
    this.wake?.();
  }

  sleep(ms: number): Promise<void> {
    if (this.isStopped || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** A turn of work repeated beside the server until stopped: a failed turn is logged, and the next one tries again. */
export class RepeatedTurn {
  readonly signal = new StopSignal();
  private loop?: Promise<void>;

  constructor(
    private readonly what: string,
    private readonly log: Logger,
    private readonly pauseMs: number,
    private readonly turn: () => Promise<void>,
  ) {}

  start(): void {
    if (!this.loop) this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.signal.stop();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.signal.stopped) {
      try {
        await this.turn();
      } catch (err) {
        this.log.warn({ err }, `${this.what}: a turn failed; the next one tries again`);
      }
      await this.signal.sleep(this.pauseMs);
    }
  }
}
