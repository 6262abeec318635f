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
