/**
 * Ctrl-C (or SIGTERM) sets this; long loops call checkInterrupted() between steps, so the run unwinds
 * through its normal cleanup (servers stopped, temp folders removed) within a moment.
 */
let interruptedBy: string | undefined;

export function interrupt(signal: string): void {
  interruptedBy = signal;
}

export function interrupted(): boolean {
  return interruptedBy !== undefined;
}

export function checkInterrupted(): void {
  if (interruptedBy) throw new Error(`interrupted by ${interruptedBy}`);
}
