import { Refused, type End } from './ends.js';

/** Bad arguments: said with the usage, exit code 2. */
export class UsageError extends Error {}

/** Instances in flight at once: enough to hide an S3 round trip, few enough to spare its connections and the disk. */
const DEFAULT_PARALLEL = 8;
const MAX_PARALLEL = 64;

/** `--parallel <n>` of the commands that copy a store: instances in flight at once. */
export function parallelOption(value: string | undefined): number {
  const parallel = value === undefined ? DEFAULT_PARALLEL : Number(value);
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > MAX_PARALLEL) throw new UsageError(`--parallel takes a whole number from 1 to ${MAX_PARALLEL}`);
  return parallel;
}

/**
 * Runs a command that copies a store (migrate, backup, restore): bad arguments are said with the usage (exit code 2),
 * a refusal in a line (exit code 1), and every end the work opened is closed, last opened first, whatever happens.
 */
export async function runCopyCommand<O>(usage: string, parse: () => O, work: (options: O, ends: End[]) => Promise<void>): Promise<void> {
  let options: O;
  try {
    options = parse();
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`${e.message}\n\n${usage}`);
    process.exitCode = 2;
    return;
  }
  const ends: End[] = [];
  try {
    await work(options, ends);
  } catch (e) {
    if (!(e instanceof Refused)) throw e;
    console.error(e.message);
    process.exitCode = 1;
  } finally {
    for (const end of ends.reverse()) await end.close().catch(() => undefined);
  }
}
